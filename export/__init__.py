"""Export torch models to ONNX (validated against torch), fuse ONNX graphs, build TensorRT engines and Triton repositories."""
