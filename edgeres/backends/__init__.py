"""Backends behind one interface: a loader builds a session/engine lazily, a runner runs it.

``onnxrt`` (the embedded CPU default), ``torch`` (the reference) and ``trt`` (native TensorRT engines).
Heavy packages are imported inside the backend that needs them, never at module top level.
"""
