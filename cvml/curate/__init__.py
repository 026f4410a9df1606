"""Curation: `curate(spec, output)` turns raw CV pairs into a clean, private, leak-free
dataset folder; `plan_forget` / `forget(dataset, ...)` erase a person from one (and keep
them out of every later curation)."""

from cvml.curate.forget import ForgetPlan, ForgetResult, forget, plan_forget, recover
from cvml.curate.pipeline import CurateResult, curate

__all__ = ["CurateResult", "ForgetPlan", "ForgetResult", "curate", "forget", "plan_forget", "recover"]
