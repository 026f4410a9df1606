"""The decision rule: SHIP, DON'T SHIP or INCONCLUSIVE, from one primary metric and guardrails.

Stated once, in order (the first that applies wins):

1. the analysis is untrustworthy (a blocker such as a sample-ratio mismatch), or has
   fewer than `min_samples` → INCONCLUSIVE;
2. a guardrail is violated: its one-sided (1 - α) lower bound on the *harmful* change
   exceeds the guardrail's tolerance ("fabrication rate must not rise") → DON'T SHIP;
3. the primary metric is significantly worse (its interval lies below 0) → DON'T SHIP;
4. the primary metric is significantly better (its interval lies above 0) → SHIP;
5. the interval rules out an improvement as large as the MDE → DON'T SHIP (whatever the
   change is, it is smaller than what was worth shipping for);
6. otherwise INCONCLUSIVE, with the sample size a test would need to detect the MDE.

"Better" follows each metric's direction (`higher_is_better`): chrF up is better,
fabrication rate or latency down is better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cvml.errors import ConfigError

SHIP = "SHIP"
DONT_SHIP = "DON'T SHIP"
INCONCLUSIVE = "INCONCLUSIVE"
VERDICTS = (SHIP, DONT_SHIP, INCONCLUSIVE)

# Metrics where a smaller value is the better one; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset(
    {"fabrication_rate", "pii_leak_rate", "harmful_rate", "empty_rate", "error_rate", "latency_s", "e2e_s", "ttft_s"}
)


def higher_is_better(metric: str) -> bool:
    """The direction of a metric: False for the rates of harm and for latencies (see LOWER_IS_BETTER)."""
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Comparison:
    """One metric of B against A: estimates, the decision interval and a test.

    `low`/`high` is the two-sided interval the rule reads for the primary metric (the
    sequential one online); `bound_low`/`bound_high` is the two-sided (1 - 2α) interval,
    i.e. one-sided α bounds on each side, which guardrails read.
    """

    metric: str
    higher_is_better: bool
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float  # mean_b - mean_a
    low: float
    high: float
    bound_low: float
    bound_high: float
    pvalue: float
    test: str  # the test behind pvalue: wilcoxon, sign, welch, two-proportion, msprt, ...
    interval: str  # the method behind low/high: paired_bootstrap, welch, newcombe, msprt, confidence_sequence
    sd: float | None = None  # sd of the paired differences, or of the control arm; for power
    wins: int | None = None  # pairs where B is better (paired comparisons only)
    ties: int | None = None
    losses: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the fixed-horizon result beside a sequential one

    @property
    def n(self) -> int:
        return min(self.n_a, self.n_b)

    def gain(self) -> tuple[float, float, float]:
        """(estimate, low, high) of the improvement: the difference turned so that positive is better."""
        if self.higher_is_better:
            return self.diff, self.low, self.high
        return -self.diff, -self.high, -self.low

    def harm_lower_bound(self) -> float:
        """One-sided (1 - α) lower bound on how much worse B is (positive = worse)."""
        return -self.bound_high if self.higher_is_better else self.bound_low

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


@dataclass(frozen=True)
class Guardrail:
    """A metric that may not get worse by more than `tolerance` (in the metric's units)."""

    metric: str
    tolerance: float = 0.0


@dataclass(frozen=True)
class Rule:
    """What the decision needs from the recipe's abtest section."""

    primary: str
    mde: float
    guardrails: tuple[Guardrail, ...] = ()
    alpha: float = 0.05
    power: float = 0.8
    min_samples: int = 1


@dataclass(frozen=True)
class GuardrailCheck:
    metric: str
    tolerance: float
    harm_lower_bound: float | None  # None when the metric was not measured
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


@dataclass(frozen=True)
class Decision:
    """The verdict, every reason behind it, and what an inconclusive result would need."""

    verdict: str
    reasons: list[str]
    primary: str
    mde: float
    guardrails: list[GuardrailCheck]
    required_n: int | None = None  # pairs (offline) or observations of both arms (online) to detect the MDE
    n: int = 0  # samples of the smaller arm (pairs offline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "primary": self.primary,
            "mde": self.mde,
            "n": self.n,
            "required_n": self.required_n,
            "guardrails": [g.to_dict() for g in self.guardrails],
        }


def decide(
    comparisons: Mapping[str, Comparison],
    rule: Rule,
    required_n: int | None = None,
    blockers: Sequence[str] = (),
) -> Decision:
    """Apply the decision rule (module docstring) to per-metric comparisons.

    Args:
        comparisons: by metric name; must hold the primary metric.
        rule: primary metric, MDE, guardrails, α and minimum samples.
        required_n: the sample size that would detect the MDE (power analysis): pairs
            offline, observations of both arms together online; reported when INCONCLUSIVE.
        blockers: reasons the data cannot be trusted (e.g. a sample-ratio mismatch).

    Raises:
        ConfigError: the primary metric was not measured.
    """
    if rule.primary not in comparisons:
        raise ConfigError(
            f"primary metric {rule.primary!r} was not measured",
            hint=f"set abtest.primary to one of: {', '.join(sorted(comparisons))}",
        )
    primary = comparisons[rule.primary]
    checks = [_check_guardrail(comparisons.get(g.metric), g) for g in rule.guardrails]

    def verdict(kind: str, *reasons: str, needed: int | None = None) -> Decision:
        return Decision(kind, list(reasons), rule.primary, rule.mde, checks, needed, primary.n)

    if blockers:
        return verdict(INCONCLUSIVE, *blockers)
    if primary.n < rule.min_samples:
        return verdict(
            INCONCLUSIVE,
            f"only {primary.n} samples per arm; the rule reads results from {rule.min_samples}",
            needed=required_n,
        )
    failed = [c.detail for c in checks if not c.passed]
    if failed:
        return verdict(DONT_SHIP, *failed)
    gain, low, high = primary.gain()
    shown = f"{rule.primary} {_signed(primary.diff)} [{_signed(primary.low)}, {_signed(primary.high)}]"
    if high < 0:
        return verdict(DONT_SHIP, f"B is significantly worse on {shown}")
    if low > 0:
        return verdict(SHIP, f"B is significantly better on {shown}; every guardrail holds")
    if high < rule.mde:
        return verdict(
            DONT_SHIP,
            f"no improvement as large as the MDE ({rule.mde:g}) on {shown}: the interval rules it out",
        )
    return verdict(
        INCONCLUSIVE,
        f"the interval for {shown} still includes both 0 and the MDE ({rule.mde:g})",
        needed=required_n,
    )


def _check_guardrail(comparison: Comparison | None, guardrail: Guardrail) -> GuardrailCheck:
    if comparison is None:
        return GuardrailCheck(guardrail.metric, guardrail.tolerance, None, True, f"{guardrail.metric}: not measured")
    bound = comparison.harm_lower_bound()
    worse = "rise" if not comparison.higher_is_better else "fall"
    if bound > guardrail.tolerance:
        detail = (
            f"guardrail {guardrail.metric} violated: it {worse}s by at least {bound:.4g} "
            f"(one-sided bound), more than the {guardrail.tolerance:g} allowed"
        )
        return GuardrailCheck(guardrail.metric, guardrail.tolerance, bound, False, detail)
    detail = f"{guardrail.metric}: no significant {worse} beyond {guardrail.tolerance:g}"
    return GuardrailCheck(guardrail.metric, guardrail.tolerance, bound, True, detail)


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Floats rounded for reports; infinities (an unbounded interval) as None."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, float):
            out[key] = None if value != value or value in (float("inf"), float("-inf")) else round(value, 6)
        else:
            out[key] = value
    return out
