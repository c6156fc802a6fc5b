"""TensorRT backend: ``loader`` (build from ONNX, deserialize checked bytes), ``runner`` (CUDA buffers, stream,
events), ``calibrator`` (implicit INT8 from edgeres' cache), ``buffers`` (cuda-python or pycuda) and ``versions``
(every difference between TensorRT 8.6, 10.x and 11.x). tensorrt, cuda-python and pycuda are imported lazily."""
