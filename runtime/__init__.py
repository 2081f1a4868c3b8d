"""The lean runtime: tokenizers + ONNX Runtime (or TensorRT), no torch, no transformers.

>>> from edgepack.runtime import Predictor
>>> p = Predictor.open("out/onnx")
>>> p.predict(["a gripping film"])
"""
