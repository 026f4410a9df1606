"""What every parser shares: the Claim a check reports, the _Found record a parser returns
for it (the claim with what its support is decided by), and two small helpers.

The parsers (quantities, degrees, organisations) import only this module, so each can be
read, and changed, without the others.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("number", "percent", "money", "year", "duration", "employer", "school", "degree")


@dataclass(frozen=True)
class Claim:
    """A fact stated in a text: its kind (one of KINDS), the words, their (start, end)
    offsets, and the normal form it is compared by ("25%", "1200000", "btech")."""

    kind: str
    text: str
    span: tuple[int, int]
    normalized: str


@dataclass(frozen=True)
class _Found:
    """A claim with what its support is decided by."""

    claim: Claim
    value: float = 0.0  # quantities: normalised (money in units, durations in hours)
    raw: float = 0.0  # quantities: the number as written, times its scale
    step: float = 1.0  # quantities: the written precision, in raw units
    unit: float = 1.0  # quantities: value = raw * unit
    bound: str | None = None  # quantities: "approx", "lower" or "upper"
    key: str = ""  # degrees: canonical id
    level: str = ""  # degrees: bachelor, master, ...
    generic: bool = False  # degrees: "bachelor's degree" names no specific degree
    tokens: tuple[str, ...] = ()  # entities: normalised distinctive words
    rest: tuple[str, ...] = ()  # entities at a sentence start: the words after the first, which may be a verb


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# Number words: quantities read them as numbers, organisations end a capitalised run at them.
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
