"""Fabrication check: the facts a rewrite states that its input does not support.

    result = check_fabrication(output, source, job_description)
    result.flagged      # True when a claim of the output is unsupported
    result.claims       # the unsupported claims: kind, text, span (offsets into output)
    result.n_claims     # every quantified or entity claim the output makes

A claim is a quantity or a named entity, the facts a CV is judged by and a model may
invent: counts ("37 services"), percentages, money, years, durations ("5 years"),
employers, schools and degrees. Skills, job titles and wording are not claims: a rewrite
may rephrase them freely. A claim is supported when the input states the same fact in
any written form ("25%" = "25 percent", "B.Tech" = "Bachelor of Technology", "ORACLE INDIA
PVT LTD" = "Oracle India"), and a quantity within a rounding tolerance ("24.6%" -> "25%").

The job description supports every kind of claim except durations: a job ad's "5+ years
of experience" is a requirement, and a rewrite that repeats it as the candidate's
experience is the classic tailoring fabrication.

One module per kind of claim, each with its parser and the rule it is supported by:
`quantities` (numbers, percentages, money, years, durations; the rounding tolerance),
`degrees`, and `organisations` (employers and schools). `claims` holds what they share,
`masking` blanks what is no claim before they read, and `support` reads the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cvml.safety.fabrication.claims import KINDS, Claim, _Found
from cvml.safety.fabrication.degrees import _degrees
from cvml.safety.fabrication.masking import _mask
from cvml.safety.fabrication.organisations import _entities
from cvml.safety.fabrication.quantities import APPROX_TOLERANCE, ROUNDING_TOLERANCE, UPPER_BOUND_SLACK, _quantities
from cvml.safety.fabrication.support import _Support

__all__ = ["APPROX_TOLERANCE", "KINDS", "ROUNDING_TOLERANCE", "UPPER_BOUND_SLACK", "Claim", "ClaimSupport",
           "FabricationResult", "check_fabrication", "extract_claims"]


@dataclass(frozen=True)
class FabricationResult:
    """`claims`: the output's unsupported claims; `all_claims`: every claim it makes."""

    claims: tuple[Claim, ...]
    all_claims: tuple[Claim, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.claims)

    @property
    def n_claims(self) -> int:
        return len(self.all_claims)

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "n_claims": self.n_claims, "claims": [asdict(c) for c in self.claims]}


class ClaimSupport:
    """An input read once, to check many texts against it (grounded decoding checks each
    quantity as it is written)."""

    def __init__(self, source: str, job_description: str | None = None):
        self._support = _Support(source, job_description or "")

    def check(self, output: str) -> FabricationResult:
        """The claims of `output` the input does not support (as `check_fabrication`)."""
        found = _extract(output)
        unsupported = tuple(item.claim for item in found if not self._support.holds(item))
        return FabricationResult(unsupported, tuple(item.claim for item in found))


def check_fabrication(output: str, source: str, job_description: str | None = None) -> FabricationResult:
    """The claims of `output` that neither `source` nor `job_description` supports."""
    found = _extract(output)
    if not found:
        return FabricationResult((), ())
    support = _Support(source, job_description or "")
    unsupported = tuple(item.claim for item in found if not support.holds(item))
    return FabricationResult(unsupported, tuple(item.claim for item in found))


def extract_claims(text: str) -> list[Claim]:
    """Every claim `text` makes, in reading order."""
    return [item.claim for item in _extract(text)]


def _extract(text: str) -> list[_Found]:
    masked = _mask(text)
    degrees = _degrees(masked, lenient=False)
    entities = _entities(masked, text, exclude=[d.claim.span for d in degrees])
    return sorted(_quantities(masked, text) + degrees + entities, key=lambda f: f.claim.span)
