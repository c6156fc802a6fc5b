"""ONNX models: export from torch (verified on real images), graph helpers and the file checks (external data kept
inside the model's folder)."""
