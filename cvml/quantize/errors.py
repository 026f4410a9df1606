"""The errors of `cvml quantize` that the shared hierarchy (cvml/errors.py) does not already name."""

from __future__ import annotations

from cvml.errors import CvmlError


class QuantizeError(CvmlError):
    """A quantization cannot run: a missing optional dependency, a layer shape the method
    cannot handle, or a saved model that does not reproduce the quantized one."""
