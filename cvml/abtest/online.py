"""Online A/B analysis from serve's request log: SRM first, then metrics, guardrails, decision.

Order matters: a sample-ratio mismatch (the arms' sizes disagree with the split) means
assignment or logging is broken, so it is checked before anything else and, when found,
makes the verdict INCONCLUSIVE whatever the metrics say.

Metrics, from the log's rows of variants `a` and `b`:
- acceptance_rate: feedback `accepted` (two-proportion z-test);
- rating: feedback `rating` (Welch);
- error_rate: status ≥ 400 among all requests (two-proportion);
- e2e_s, ttft_s: latency of successful requests (Welch);
- fabrication_rate, pii_leak_rate: the serve-time checks (two-proportion).

The primary metric is read with the recipe's sequential test (mSPRT or a confidence
sequence) over the feedback in arrival order, so analysing every day is safe; the
fixed-horizon result is reported beside it for comparison. Guardrails use one-sided
fixed-horizon bounds: re-reading them can only make a false alarm ("don't ship") more
likely, never a false "ship".

Observations are requests, not users: a user's requests are correlated, so intervals are
somewhat optimistic when a few users send most of the traffic. The SRM check counts users
(hashed ids) where the log has them, since users are what the router assigns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cvml.abtest.decision import Comparison, Decision, Guardrail, Rule, decide, higher_is_better
from cvml.registry.experiments import Experiment
from cvml.abtest.power import two_proportion_sample_size, two_sample_size
from cvml.abtest.sequential import SequentialResult, running_difference, sequential_test
from cvml.abtest.stats import srm_test, two_proportion_test, welch_test
from cvml.errors import ConfigError
from cvml.recipe import AbtestSpec

ARMS = ("a", "b")
PROPORTIONS = ("acceptance_rate", "error_rate", "fabrication_rate", "pii_leak_rate")
MEANS = ("rating", "e2e_s", "ttft_s")
METRICS = PROPORTIONS + MEANS
# Points of the sequential path kept in report.json (the PNG uses all of them).
_PATH_POINTS = 200


@dataclass
class OnlineResult:
    """One analysis of a running (or stopped) experiment."""

    experiment: Experiment
    units: dict[str, int]  # users (or anonymous requests) per arm, what SRM tests
    requests: dict[str, int]
    srm: dict[str, Any]
    comparisons: dict[str, Comparison]
    sequential: SequentialResult | None  # the primary metric's path, one entry per observation
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "online",
            "experiment": self.experiment.to_dict(),
            "units": self.units,
            "requests": self.requests,
            "srm": self.srm,
            "decision": self.decision.to_dict(),
            "metrics": {name: c.to_dict() for name, c in self.comparisons.items()},
            "sequential": sequential_path(self.sequential) if self.sequential is not None else None,
        }


def observations(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The (is_b, value) stream of one metric, in arrival order (feedback time for feedback metrics).

    Raises:
        ConfigError: an unknown metric.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown online metric {metric!r}", hint=f"online metrics: {', '.join(METRICS)}")
    picked: list[tuple[str, bool, float]] = []
    for row in rows:
        if row.get("variant") not in ARMS:
            continue
        value = _value(row, metric)
        if value is not None:
            when = row.get("feedback_at") if metric in ("acceptance_rate", "rating") else row.get("at")
            picked.append((when or row.get("at") or "", row["variant"] == "b", float(value)))
    picked.sort(key=lambda item: item[0])
    return np.array([p[1] for p in picked], dtype=bool), np.array([p[2] for p in picked], dtype=float)


def online_rule(spec: AbtestSpec) -> Rule:
    """The decision rule of an online analysis, from the recipe's abtest.online section."""
    online = spec.online
    return Rule(
        primary=online.primary,
        mde=online.mde,
        guardrails=tuple(Guardrail(g.metric, g.tolerance) for g in online.guardrails),
        alpha=spec.alpha,
        power=spec.power,
        min_samples=online.min_samples,
    )


def analyze_rows(experiment: Experiment, rows: Sequence[Mapping[str, Any]], spec: AbtestSpec | None = None) -> OnlineResult:
    """Analyse an experiment's request-log rows (as `RequestLog.query` returns them).

    Raises:
        ConfigError: an unknown primary or guardrail metric, or a sequential setting missing.
    """
    spec = spec or AbtestSpec()
    online = spec.online
    for metric in [online.primary, *(g.metric for g in online.guardrails)]:
        if metric not in METRICS:
            raise ConfigError(f"unknown online metric {metric!r}", hint=f"online metrics: {', '.join(METRICS)}")
    weights = experiment.weights
    units = _units(rows)
    requests = {arm: sum(1 for row in rows if row.get("variant") == arm) for arm in ARMS}
    srm = srm_test([units[arm] for arm in ARMS], [weights[arm] for arm in ARMS], threshold=online.srm_threshold)
    srm_info = {
        "observed": units,
        "expected": {arm: round(float(e), 2) for arm, e in zip(ARMS, srm.expected)},
        "statistic": float(srm.statistic) if np.isfinite(srm.statistic) else None,  # None before any traffic
        "pvalue": float(srm.pvalue),
        "threshold": online.srm_threshold,
        "mismatch": bool(srm.mismatch) and sum(units.values()) > 0,
    }
    comparisons: dict[str, Comparison] = {}
    for metric in METRICS:
        is_b, values = observations(rows, metric)
        if is_b.any() and (~is_b).any():
            comparisons[metric] = _fixed_comparison(metric, is_b, values, spec.alpha)
    sequential = None
    required = None
    primary = online.primary
    if primary in comparisons:
        is_b, values = observations(rows, primary)
        sequential = sequential_test(
            running_difference(is_b, values),
            method=online.sequential,
            alpha=spec.alpha,
            mde=online.mde,
            horizon=online.horizon,
            min_samples=online.min_samples,
        )
        comparisons[primary] = _with_sequential(comparisons[primary], sequential)
        required = _required_n(comparisons[primary], spec, weights["b"] / 100)
    blockers = []
    if srm_info["mismatch"]:
        blockers.append(
            f"sample-ratio mismatch: {units['a']}/{units['b']} units for a {experiment.split} split "
            f"(chi-square p = {srm_info['pvalue']:.2g} < {online.srm_threshold:g}); fix routing or logging before reading results"
        )
    if primary not in comparisons:
        blockers.append(f"no {primary} observations in both variants yet")
        comparisons.setdefault(primary, _empty(primary))
    decision = decide(comparisons, online_rule(spec), required_n=required, blockers=blockers)
    return OnlineResult(experiment, units, requests, srm_info, comparisons, sequential, decision)


def analyze_experiment(
    name: str,
    spec: AbtestSpec | None = None,
    registry: str | Path | None = None,
    log: str | Path | None = None,
) -> OnlineResult:
    """Read an experiment's record and its request-log rows, and analyse them.

    Args:
        name: the experiment.
        spec: the recipe's abtest section (defaults when None).
        registry: registry database holding the experiments table (default $CVML_HOME).
        log: request log database (default $CVML_HOME/requests.db).

    Raises:
        ExperimentError: unknown experiment.
        ConfigError: see `analyze_rows`.
    """
    from cvml.registry.experiments import ExperimentStore
    from cvml.serve.requestlog import RequestLog

    experiment = ExperimentStore(registry).get(name)
    with RequestLog(log) as request_log:
        rows = request_log.query(experiment=name)
    return analyze_rows(experiment, rows, spec)


def sequential_path(result: SequentialResult, points: int = _PATH_POINTS) -> dict[str, Any]:
    """The sequential test over time, thinned to about `points` looks (the last look always kept)."""
    n = len(result.n)
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(points, n)).astype(int), n - 1]) if n else np.array([], int)

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(v) else round(float(v), 6) for v in values[keep]]

    return {
        "method": result.method,
        "alpha": result.alpha,
        "n": [int(v) for v in result.n[keep]],
        "estimate": listed(result.estimate),
        "low": listed(result.low),
        "high": listed(result.high),
        "pvalue": listed(result.pvalue),
        "first_rejection_n": int(result.n[result.first_rejection()]) if result.first_rejection() is not None else None,
    }


def _value(row: Mapping[str, Any], metric: str) -> float | None:
    status = row.get("status") or 0
    if metric == "acceptance_rate":
        return None if row.get("accepted") is None else float(row["accepted"])
    if metric == "rating":
        return row.get("rating")
    if metric == "error_rate":
        return float(status >= 400)
    if status >= 400:
        return None
    if metric == "fabrication_rate":
        return None if row.get("fabrication") is None else float(row["fabrication"])
    if metric == "pii_leak_rate":
        return None if row.get("pii_leak") is None else float(row["pii_leak"])
    return row.get(metric)  # e2e_s, ttft_s


def _units(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Users per arm (hashed ids), each anonymous request counting as one unit."""
    users: dict[str, set[str]] = {arm: set() for arm in ARMS}
    anonymous = dict.fromkeys(ARMS, 0)
    for row in rows:
        arm = row.get("variant")
        if arm not in ARMS:
            continue
        if row.get("user_key"):
            users[arm].add(row["user_key"])
        else:
            anonymous[arm] += 1
    return {arm: len(users[arm]) + anonymous[arm] for arm in ARMS}


def _fixed_comparison(metric: str, is_b: np.ndarray, values: np.ndarray, alpha: float) -> Comparison:
    a, b = values[~is_b], values[is_b]
    if metric in PROPORTIONS:
        test = two_proportion_test(a.sum(), len(a), b.sum(), len(b), 1 - alpha)
        bounds = two_proportion_test(a.sum(), len(a), b.sum(), len(b), 1 - 2 * alpha).diff
        diff, pvalue, name, interval = test.diff, test.pvalue, "two-proportion", "newcombe"
        sd = float(np.sqrt(test.rate_a * (1 - test.rate_a)))
    else:
        test = welch_test(a, b, 1 - alpha)
        bounds = welch_test(a, b, 1 - 2 * alpha).diff
        diff, pvalue, name, interval = test.diff, test.pvalue, "welch", "welch"
        sd = float(a.std(ddof=1)) if len(a) > 1 else None
    return Comparison(
        metric=metric,
        higher_is_better=higher_is_better(metric),
        n_a=len(a),
        n_b=len(b),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        diff=float(diff.estimate),
        low=float(diff.low),
        high=float(diff.high),
        bound_low=float(bounds.low),
        bound_high=float(bounds.high),
        pvalue=float(pvalue),
        test=name,
        interval=interval,
        sd=sd,
        extra={"sd_b": float(b.std(ddof=1)) if len(b) > 1 else None},
    )


def _with_sequential(fixed: Comparison, sequential: SequentialResult) -> Comparison:
    """The primary comparison read through the always-valid test, the fixed-horizon one kept in `extra`."""
    horizon = {k: fixed.to_dict()[k] for k in ("diff", "low", "high", "pvalue", "test")}
    return replace(
        fixed,
        low=float(sequential.low[-1]),
        high=float(sequential.high[-1]),
        pvalue=float(sequential.pvalue[-1]),
        test=sequential.method,
        interval=sequential.method,
        extra={**fixed.extra, "fixed_horizon": horizon},
    )


def _required_n(primary: Comparison, spec: AbtestSpec, share_b: float) -> int | None:
    """Observations of both arms that a fixed-horizon test needs for the MDE (a sequential one needs somewhat more)."""
    online = spec.online
    try:
        if primary.metric in PROPORTIONS:
            rate = min(max(primary.mean_a, 0.01), 0.99)
            if rate + online.mde >= 1:  # detect a fall instead: the size is the same for the complement
                rate = 1 - rate
            n_a, n_b = two_proportion_sample_size(rate, online.mde, spec.alpha, spec.power, share_b)
        else:
            sd_a = primary.sd or 0.0
            sd_b = primary.extra.get("sd_b") or sd_a
            if not sd_a and not sd_b:
                return None
            n_a, n_b = two_sample_size(online.mde, sd_a, sd_b, spec.alpha, spec.power, share_b)
    except ConfigError:
        return None
    return n_a + n_b


def _empty(metric: str) -> Comparison:
    nan = float("nan")
    return Comparison(metric, higher_is_better(metric), 0, 0, nan, nan, nan, nan, nan, nan, nan, 1.0, "none", "none")
