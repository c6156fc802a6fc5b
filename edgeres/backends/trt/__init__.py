"""TensorRT backend (native engines). Filled in by the TensorRT work; tensorrt is imported lazily."""
