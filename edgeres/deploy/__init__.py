"""Hand-off to the engines users scale with: DeepStream (``deepstream``) and Triton Inference Server (``triton``).

Each target writes a folder from an engine folder's manifest (pre-processing, classes, calibration, batch) and
checks what it writes with the target's own parsers in the tests; ``deepstream_app.py`` and
``triton_postprocess.py`` are copied into those folders and run there.
"""
