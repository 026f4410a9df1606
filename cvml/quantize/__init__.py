"""Quantize a model (GPTQ, its RTN baseline, CPU int8), save it as a folder every cvml
command loads, and measure what it cost.

    from cvml.quantize import quantize
    from cvml.recipe import QuantizeSpec
    result = quantize("tiny-cv@1", QuantizeSpec(method="gptq", bits=4, group_size=64))
    result.perplexity["increase"], result.size["ratio_vs_fp16"], result.registered
"""

from cvml.quantize.api import QuantizeResult, quantize
from cvml.quantize.errors import QuantizeError
from cvml.quantize.load import load_quantized
from cvml.quantize.methods import METHODS, Method, get_method

__all__ = ["METHODS", "Method", "QuantizeError", "QuantizeResult", "get_method", "load_quantized", "quantize"]
