"""Curation: `curate(spec, output)` turns raw CV pairs into a clean, private, leak-free
dataset folder; `forget(dataset, ...)` erases a person from one."""

from cvml.curate.forget import ForgetResult, forget
from cvml.curate.pipeline import CurateResult, curate

__all__ = ["CurateResult", "ForgetResult", "curate", "forget"]
