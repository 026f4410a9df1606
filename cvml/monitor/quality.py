"""Output quality and safety from the request log: rates with confidence intervals, tested
for a rise (never read off a point estimate), latency percentiles, user feedback — overall
and per variant, and over time.

Rates, each over the requests it applies to:
- error_rate (5xx and 429) and timeout_rate (504 or past the deadline): every request;
- fabrication_rate, pii_leak_rate, harmful_rate (protected attributes or abuse): successful
  rewrites, flagged on any attempt — the model's own rate, before the retry guard fixed it;
- blocked_rate: every attempt failed and the guard answered with the text unchanged;
- empty_refusal_rate: an empty output or one that opens like a refusal;
- format_invalid_rate: `cvml.evaluation.textmetrics.format_problems` (except "placeholder":
  the log itself redacts PII into placeholders), on the text sample;
- acceptance_rate: users' `accepted` feedback (a drop is the alert).

Alerts: a rate alerts when it is significantly above its `monitor.rate_limits` bound
(exact one-sided binomial test) or, with a log reference, significantly above the
reference's rate (one-sided Fisher exact test; acceptance: below). Every test of a report
— each rate, overall and per variant — is one family: Holm's step-down keeps the chance
of any false alert within `monitor.quality_alpha`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from scipy import stats

from cvml.monitor.logrows import Request
from cvml.recipe import MonitorSpec
from cvml.windows import Window

_CONFIDENCE = 0.95  # of the intervals shown


def _format_invalid(r: Request) -> bool | None:
    if not r.ok or r.output is None or r.task is None:
        return None
    from cvml.evaluation.textmetrics import format_problems

    return bool(set(format_problems(r.task, r.output, r.source or "")) - {"placeholder"})


# name -> (what counts, higher is worse, only on the text sample)
RATES: dict[str, tuple[Callable[[Request], bool | None], bool, bool]] = {
    "error_rate": (lambda r: r.error, True, False),
    "timeout_rate": (lambda r: r.timeout, True, False),
    "fabrication_rate": (lambda r: r.fabrication, True, False),
    "pii_leak_rate": (lambda r: r.pii_leak, True, False),
    "harmful_rate": (lambda r: r.harmful, True, False),
    "blocked_rate": (lambda r: r.blocked, True, False),
    "empty_refusal_rate": (lambda r: r.empty_refusal, True, False),
    "format_invalid_rate": (_format_invalid, True, True),
    "acceptance_rate": (lambda r: r.accepted, False, False),
}


@dataclass
class Rate:
    events: int
    n: int
    low: float | None = None  # Clopper-Pearson interval
    high: float | None = None

    @property
    def value(self) -> float | None:
        return self.events / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.value, "events": self.events, "n": self.n, "low": self.low, "high": self.high}


@dataclass
class RateTest:
    """One test of a rate: against its bound ("limit") or the reference ("reference")."""

    rate: str
    scope: str  # "all" or a variant
    against: str
    current: float | None
    baseline: float | None  # the bound, or the reference's rate
    pvalue: float
    diff_low: float | None = None  # interval of current - reference (Newcombe)
    diff_high: float | None = None
    adjusted_pvalue: float | None = None
    alert: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        what = self.rate.replace("_", " ")
        where = "" if self.scope == "all" else f" (variant {self.scope})"
        if self.against == "limit":
            return f"{what}{where} {_pct(self.current)} is above its bound {_pct(self.baseline)}"
        direction = "below" if not RATES[self.rate][1] else "above"
        return f"{what}{where} {_pct(self.current)} is {direction} the reference's {_pct(self.baseline)}"


@dataclass
class QualityResult:
    scopes: dict[str, dict[str, Rate]]  # "all" and each variant -> rate -> Rate
    reference: dict[str, dict[str, Rate]]  # the same, of a log reference (empty for training)
    tests: list[RateTest]
    latency: dict[str, dict[str, Any]]  # scope -> percentiles (and "reference")
    feedback: dict[str, dict[str, Any]]
    over_time: dict[str, Any]
    alpha: float

    @property
    def alerts(self) -> list[RateTest]:
        return [t for t in self.tests if t.alert]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rates": {s: {k: r.to_dict() for k, r in rates.items()} for s, rates in self.scopes.items()},
            "reference_rates": {s: {k: r.to_dict() for k, r in rates.items()} for s, rates in self.reference.items()},
            "tests": [t.to_dict() for t in self.tests],
            "alerts": [t.describe() for t in self.alerts],
            "alpha": self.alpha,
            "latency": self.latency,
            "feedback": self.feedback,
            "over_time": self.over_time,
        }


def event_table(rows: Sequence[Request], sample: set[int] | None = None) -> dict[str, np.ndarray]:
    """Per rate, one code per row: 1 the event, 0 not, -1 the rate does not apply (rates read
    from the text apply only to the `sample` row indices)."""
    table = {}
    for name, (event, _, sampled) in RATES.items():
        if sampled and sample is not None:
            codes = np.full(len(rows), -1, dtype=np.int8)
            for i in sample:
                value = event(rows[i])
                if value is not None:
                    codes[i] = int(value)
        else:
            codes = np.fromiter(
                (-1 if (v := event(r)) is None else int(v) for r in rows), dtype=np.int8, count=len(rows)
            )  # fmt: skip
        table[name] = codes
    return table


def rates_of(rows: Sequence[Request], sample: set[int] | None = None) -> dict[str, Rate]:
    """Every rate of `rows` (rates read from the text only over the `sample` row indices)."""
    return _rates(event_table(rows, sample), None)


def _rates(table: dict[str, np.ndarray], index: np.ndarray | None) -> dict[str, Rate]:
    found = {}
    for name, codes in table.items():
        part = codes if index is None else codes[index]
        rate = Rate(int((part == 1).sum()), int((part >= 0).sum()))
        if rate.n:
            ci = stats.binomtest(rate.events, rate.n).proportion_ci(_CONFIDENCE, method="exact")
            rate.low, rate.high = float(ci.low), float(ci.high)
        found[name] = rate
    return found


def assess_quality(
    current: Sequence[Request],
    reference: Sequence[Request] | None,
    spec: MonitorSpec,
    window: Window,
    current_sample: set[int] | None = None,
    reference_sample: set[int] | None = None,
) -> QualityResult:
    """Rates, tests (Holm over the family), latency, feedback and rates over time.

    Args:
        reference: a log reference's requests; None for a training reference (bounds only).
    """
    variants = sorted({r.variant for r in current})
    scopes = {"all": np.arange(len(current))}
    if len(variants) > 1:
        labels = np.array([r.variant for r in current], dtype=object)
        for variant in variants:
            scopes[variant] = np.flatnonzero(labels == variant)
    table = event_table(current, current_sample)
    current_rates = {scope: _rates(table, idx) for scope, idx in scopes.items()}
    reference_rates: dict[str, dict[str, Rate]] = {}
    if reference is not None:
        ref_table = event_table(reference, reference_sample)
        reference_rates["all"] = _rates(ref_table, None)
        labels = np.array([r.variant for r in reference], dtype=object)
        for variant in variants:
            idx = np.flatnonzero(labels == variant)
            if len(idx) >= spec.min_rows and len(variants) > 1:
                reference_rates[variant] = _rates(ref_table, idx)
    tests = []
    for scope, rates in current_rates.items():
        for name, rate in rates.items():
            if rate.n < spec.min_values:
                continue
            bound = spec.rate_limits.get(name)
            if bound is not None:
                p = stats.binomtest(rate.events, rate.n, bound, alternative="greater").pvalue
                tests.append(RateTest(name, scope, "limit", rate.value, bound, float(p)))
            base = (reference_rates.get(scope) or reference_rates.get("all") or {}).get(name)
            if base is not None and base.n >= spec.min_values:
                tests.append(_against_reference(name, scope, rate, base))
    _holm(tests, spec.quality_alpha)
    return QualityResult(
        scopes=current_rates,
        reference=reference_rates,
        tests=tests,
        latency=_latency(current, scopes, reference),
        feedback={s: _feedback([current[i] for i in idx]) for s, idx in scopes.items()},
        over_time=_over_time(current, table, window, spec.time_buckets, variants),
        alpha=spec.quality_alpha,
    )


def _against_reference(name: str, scope: str, rate: Rate, base: Rate) -> RateTest:
    worse_is_higher = RATES[name][1]
    table = [[rate.events, rate.n - rate.events], [base.events, base.n - base.events]]
    p = stats.fisher_exact(table, alternative="greater" if worse_is_higher else "less").pvalue
    low, high = _newcombe(rate, base)
    return RateTest(name, scope, "reference", rate.value, base.value, float(p), low, high)


def _newcombe(a: Rate, b: Rate) -> tuple[float, float]:
    """Newcombe's hybrid score interval of a - b from the two Wilson intervals."""
    pa, pb = a.events / a.n, b.events / b.n
    la, ua = _wilson(a)
    lb, ub = _wilson(b)
    d = pa - pb
    return d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


def _wilson(rate: Rate) -> tuple[float, float]:
    ci = stats.binomtest(rate.events, rate.n).proportion_ci(_CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def _holm(tests: list[RateTest], alpha: float) -> None:
    """Holm's step-down adjusted p-values; a test alerts when its adjusted p is below alpha."""
    order = sorted(range(len(tests)), key=lambda i: tests[i].pvalue)
    m, running = len(tests), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * tests[i].pvalue))
        tests[i].adjusted_pvalue = running
        tests[i].alert = running < alpha


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.quantile(values, [0.5, 0.95, 0.99])
    return {"n": len(values), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _latency(current: Sequence[Request], scopes: dict[str, np.ndarray], reference) -> dict[str, dict[str, Any]]:
    def of(rows) -> dict[str, Any]:
        ok = [r for r in rows if r.ok]
        return {"e2e_s": _percentiles([r.e2e_s for r in ok if r.e2e_s is not None]),
                "ttft_s": _percentiles([r.ttft_s for r in ok if r.ttft_s is not None])}  # fmt: skip

    found = {scope: of([current[i] for i in idx]) for scope, idx in scopes.items()}
    if reference is not None:
        found["reference"] = of(reference)
    return found


def _feedback(rows: Sequence[Request]) -> dict[str, Any]:
    accepted = [r.accepted for r in rows if r.accepted is not None]
    ratings = [r.rating for r in rows if r.rating is not None]
    return {
        "with_feedback": sum(r.accepted is not None or r.rating is not None or r.edited_text is not None for r in rows),
        "accepted": sum(accepted),
        "acceptance_rate": sum(accepted) / len(accepted) if accepted else None,
        "ratings": len(ratings),
        "mean_rating": float(np.mean(ratings)) if ratings else None,
        "edits": sum(r.edited_text is not None for r in rows),
    }


_OVER_TIME = ("error_rate", "timeout_rate", "fabrication_rate", "pii_leak_rate", "harmful_rate", "blocked_rate",
              "empty_refusal_rate", "acceptance_rate")  # fmt: skip


def _over_time(current: Sequence[Request], table: dict[str, np.ndarray], window: Window, buckets: int,
               variants: list[str]) -> dict[str, Any]:  # fmt: skip
    """Per equal slice of the window (and variant): requests, rates, e2e p50/p95."""
    span = window.length.total_seconds() / buckets
    begin = window.start.timestamp()
    stamps = np.fromiter((datetime.fromisoformat(r.at).timestamp() for r in current), dtype=float, count=len(current))
    slot = np.clip(((stamps - begin) // span).astype(int), 0, buckets - 1)
    ok = np.fromiter((r.ok and r.e2e_s is not None for r in current), dtype=bool, count=len(current))
    e2e = np.fromiter((r.e2e_s if r.e2e_s is not None else np.nan for r in current), dtype=float, count=len(current))
    scopes = {"all": np.ones(len(current), dtype=bool)}
    if len(variants) > 1:
        labels = np.array([r.variant for r in current], dtype=object)
        scopes.update({v: labels == v for v in variants})
    series: dict[str, list[dict[str, Any]]] = {}
    for scope, member in scopes.items():
        counts = np.bincount(slot[member], minlength=buckets)
        per_rate = {}
        for name in _OVER_TIME:
            codes = table[name]
            events = np.bincount(slot[member & (codes == 1)], minlength=buckets)
            known = np.bincount(slot[member & (codes >= 0)], minlength=buckets)
            per_rate[name] = [e / k if k else None for e, k in zip(events.tolist(), known.tolist())]
        points = []
        for b in range(buckets):
            latencies = e2e[member & ok & (slot == b)]
            point: dict[str, Any] = {
                "start": datetime.fromtimestamp(begin + b * span, tz=timezone.utc).isoformat(), "n": int(counts[b]),
                **{name: per_rate[name][b] for name in _OVER_TIME},
                "e2e_p50_s": float(np.quantile(latencies, 0.5)) if len(latencies) else None,
                "e2e_p95_s": float(np.quantile(latencies, 0.95)) if len(latencies) else None,
            }  # fmt: skip
            points.append(point)
        series[scope] = points
    return {"bucket_s": span, "series": series}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"
