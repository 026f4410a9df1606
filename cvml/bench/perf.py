"""Performance metrics of a level, and where each metric's raw samples live in a report.

A report keeps, per level (`c1`, `c4`, ..., `poisson`), one sample dict per trial (see
`loadgen.trial_sample`). Point figures are computed from them the same way the gates'
bootstrap computes its statistic, so an estimate and its interval always agree:
- latency metrics `{ttft,itl,e2e}_{p50,p90,p95,p99,mean}_s` pool the requests of all trials;
- `requests_per_s`, `output_tokens_per_s` and `error_rate` average the trials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LATENCIES = ("ttft", "itl", "e2e")
STATS = ("p50", "p90", "p95", "p99", "mean")
PER_TRIAL = ("requests_per_s", "output_tokens_per_s", "error_rate")
COUNTS = ("requests", "errors", "output_tokens")
LATENCY_METRIC = re.compile(r"(ttft|itl|e2e)_(p\d{1,2}|mean)_s")


def level_name(concurrency: int) -> str:
    return f"c{concurrency}"


def metric_names() -> list[str]:
    """Every metric a level reports."""
    return [f"{k}_{s}_s" for k in LATENCIES for s in STATS] + list(PER_TRIAL) + list(COUNTS)


def level_metrics(trials: list[dict]) -> dict[str, float]:
    """Point figures of one level from its per-trial samples."""
    from cvml.bench.stats import statistic

    metrics: dict[str, float] = {}
    for kind in LATENCIES:
        pooled = np.concatenate([np.asarray(t[f"{kind}_s"], float) for t in trials])
        for stat in STATS:
            metrics[f"{kind}_{stat}_s"] = round(float(statistic(stat)(pooled)), 6) if pooled.size else None
    for name in PER_TRIAL:
        metrics[name] = round(float(np.mean([t[name] for t in trials])), 6)
    for name in COUNTS:
        metrics[name] = int(sum(t[name] for t in trials))
    return metrics


@dataclass(frozen=True)
class PerfSamples:
    """The raw evidence behind one perf metric: per-trial values, or per-request values grouped by trial."""

    kind: str  # "trials" | "requests"
    trials: list  # list[float] for "trials"; list[list[float]] for "requests"
    stat: str | None = None  # for "requests": "mean" or "pNN"


def perf_samples(samples: dict, level: str, name: str) -> PerfSamples | None:
    """The samples of `perf.<level>.<name>` in a report's `samples.perf`, or None."""
    trials = (samples or {}).get(level)
    if not trials:
        return None
    if name in PER_TRIAL:
        return PerfSamples("trials", [float(t[name]) for t in trials])
    match = LATENCY_METRIC.fullmatch(name)
    if match:
        kind, stat = match.groups()
        return PerfSamples("requests", [t[f"{kind}_s"] for t in trials], stat)
    return None
