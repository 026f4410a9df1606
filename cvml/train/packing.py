"""Sample packing without cross-sample attention, and the padded alternative.

A packed row concatenates several examples; `position_ids` restart at 0 for each one.
With no 2D attention mask, transformers (5.x) derives a block-diagonal causal mask from
those restarts for sdpa/eager and uses varlen kernels for flash-attention, so an example
never attends to its neighbours (tests/test_packing.py checks logits against unpacked runs).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Sequence

from cvml.data.encode import IGNORE_INDEX, Example


@dataclass
class Row:
    """One training row: examples laid end to end."""

    examples: list[Example]

    def __len__(self) -> int:
        return sum(len(e) for e in self.examples)


def pack(examples: Sequence[Example], seq_len: int) -> list[Row]:
    """Best-fit-decreasing bin packing into rows of at most seq_len tokens.

    Longest examples first, each into the row whose free space fits it most tightly,
    found by bisection over the sorted free spaces: O(n log n), so a million examples pack
    in seconds. Deterministic (ties keep input order), so a run and its resumption pack
    identically.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    rows: list[Row] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for i in order:
        ex = examples[i]
        k = bisect_left(free, (len(ex), -1))
        if k < len(free):
            space, r = free.pop(k)
            rows[r].examples.append(ex)
            space -= len(ex)
        else:
            rows.append(Row([ex]))
            space, r = seq_len - len(ex), len(rows) - 1
        if space > 0:
            insort(free, (space, r))
    return rows


def unpacked(examples: Sequence[Example]) -> list[Row]:
    """One example per row (packing off): rows are padded to the batch's longest."""
    return [Row([ex]) for ex in examples]


def packing_efficiency(rows: Sequence[Row], micro_batch_size: int, pad_to: int | None = None) -> float:
    """Real tokens / tokens computed, for consecutive micro-batches padded to their longest row."""
    real = sum(len(r) for r in rows)
    computed = 0
    for start in range(0, len(rows), micro_batch_size):
        batch = rows[start : start + micro_batch_size]
        computed += len(batch) * (pad_to or max(len(r) for r in batch))
    return real / computed if computed else 0.0


def collate(rows: Sequence[Row], pad_id: int):
    """Tensors for a micro-batch: input_ids, labels, position_ids (restarting per example),
    plus n_tokens, the count of real (non-padding) tokens.

    Padding at the end of a row is its own pseudo-sequence (positions restart, labels
    ignored), so no real token attends to it. No attention_mask is returned on purpose:
    the packed mask comes from position_ids.
    """
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        at = 0
        for ex in row.examples:
            n = len(ex)
            ids[b, at : at + n] = torch.tensor(ex.input_ids)
            labels[b, at : at + n] = torch.tensor(ex.labels)
            pos[b, at : at + n] = torch.arange(n)
            at += n
        if at < width:
            pos[b, at:] = torch.arange(width - at)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "n_tokens": sum(len(r) for r in rows)}
