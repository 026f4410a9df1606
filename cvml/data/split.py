"""Deterministic group-level splits: one person never lands in two splits, and a row's
split depends only on its group id and the seed — appending rows never moves old ones."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cvml.data.records import Record
from cvml.errors import DataError


def group_bucket(group: str, seed: int = 0) -> float:
    """A stable number in [0, 1) for a group id (sha256, not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(group: str, fraction: float, seed: int = 0) -> bool:
    return group_bucket(group, seed) < fraction


def train_validation(
    records: Sequence[Record], validation: Sequence[Record] | None, *, fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """(train, validation) for fine-tuning and quantization alike.

    With a validation set given, the records are all training rows and no group may be in
    both: a person in both would grade the model on what it memorised. Without one, whole
    groups go to a hold-out of `fraction`, decided by group id and seed alone.

    Raises:
        DataError: a group is in both the training rows and the validation set.
    """
    if validation is not None:
        held = {r.group for r in validation}
        leaked = [r for r in records if r.group in held]
        if leaked:
            raise DataError(
                f"{len(leaked)} training rows share a group with the validation set (e.g. group {leaked[0].group!r})",
                hint="Split by group (`cvml curate` does) so one person never appears in both.",
            )
        return list(records), list(validation)
    held_out = [in_holdout(r.group, fraction, seed) for r in records]
    return [r for r, h in zip(records, held_out) if not h], [r for r, h in zip(records, held_out) if h]
