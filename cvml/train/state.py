"""Where a run stands between optimizer steps: what a checkpoint's `trainer_state.json`
carries (under "state") so that `--resume` continues exactly. The data position is `step`
alone, since batches are a pure function of (seed, step)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cvml.errors import ResumeError


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    base_eval_loss: float | None = None  # before the first step (None if never measured)
    best_eval_loss: float | None = None
    best_step: int | None = None  # the step whose weights were kept as the best (early stopping)
    bad_evals: int = 0  # evaluations in a row without improvement
    last_train_loss: float | None = None
    tokens_seen: int = 0  # real (non-padding) tokens trained on, all processes
    train_s: float = 0.0  # seconds spent in training steps (evaluation and saving excluded)

    @property
    def tokens_per_s(self) -> float:
        return round(self.tokens_seen / max(self.train_s, 1e-9), 1)

    def advance(self, train_loss: float, n_tokens: int, seconds: float) -> None:
        """Record one finished optimizer step."""
        self.step += 1
        self.last_train_loss = train_loss
        self.tokens_seen += n_tokens
        self.train_s += seconds

    def record_eval(self, eval_loss: float, min_delta: float = 0.0) -> bool:
        """Track the best evaluation; True if `eval_loss` beats it by more than min_delta."""
        if self.best_eval_loss is None or eval_loss < self.best_eval_loss - min_delta:
            self.best_eval_loss = eval_loss
            self.bad_evals = 0
            return True
        self.bad_evals += 1
        return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Read the "state" of a trainer_state.json; keys a field defaults for may be missing
        (checkpoints of older versions).

        Raises:
            ResumeError: the state lacks the step or holds keys this version does not know.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "step" not in data:
            problem = f"unknown keys {', '.join(unknown)}" if unknown else "no step"
            raise ResumeError(
                f"the checkpoint's trainer state is not one this cvml reads ({problem})",
                hint="Resume with the cvml version that wrote the checkpoint, or start a new run.",
            )
        return cls(**data)
