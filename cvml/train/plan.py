"""The plan of a run — what `--dry-run` prints and what the loop follows — and the data
order: which rows each process sees at each optimizer step, as a pure function of
(seed, step), so a resumed run continues on exactly the rows it would have seen.

Packed runs repack every epoch: the examples are shuffled by a generator seeded from
(seed, epoch) and packed best-fit-decreasing, so the examples that share a row change from
one epoch to the next (as they would in a padded run), not only the order of fixed rows.
The number of rows cannot change with the shuffle: best-fit-decreasing places examples in
order of length, and where it puts one depends only on the lengths placed before it, so
every shuffle yields the same row layout with equal-length examples swapped. The plan's
row count, steps per epoch and total steps therefore hold for every epoch.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from cvml.data.encode import Example
from cvml.train.packing import Row, pack

if TYPE_CHECKING:
    from cvml.train.data import RunData


@dataclass(frozen=True)
class Plan:
    examples: int
    validation_examples: int
    train_tokens: int
    label_tokens: int
    rows: int
    packing: bool
    packing_efficiency: float
    world_size: int
    micro_batch_size: int
    grad_accum: int
    steps_per_epoch: int
    total_steps: int
    epochs: float
    warmup_steps: int
    rows_per_step: int
    rows_unused_per_epoch: int
    trainable_parameters: int
    total_parameters: int

    def as_dict(self) -> dict:
        return asdict(self)


def make_plan(recipe, data, world_size: int, trainable: int, total: int) -> Plan:
    train = recipe.train
    rows_per_step = train.micro_batch_size * train.grad_accum * world_size
    n_rows = len(data.train_rows)
    if n_rows < rows_per_step:
        from cvml.errors import ConfigError

        raise ConfigError(
            f"one optimizer step needs {rows_per_step} rows "
            f"(micro_batch_size × grad_accum × processes) but the data makes only {n_rows}",
            hint="Lower train.micro_batch_size or train.grad_accum, or use more data.",
        )
    steps_per_epoch = n_rows // rows_per_step
    total_steps = train.max_steps or max(1, round(steps_per_epoch * train.epochs))
    return Plan(
        examples=len(data.train_examples),
        validation_examples=len(data.eval_examples),
        train_tokens=data.train_tokens,
        label_tokens=data.train_label_tokens,
        rows=n_rows,
        packing=train.packing,
        packing_efficiency=round(data.efficiency(train.micro_batch_size), 4),
        world_size=world_size,
        micro_batch_size=train.micro_batch_size,
        grad_accum=train.grad_accum,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs=round(total_steps / steps_per_epoch, 3),
        warmup_steps=int(total_steps * train.warmup_ratio),
        rows_per_step=rows_per_step,
        rows_unused_per_epoch=n_rows - steps_per_epoch * rows_per_step,
        trainable_parameters=trainable,
        total_parameters=total,
    )


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n_rows: int) -> tuple[int, ...]:
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n_rows, generator=g).tolist())


def step_batches(plan: Plan, seed: int, step: int, rank: int) -> list[list[int]]:
    """Row indices (into the rows of the step's epoch) of each micro-batch this process runs
    at optimizer step `step` (0-based).

    Each epoch is a fresh seeded permutation; micro-batches are dealt round-robin to
    processes so every process gets grad_accum micro-batches per step.
    """
    epoch, k = divmod(step, plan.steps_per_epoch)
    order = _epoch_order(seed, epoch, plan.rows)
    base = k * plan.grad_accum * plan.world_size
    batches = []
    for j in range(plan.grad_accum):
        mb = base + j * plan.world_size + rank
        batches.append(list(order[mb * plan.micro_batch_size : (mb + 1) * plan.micro_batch_size]))
    return batches


def epoch_rows(examples: Sequence[Example], seq_len: int, seed: int, epoch: int) -> list[Row]:
    """The packed rows of one epoch: the examples shuffled by (seed, epoch), then packed
    best-fit-decreasing (ties in length keep the shuffled order)."""
    order = list(range(len(examples)))
    random.Random(f"cvml-pack:{seed}:{epoch}").shuffle(order)
    return pack([examples[i] for i in order], seq_len)


class DataOrder:
    """The rows each process trains on at each step, built one epoch at a time."""

    def __init__(self, plan: Plan, data: RunData, seed: int, seq_len: int):
        self.plan, self.data, self.seed, self.seq_len = plan, data, seed, seq_len
        self._epoch, self._rows = -1, data.train_rows

    def rows(self, epoch: int) -> list[Row]:
        """The epoch's rows: repacked for a packed run, the examples themselves otherwise."""
        if not self.plan.packing:
            return self.data.train_rows
        if epoch != self._epoch:
            rows = epoch_rows(self.data.train_examples, self.seq_len, self.seed, epoch)
            if len(rows) != self.plan.rows:  # see the module docstring: cannot happen
                raise AssertionError(f"epoch {epoch} packed {len(rows)} rows, the plan has {self.plan.rows}")
            self._epoch, self._rows = epoch, rows
        return self._rows

    def step_batches(self, step: int, rank: int) -> list[list[Row]]:
        """The micro-batches (lists of rows) this process runs at optimizer step `step`."""
        rows = self.rows(step // self.plan.steps_per_epoch)
        return [[rows[i] for i in idx] for idx in step_batches(self.plan, self.seed, step, rank)]
