"""The gates: pass/fail rules on a report, absolute or relative to a baseline report.

Absolute bounds (`max`, `min`) compare the metric's point figure with the bound.

Relative bounds (`max_drop`, `max_rise`, fractions) are noise-aware: they fail only when
the whole confidence interval lies beyond the bound, i.e. when the change cannot be
explained by run-to-run noise at the chosen confidence.
- Perf metrics: interval of the ratio candidate/baseline. `max_drop: 0.1` fails when the
  interval's upper end is below 0.9; `max_rise: 0.2` when its lower end is above 1.2.
  Trials are resampled as pairs when both reports come from one interleaved run.
- Quality metrics: paired interval of the mean per-example difference on the example ids
  both reports scored; the bound is the fraction of the baseline mean.
A relative bound needs raw samples on both sides; a metric that has none (a single figure
such as load time) takes absolute bounds only.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from cvml.bench import stats
from cvml.bench.perf import perf_samples
from cvml.errors import RecipeError
from cvml.recipe import GateSpec

ABSOLUTE = ("max", "min")
RELATIVE = ("max_drop", "max_rise")
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass
class GateResult:
    """One bound of one gate, with the evidence behind its verdict."""

    metric: str
    kind: str  # max | min | max_drop | max_rise
    bound: float
    threshold: float  # what the observed quantity is compared with (a value, ratio or difference)
    verdict: str  # pass | fail | skipped
    message: str
    value: float | None = None  # candidate point figure
    baseline: float | None = None  # baseline point figure (relative bounds)
    observed: float | None = None  # value (absolute), ratio (perf) or mean difference (quality)
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    method: str = "point"
    n_candidate: int | None = None
    n_baseline: int | None = None

    @property
    def name(self) -> str:
        return f"{self.metric} {self.kind} {self.bound:g}"

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 6)
        return {"name": self.name, **data}


def lookup(metrics: dict, dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path in a metrics tree; a found leaf may be None."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    if isinstance(node, dict) or isinstance(node, bool) or not (node is None or isinstance(node, (int, float))):
        return False, None
    return True, node


def numeric_paths(metrics: dict, prefix: str = "") -> list[str]:
    """Every dotted path of a numeric leaf (for did-you-mean and --compare)."""
    paths: list[str] = []
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths += numeric_paths(value, f"{path}.")
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            paths.append(path)
    return paths


def evaluate_gates(
    gates: list[GateSpec],
    report: dict,
    baseline: dict | None,
    *,
    confidence: float,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    unmeasured: dict[str, str] | None = None,
) -> list[GateResult]:
    """Evaluate every bound of every gate of a report (and its baseline report).

    Relative bounds are skipped (and say so) when no baseline is given; every bound of a
    gate on an area this run did not measure (`unmeasured`: top-level key such as "perf"
    → why, e.g. "--no-perf") is skipped too.

    Raises:
        RecipeError: every gate that cannot be evaluated, at once: an unknown metric (with
            a did-you-mean), a metric the baseline lacks, or a relative bound on a metric
            without the samples a noise-aware test needs.
    """
    results: list[GateResult] = []
    problems: list[tuple[str, str]] = []
    metrics = report.get("metrics", {})
    for i, gate in enumerate(gates):
        where = f"bench.gates[{i}] ({gate.metric})"
        area = gate.metric.split(".")[0]
        if area in (unmeasured or {}):
            results += [
                GateResult(gate.metric, kind, bound, bound, SKIPPED, f"{gate.metric}: not measured ({unmeasured[area]})")
                for kind in ABSOLUTE + RELATIVE
                if (bound := getattr(gate, kind)) is not None
            ]
            continue
        found, value = lookup(metrics, gate.metric)
        if not found:
            problems.append((where, _unknown_metric(gate.metric, metrics)))
            continue
        for kind in ABSOLUTE:
            bound = getattr(gate, kind)
            if bound is not None:
                results.append(_absolute(gate.metric, kind, bound, value))
        for kind in RELATIVE:
            bound = getattr(gate, kind)
            if bound is None:
                continue
            if baseline is None:
                results.append(_skipped(gate.metric, kind, bound, value))
                continue
            try:
                results.append(_relative(gate.metric, kind, bound, report, baseline, confidence, n_resamples))
            except NoEvidence as exc:
                problems.append((where, str(exc)))
    if problems:
        raise RecipeError(
            f"{len(problems)} gate{'s' if len(problems) != 1 else ''} cannot be evaluated",
            problems=problems,
            hint="Gate metrics are dotted paths into report.json's `metrics`, e.g. perf.c4.e2e_p95_s.",
        )
    return results


def check_metric_names(gates: list[GateSpec], planned: dict) -> None:
    """Fail fast, before anything runs, on gates naming a metric this run cannot produce.

    Args:
        planned: a metrics tree with every metric the run will produce (values unused);
            only gates whose top-level area appears in it are checked.

    Raises:
        RecipeError: every unknown metric, each with a did-you-mean.
    """
    problems = [
        (f"bench.gates[{i}] ({gate.metric})", _unknown_metric(gate.metric, planned))
        for i, gate in enumerate(gates)
        if gate.metric.split(".")[0] in planned and not lookup(planned, gate.metric)[0]
    ]
    if problems:
        raise RecipeError(
            f"{len(problems)} gate{'s' if len(problems) != 1 else ''} name metrics this bench does not produce",
            problems=problems,
            hint="Gate metrics are dotted paths into report.json's `metrics`, e.g. perf.c4.e2e_p95_s.",
        )


def _paired(report: dict, baseline: dict | None) -> bool:
    """Trials pair one to one when both reports come from the same interleaved run."""
    a, b = report.get("pairing") or {}, (baseline or {}).get("pairing") or {}
    return bool(a.get("run_id")) and a.get("run_id") == b.get("run_id")


def _unknown_metric(metric: str, metrics: dict) -> str:
    known = numeric_paths(metrics)
    close = difflib.get_close_matches(metric, known, n=1, cutoff=0.6)
    if close:
        return f"no metric {metric!r} in the report; did you mean {close[0]!r}?"
    return f"no metric {metric!r} in the report; it has {len(known)} metrics, e.g. {', '.join(known[:6])}"


def _absolute(metric: str, kind: str, bound: float, value: float | None) -> GateResult:
    symbol = "≤" if kind == "max" else "≥"
    if value is None:
        return GateResult(metric, kind, bound, bound, FAIL, f"{metric} has no value (did every request fail?)")
    ok = value <= bound if kind == "max" else value >= bound
    message = f"{metric} = {value:.6g}, bound {symbol} {bound:g}"
    return GateResult(metric, kind, bound, bound, PASS if ok else FAIL, message, value=value, observed=value)


def _skipped(metric: str, kind: str, bound: float, value: float | None) -> GateResult:
    return GateResult(
        metric, kind, bound, _threshold(kind, bound), SKIPPED,
        f"{metric} {kind} {bound:g}: no baseline report given (--baseline / --baseline-model)", value=value,
    )


def _threshold(kind: str, bound: float) -> float:
    return 1 - bound if kind == "max_drop" else 1 + bound


@dataclass(frozen=True)
class Change:
    """How a metric moved from baseline to candidate, with its noise-aware interval."""

    interval: stats.Interval
    quantity: str  # "ratio" (perf: candidate/baseline) or "difference" (quality: mean per-example change)
    baseline_mean: float  # for "difference": the baseline mean over the matched examples
    n_candidate: int
    n_baseline: int


class NoEvidence(Exception):
    """The reports lack what a noise-aware comparison of a metric needs; the message says what."""


def change(metric: str, report: dict, baseline: dict, *, confidence: float, n_resamples: int = stats.DEFAULT_RESAMPLES) -> Change:
    """The interval of a metric's change between two reports.

    Perf metrics (`perf.<level>.<name>`): ratio candidate/baseline over trials (paired when
    both reports come from one interleaved run). Quality metrics (`quality.<name>`): paired
    mean difference over the example ids both reports scored.

    Raises:
        NoEvidence: the metric has no raw samples on a side, too few trials, no shared
            examples, or a zero baseline.
    """
    parts = metric.split(".")
    if parts[0] == "perf" and len(parts) == 3:
        return _perf_change(parts[1], parts[2], report, baseline, confidence, n_resamples)
    if parts[0] == "quality" and len(parts) == 2:
        return _quality_change(parts[1], report, baseline, confidence, n_resamples)
    raise NoEvidence(
        f"{metric} is a single figure with no per-trial or per-example samples, so a noise-aware relative "
        "bound is impossible; give it an absolute max/min instead"
    )


def _perf_change(level: str, name: str, report: dict, baseline: dict, confidence: float, n_resamples: int) -> Change:
    cand = perf_samples(report.get("samples", {}).get("perf", {}), level, name)
    base = perf_samples(baseline.get("samples", {}).get("perf", {}), level, name)
    if cand is None or base is None:
        side = "candidate" if cand is None else "baseline"
        raise NoEvidence(f"the {side} report holds no raw samples for perf.{level}.{name}")
    paired = _paired(report, baseline)
    try:
        if cand.kind == "trials":
            if len(cand.trials) < 2 or len(base.trials) < 2:
                raise ValueError(
                    f"a noise-aware bound needs at least 2 trials per side (candidate {len(cand.trials)}, "
                    f"baseline {len(base.trials)}); set bench.trials to 3 or more"
                )
            interval = stats.ratio_of_trial_means(
                cand.trials, base.trials, paired=paired, confidence=confidence, n_resamples=n_resamples
            )
        else:
            interval = stats.ratio_of_pooled_stat(
                cand.trials, base.trials, cand.stat, paired=paired, confidence=confidence, n_resamples=n_resamples
            )
    except ValueError as exc:
        raise NoEvidence(f"perf.{level}.{name}: {exc}") from None
    return Change(interval, "ratio", float("nan"), len(cand.trials), len(base.trials))


def _quality_change(name: str, report: dict, baseline: dict, confidence: float, n_resamples: int) -> Change:
    cand = _per_example(report, name)
    base = _per_example(baseline, name)
    if not cand or not base:
        side = "candidate" if not cand else "baseline"
        raise NoEvidence(f"the {side} report holds no per-example values of {name!r}")
    ids = sorted(set(cand) & set(base))
    if len(ids) < 2:
        raise NoEvidence(f"quality.{name}: the reports share {len(ids)} example ids; a paired test needs the same eval set")
    interval = stats.paired_mean_difference(
        [cand[i] for i in ids], [base[i] for i in ids], confidence=confidence, n_resamples=n_resamples
    )
    return Change(interval, "difference", sum(base[i] for i in ids) / len(ids), len(ids), len(ids))


def _relative(metric: str, kind: str, bound: float, report: dict, baseline: dict, confidence: float, n_resamples: int) -> GateResult:
    found, base_value = lookup(baseline.get("metrics", {}), metric)
    if not found:
        raise NoEvidence(f"the baseline report has no metric {metric!r} (made with other settings?)")
    value = lookup(report["metrics"], metric)[1]
    if value is None:
        return GateResult(metric, kind, bound, _threshold(kind, bound), FAIL, f"{metric} has no value (did every request fail?)")
    moved = change(metric, report, baseline, confidence=confidence, n_resamples=n_resamples)
    if moved.quantity == "ratio":
        threshold = _threshold(kind, bound)
    else:  # a fraction of the baseline mean, as a difference
        threshold = (-bound if kind == "max_drop" else bound) * abs(moved.baseline_mean)
    return _decide(metric, kind, bound, threshold, moved, value, base_value)


def _per_example(report: dict, name: str) -> dict[str, float]:
    rows = (report.get("samples") or {}).get("quality") or []
    return {
        str(row["id"]): float(row[name])
        for row in rows
        if "id" in row and isinstance(row.get(name), (int, float)) and not isinstance(row.get(name), bool)
    }


def _decide(metric, kind, bound, threshold, moved: Change, value, base_value) -> GateResult:
    """Fail only when the whole interval lies beyond the threshold."""
    interval = moved.interval
    if kind == "max_drop":
        failed, bad_side, good_side = interval.high < threshold, "below", "above"
    else:
        failed, bad_side, good_side = interval.low > threshold, "above", "below"
    ci = f"[{interval.low:.4g}, {interval.high:.4g}]"
    level = f"{interval.confidence:.0%} CI"
    if failed:
        why = f"the whole {level} lies {bad_side} {threshold:.4g}: a regression beyond noise"
    elif interval.low <= threshold <= interval.high:
        why = f"the {level} straddles {threshold:.4g}: not a confident regression"
    else:
        why = f"the whole {level} lies {good_side} {threshold:.4g}"
    message = (
        f"{metric} {kind} {bound:g}: {moved.quantity} {interval.estimate:.4g} {level} {ci} "
        f"(baseline {_fmt(base_value)} → {_fmt(value)}); {why}"
    )
    return GateResult(
        metric, kind, bound, threshold, FAIL if failed else PASS, message,
        value=value, baseline=base_value, observed=interval.estimate, ci_low=interval.low, ci_high=interval.high,
        confidence=interval.confidence, method=interval.method, n_candidate=moved.n_candidate, n_baseline=moved.n_baseline,
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"
