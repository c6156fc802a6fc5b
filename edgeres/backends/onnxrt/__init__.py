"""ONNX Runtime backend: the embedded default on any CPU; CUDA/TensorRT execution providers when asked."""
