"""Bootstrap confidence intervals that the relative gates decide on.

Three shapes of evidence reach a gate:
- one value per trial (throughput, error rate): the ratio of trial means, resampled over
  trials with `scipy.stats.bootstrap` — paired when baseline and candidate trials were
  interleaved in one run, so drift that hits both sides of a pair cancels;
- per-request samples grouped by trial (latency percentiles): a two-level bootstrap that
  resamples trials, then requests within them, because requests of one trial share that
  trial's machine state and are not independent draws;
- one value per example on both sides (quality): a paired bootstrap of the mean difference
  on matched example ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def statistic(name: str) -> Callable[..., np.ndarray]:
    """The summary a metric suffix names, `mean` or `pNN` (linear-interpolated percentile),
    as a function of (values, axis=-1)."""
    if name == "mean":
        return lambda x, axis=-1: np.mean(x, axis=axis)
    if name.startswith("p") and name[1:].isdigit():
        q = float(name[1:])
        return lambda x, axis=-1: np.percentile(x, q, axis=axis)
    raise ValueError(f"unknown statistic {name!r}; expected mean or pNN")


def ratio_of_trial_means(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    paired: bool,
    confidence: float,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """CI of mean(candidate) / mean(baseline) over per-trial values.

    Args:
        candidate, baseline: one value per trial (at least two each).
        paired: trials i of both sides ran back to back (interleaved); resample pairs.
        confidence: two-sided level, e.g. 0.95.

    Raises:
        ValueError: fewer than two trials on a side, unequal sides when paired, or a zero baseline.
    """
    from scipy.stats import bootstrap

    c, b = np.asarray(candidate, float), np.asarray(baseline, float)
    if len(c) < 2 or len(b) < 2:
        raise ValueError(f"needs at least 2 trials per side (candidate {len(c)}, baseline {len(b)})")
    if paired and len(c) != len(b):
        raise ValueError(f"paired trials must match one to one (candidate {len(c)}, baseline {len(b)})")
    if b.mean() == 0:
        raise ValueError("the baseline mean is 0, so a ratio is undefined")
    estimate = float(c.mean() / b.mean())
    if np.ptp(c) == 0 and np.ptp(b) == 0:
        return Interval(estimate, estimate, estimate, confidence, "trials")

    def ratio(x, y, axis=-1):
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    res = bootstrap(
        (c, b), ratio, paired=paired, vectorized=True, n_resamples=n_resamples,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return Interval(estimate, float(low), float(high), confidence, "paired-trials" if paired else "trials")


def ratio_of_pooled_stat(
    candidate: Sequence[Sequence[float]],
    baseline: Sequence[Sequence[float]],
    stat: str,
    *,
    paired: bool,
    confidence: float,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """CI of stat(candidate requests) / stat(baseline requests), samples grouped by trial.

    Each resample draws trials with replacement (the same trial indices on both sides when
    paired), then requests with replacement inside each drawn trial, and pools them. With a
    single trial per side it reduces to the ordinary request bootstrap.

    Args:
        candidate, baseline: per trial, the per-request values (e.g. end-to-end seconds).
        stat: "mean" or "pNN".

    Raises:
        ValueError: a side has no samples, paired sides differ in trial count, or the baseline statistic is 0.
    """
    fn = statistic(stat)
    if paired:
        if len(candidate) != len(baseline):
            raise ValueError(f"paired trials must match one to one (candidate {len(candidate)}, baseline {len(baseline)})")
        # A trial without samples (every request failed) drops out with its partner.
        pairs = [(x, y) for x, y in zip(candidate, baseline) if len(x) and len(y)]
        candidate, baseline = [x for x, _ in pairs], [y for _, y in pairs]
    c = [np.asarray(t, float) for t in candidate if len(t)]
    b = [np.asarray(t, float) for t in baseline if len(t)]
    if not c or not b:
        raise ValueError("a side has no samples")
    base_point = float(fn(np.concatenate(b)))
    if base_point == 0:
        raise ValueError("the baseline statistic is 0, so a ratio is undefined")
    estimate = float(fn(np.concatenate(c))) / base_point
    rng = np.random.default_rng(seed)
    picks_c = rng.integers(0, len(c), (n_resamples, len(c)))
    picks_b = picks_c if paired else rng.integers(0, len(b), (n_resamples, len(b)))
    ratios = _pooled_stats(c, picks_c, fn, rng) / _pooled_stats(b, picks_b, fn, rng)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    method = "paired-trials×requests" if paired else "trials×requests"
    return Interval(estimate, float(low), float(high), confidence, method)


def _pooled_stats(trials: list[np.ndarray], picks: np.ndarray, fn, rng: np.random.Generator) -> np.ndarray:
    """The statistic of each resample: for every picked trial, its mean length of requests
    drawn with replacement from it, pooled. Vectorized in chunks to bound memory."""
    lengths = np.array([len(t) for t in trials])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = np.concatenate(trials)
    per_trial = max(1, int(round(lengths.mean())))
    chunk = max(1, 2_000_000 // (picks.shape[1] * per_trial))
    out = []
    for start in range(0, len(picks), chunk):
        p = picks[start : start + chunk]
        draws = rng.random((len(p), p.shape[1], per_trial))
        index = offsets[p][..., None] + (draws * lengths[p][..., None]).astype(np.int64)
        out.append(fn(flat[index].reshape(len(p), -1), axis=1))
    return np.concatenate(out)


def paired_mean_difference(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """CI of mean(candidate_i - baseline_i) over matched examples (paired bootstrap).

    Raises:
        ValueError: sides of different length, or fewer than two pairs.
    """
    from scipy.stats import bootstrap

    c, b = np.asarray(candidate, float), np.asarray(baseline, float)
    if len(c) != len(b) or len(c) < 2:
        raise ValueError(f"needs at least 2 matched pairs (candidate {len(c)}, baseline {len(b)})")
    diff = c - b
    estimate = float(diff.mean())
    if np.ptp(diff) == 0:
        return Interval(estimate, estimate, estimate, confidence, "paired-examples")
    res = bootstrap(
        (diff,), np.mean, vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
        method="percentile", rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return Interval(estimate, float(low), float(high), confidence, "paired-examples")
