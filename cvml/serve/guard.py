"""The guard of `/v1/cv/rewrite`: what happens when an output fails the safety checks.

- flag: the output goes out with the failing checks flagged (the web app warns).
- retry: resample (a seeded temperature draw, grounding kept) up to `retries` times while
  the deadline leaves room for one more attempt; if none passes, block.
- block: the text comes back unchanged; a failing output never leaves the server.

The checks that can fail an output are the ones about what the model wrote (fabricated
facts, leaked personal data, protected attributes, abusive language); a prompt injection
found in the inputs is reported, not held against the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from cvml.serve.types import SamplingParams

GUARDS = ("flag", "retry", "block")
OUTPUT_CHECKS = ("fabrication", "pii_leak", "protected_attributes", "abusive")
RETRY_TEMPERATURE = 0.7
RETRY_TOP_P = 0.95


def failing(checks: dict) -> list[str]:
    """The output checks of `checks` that flagged, in a fixed order."""
    return [name for name in OUTPUT_CHECKS if (checks.get(name) or {}).get("flagged")]


@dataclass
class GuardOutcome:
    """The attempts of one rewrite and what the guard makes of them."""

    guard: str
    grounding: str
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)
    passed: bool = False
    _started: float = field(default_factory=time.monotonic)
    _slowest_s: float = 0.0

    def observe(self, checks: dict) -> None:
        """Record one attempt's checks."""
        now = time.monotonic()
        self._slowest_s = max(self._slowest_s, now - self._started)
        self._started = now
        self.attempts += 1
        failed = failing(checks)
        self.reasons += [name for name in failed if name not in self.reasons]
        self.passed = not failed

    def should_retry(self, retries: int, deadline: float | None) -> bool:
        """Another attempt is due: guard retry, the last one failed, retries and time left
        (as long again as the slowest attempt so far, so a retry does not turn into a 504)."""
        if self.guard != "retry" or self.passed or self.attempts > retries:
            return False
        return deadline is None or time.monotonic() + self._slowest_s < deadline

    @property
    def action(self) -> str:
        if self.passed:
            return "passed" if self.attempts == 1 else "retried"
        return "flagged" if self.guard == "flag" else "blocked"

    def to_dict(self) -> dict:
        return {"action": self.action, "attempts": self.attempts, "reasons": list(self.reasons),
                "grounding": self.grounding}


def retry_params(params: SamplingParams, attempt: int, request_seed: int) -> SamplingParams:
    """Sampling settings of retry number `attempt` (1, 2, ...): a seeded draw, so the same
    request retries the same way."""
    return replace(
        params,
        temperature=max(params.temperature, RETRY_TEMPERATURE),
        top_p=min(params.top_p, RETRY_TOP_P),
        seed=(request_seed + attempt) % 2**63,
    )
