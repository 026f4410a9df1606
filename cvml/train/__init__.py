"""Fine-tuning: `finetune(recipe)` trains and writes a run folder; `dry_run(recipe)` plans."""

from cvml.train.loop import dry_run, finetune
from cvml.train.result import FinetuneResult

__all__ = ["FinetuneResult", "dry_run", "finetune"]
