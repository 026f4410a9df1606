"""Quantize a model (GPTQ, its RTN baseline, CPU int8), save it as a folder every cvml
command loads, and measure what it cost.

    from cvml.quantize import quantize
    from cvml.recipe import QuantizeSpec
    result = quantize("tiny-cv@1", QuantizeSpec(method="gptq", bits=4, group_size=64))
    result.perplexity["increase"], result.size["ratio_vs_fp16"], result.registered

The methods' table is `cvml.quantization` (the recipe and the loader read it too);
quantized folders load through `cvml.modelio.load_for_inference` like any model.
"""

from cvml.errors import QuantizeError
from cvml.quantization import METHODS, Method, get_method
from cvml.quantize.api import QuantizeResult, quantize

__all__ = ["METHODS", "Method", "QuantizeError", "QuantizeResult", "get_method", "quantize"]
