"""Deterministic group-level splits: one person never lands in two splits, and a row's
split depends only on its group id and the seed — appending rows never moves old ones."""

from __future__ import annotations

import hashlib


def group_bucket(group: str, seed: int = 0) -> float:
    """A stable number in [0, 1) for a group id (sha256, not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(group: str, fraction: float, seed: int = 0) -> bool:
    return group_bucket(group, seed) < fraction
