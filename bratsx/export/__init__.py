"""Export: turning a training checkpoint into self-describing model files (ONNX, TensorRT)."""
