"""Fine-tuning: `finetune(recipe)` trains and writes a run folder; `dry_run(recipe)` plans."""

from cvml.train.loop import FinetuneResult, dry_run, finetune

__all__ = ["FinetuneResult", "dry_run", "finetune"]
