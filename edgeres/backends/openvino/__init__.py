"""OpenVINO backend: the INT8 CPU engine on x86 (oneDNN int8 kernels: VNNI, AMX), run from the Q/DQ artifact.

``openvino`` is optional and imported only inside the functions that need it.
"""
