"""Harmful-output checks: what a rewrite must not put in front of a recruiter, and what its
inputs must not slip into the prompt.

    result = check_harmful(output, source, job_description)
    result.flagged                  # any of the three below
    result.protected_attributes     # age, gender, religion, health, ... the input did not state
    result.abusive                  # slurs, insults, profanity, discriminatory phrasing
    result.injection                # instructions to the model hidden in the source or job ad
    result.to_dict()                # JSON-ready, e.g. {"injection": {"where": ["job_description"], ...}}

One module per check, each usable alone: `protected` (`find_protected_attributes`),
`abusive` (`find_abusive`, its lexicon in `data/abusive.txt`) and `injection`
(`find_injections`, `neutralise_injections`, to strip an injected sentence before the text
reaches a prompt). `findings` holds what they share. The first two read the output and
leave alone what the inputs already say; the third reads the inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cvml.safety.harmful.abusive import CATEGORIES as ABUSIVE_CATEGORIES
from cvml.safety.harmful.abusive import find_abusive
from cvml.safety.harmful.findings import CheckResult, Finding
from cvml.safety.harmful.injection import CATEGORIES as INJECTION_CATEGORIES
from cvml.safety.harmful.injection import find_injections, neutralise_injections
from cvml.safety.harmful.protected import CATEGORIES as PROTECTED_CATEGORIES
from cvml.safety.harmful.protected import find_protected_attributes

__all__ = ["ABUSIVE_CATEGORIES", "INJECTION_CATEGORIES", "PROTECTED_CATEGORIES", "CheckResult", "Finding",
           "HarmfulResult", "InjectionResult", "check_harmful", "find_abusive", "find_injections",
           "find_protected_attributes", "neutralise_injections"]


@dataclass(frozen=True)
class InjectionResult:
    """The injections found in each input: "source" and "job_description"."""

    findings: dict[str, tuple[Finding, ...]]

    @property
    def flagged(self) -> bool:
        return any(self.findings.values())

    @property
    def where(self) -> list[str]:
        return [name for name, found in self.findings.items() if found]

    def to_dict(self) -> dict:
        everything = [f for found in self.findings.values() for f in found]
        return {"flagged": self.flagged, "where": self.where, "categories": sorted({f.category for f in everything}),
                "n": len(everything), "findings": {name: [asdict(f) for f in found]
                                                   for name, found in self.findings.items() if found}}


@dataclass(frozen=True)
class HarmfulResult:
    """The three checks of one rewrite."""

    protected_attributes: CheckResult
    abusive: CheckResult
    injection: InjectionResult

    @property
    def flagged(self) -> bool:
        return self.protected_attributes.flagged or self.abusive.flagged or self.injection.flagged

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "protected_attributes": self.protected_attributes.to_dict(),
                "abusive": self.abusive.to_dict(), "injection": self.injection.to_dict()}


def check_harmful(output: str, source: str, job_description: str | None = None) -> HarmfulResult:
    """Protected attributes and abusive language in `output` that the inputs do not hold,
    and prompt injection in `source` and `job_description`."""
    inputs = {"source": source, "job_description": job_description or ""}
    return HarmfulResult(
        protected_attributes=find_protected_attributes(output, source, job_description),
        abusive=find_abusive(output, source, job_description),
        injection=InjectionResult({name: tuple(find_injections(text)) for name, text in inputs.items()}),
    )
