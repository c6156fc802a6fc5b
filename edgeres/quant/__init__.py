"""INT8: calibration into a scales JSON (the source of truth), one Q/DQ writer following TensorRT's
explicit-quantization rules, its checker, TensorRT calibration caches, and the CPU rewrite."""
