"""What `finetune` hands back (and writes to result.json): its own module so the loop and
the outputs both import it and neither imports the other's caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FinetuneResult:
    run_dir: str
    model_dir: str
    merged_dir: str | None
    steps: int
    base_eval_loss: float | None
    final_eval_loss: float
    best_eval_loss: float
    best_step: int | None  # set with early stopping: the step whose weights the model holds
    final_train_loss: float
    train_tokens_per_s: float
    wall_s: float
    stopped_early: bool
    plan: dict[str, Any]
    counts: dict[str, int]
    samples: list[dict[str, Any]] = field(default_factory=list)
    registered: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
