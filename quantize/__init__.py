"""Quantization: ONNX dynamic/static INT8, FP16, torch dynamic int8 and bitsandbytes, under an accuracy budget.

Heavy libraries are imported inside the functions; importing this package stays light.
"""

from edgepack.quantize.api import NoCandidateError, quantize
from edgepack.quantize.config import (
    DEFAULT_METHODS, METHODS, CalibrationConfig, DynamicInt8Config, Exclusions, Fp16Config, QuantizeConfig,
    StaticInt8Config,
)
from edgepack.quantize.methods import register_builder, register_method

__all__ = [
    "quantize", "QuantizeConfig", "DynamicInt8Config", "StaticInt8Config", "CalibrationConfig", "Fp16Config",
    "Exclusions", "METHODS", "DEFAULT_METHODS", "NoCandidateError",
    "register_method", "register_builder",
]
