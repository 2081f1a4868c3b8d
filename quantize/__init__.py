"""Quantization: ONNX dynamic/static INT8, FP16, torch dynamic int8 and bitsandbytes, under an accuracy budget."""
