"""The lean runtime: tokenizers + ONNX Runtime (or TensorRT), no torch, no transformers.

>>> from edgepack.runtime import Predictor
>>> p = Predictor.open("out/onnx")
>>> p.predict(["a gripping film"])
"""

from edgepack.runtime.predictor import Predictor

__all__ = ["Predictor"]
