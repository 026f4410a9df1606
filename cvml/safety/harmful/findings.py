"""What the three checks share: the Finding they report, the result of a check on one
output, and the two regex pieces every rule set is built from.

The checks (protected, abusive, injection) import only this module, so each can be read,
and changed, without the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

# Where a field or a self-description starts: a line, a clause after ". ", or a cell of a
# "|", "•", ";" or ":"-separated list, or after a gap of two spaces (PDF text on one line).
START = r"(?:^|[\n|•·;:]\s*|[.!?]\s+|\s{2,})"
# A field label's separator: "Age: 34", "Gender - M", "Nationality : Indian", "DOB 1987".
SEP = r"(?:\s*[:=–—]|\s+-)\s*"  # a hyphen only after a space: "health-related" is no field


@dataclass(frozen=True)
class Finding:
    """One harmful phrase: its category, the words, and their (start, end) offsets."""

    category: str
    text: str
    span: tuple[int, int]


@dataclass(frozen=True)
class CheckResult:
    """The findings of one check on one text, in reading order."""

    findings: tuple[Finding, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.findings})

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "categories": self.categories, "n": len(self.findings),
                "findings": [asdict(f) for f in self.findings]}


def non_overlapping(found: Iterable[tuple[Finding, str]]) -> list[tuple[Finding, str]]:
    """(finding, key) pairs without overlaps, the longest span kept, in reading order."""
    kept: list[tuple[Finding, str]] = []
    for item in sorted(found, key=lambda f: (f[0].span[0] - f[0].span[1], f[0].span[0])):
        start, end = item[0].span
        if all(end <= s or start >= e for s, e in (k[0].span for k in kept)):
            kept.append(item)
    return sorted(kept, key=lambda f: f[0].span)
