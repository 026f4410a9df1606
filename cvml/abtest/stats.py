"""Fixed-horizon tests for comparing two model versions, vectorised over leading axes.

Every function takes arrays whose last axis holds the observations of one experiment;
any leading axes are independent experiments. Reports call them on one experiment,
tests/test_abtest_stats.py calls them on thousands of simulated ones at once to check
false-positive rates and power.

Conventions: a difference is always `b - a` (candidate minus control), and a two-sided
interval at `confidence` doubles as two one-sided bounds at level (1 - confidence) / 2,
which is how guardrails ("must not rise") get their one-sided tests.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

DEFAULT_RESAMPLES = 9999


@dataclass(frozen=True)
class Interval:
    """A point estimate (`b - a`) and its confidence interval; arrays when vectorised."""

    estimate: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    confidence: float


@dataclass(frozen=True)
class SignTest:
    """Per-pair outcomes (b better / equal / worse on the raw difference) and the exact sign-test p-value."""

    wins: np.ndarray | int
    ties: np.ndarray | int
    losses: np.ndarray | int
    pvalue: np.ndarray | float


@dataclass(frozen=True)
class ProportionTest:
    """Two-proportion z-test: rates, difference with its Newcombe interval, pooled z and p."""

    rate_a: np.ndarray | float
    rate_b: np.ndarray | float
    diff: Interval
    z: np.ndarray | float
    pvalue: np.ndarray | float


@dataclass(frozen=True)
class MeanTest:
    """Welch's t-test: means, difference with its Welch interval, t, degrees of freedom, p."""

    mean_a: np.ndarray | float
    mean_b: np.ndarray | float
    diff: Interval
    t: np.ndarray | float
    df: np.ndarray | float
    pvalue: np.ndarray | float


@dataclass(frozen=True)
class SrmTest:
    """Sample-ratio mismatch: observed vs expected counts, chi-square statistic and p-value."""

    observed: np.ndarray
    expected: np.ndarray
    statistic: np.ndarray | float
    pvalue: np.ndarray | float
    mismatch: np.ndarray | bool


def paired_bootstrap(
    diffs: np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """Paired bootstrap interval of the mean difference (Hesterberg's expanded percentile).

    Pairs are resampled together (the per-example differences are resampled), so what
    both models find hard cancels out. A plain percentile interval is too narrow for
    small n (it uses z instead of t and the variance with divisor n); the expanded
    percentile interval widens the nominal level so that its normal-theory coverage is
    exact: it takes the percentile interval at level 1 - 2·Φ(-sqrt(n/(n-1))·t_{n-1, 1-α/2})
    where α = 1 - confidence (Hesterberg 2015, "What teachers should know about the
    bootstrap", The American Statistician 69(4)).

    Args:
        diffs: per-pair differences `b - a`; the last axis holds the pairs of one experiment.
        confidence: two-sided level.
        n_resamples: bootstrap resamples.
        seed: seed or generator, so the same data always gives the same interval.

    Returns:
        The mean difference and its interval (degenerate [d, d] when every pair differs by d).
    """
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.shape[-1]
    estimate = diffs.mean(axis=-1)
    if n < 2:
        nan = _scalar(np.full_like(estimate, np.nan))
        return Interval(_scalar(estimate), nan, nan, confidence)
    alpha = 1 - confidence
    expanded = 1 - 2 * sps.norm.cdf(-np.sqrt(n / (n - 1)) * sps.t.ppf(1 - alpha / 2, n - 1))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    # Resample in batches small enough to keep (batch × experiments × n) in memory.
    batch = max(1, int(2e7 // max(1, diffs.size)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        result = sps.bootstrap(
            (diffs,),
            np.mean,
            axis=-1,
            vectorized=True,
            n_resamples=n_resamples,
            batch=batch,
            confidence_level=expanded,
            method="percentile",
            rng=rng,
        )
    low, high = result.confidence_interval.low, result.confidence_interval.high
    # All pairs equal: every resample has the same mean, which scipy may report as NaN.
    constant = np.ptp(diffs, axis=-1) == 0
    low, high = np.where(constant, estimate, low), np.where(constant, estimate, high)
    return Interval(_scalar(estimate), _scalar(low), _scalar(high), confidence)


def sign_test(diffs: np.ndarray) -> SignTest:
    """Exact two-sided sign test of `b - a` (ties dropped), the paired test for 0/1 metrics.

    On a pass/fail metric it is McNemar's exact test: only discordant pairs count.
    Two-sided p = min(1, 2·P(Bin(wins + losses, 1/2) ≤ min(wins, losses))), what
    `scipy.stats.binomtest` gives for p = 1/2, computed here for whole arrays at once.
    """
    diffs = np.asarray(diffs, dtype=float)
    wins = (diffs > 0).sum(axis=-1)
    losses = (diffs < 0).sum(axis=-1)
    ties = diffs.shape[-1] - wins - losses
    pvalue = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5))
    return SignTest(_scalar(wins), _scalar(ties), _scalar(losses), _scalar(pvalue))


def wilcoxon_test(diffs: np.ndarray) -> np.ndarray | float:
    """Two-sided Wilcoxon signed-rank p-value of `b - a` (zero differences dropped).

    scipy picks the exact distribution for small samples without ties and the normal
    approximation otherwise. All-zero differences (identical outputs) give p = 1.
    """
    diffs = np.asarray(diffs, dtype=float)
    if diffs.shape[-1] == 0:
        return 1.0
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        pvalue = sps.wilcoxon(diffs, axis=-1).pvalue
    return _scalar(np.where(np.isnan(pvalue), 1.0, pvalue))


def two_proportion_test(
    x_a: np.ndarray | int,
    n_a: np.ndarray | int,
    x_b: np.ndarray | int,
    n_b: np.ndarray | int,
    confidence: float = 0.95,
) -> ProportionTest:
    """Two-sided z-test for `rate_b - rate_a` with x successes out of n in each arm.

    The test uses the pooled rate under H0 (se0² = p̂(1-p̂)(1/n_a + 1/n_b)). The interval
    is Newcombe's hybrid score interval (Newcombe 1998, method 10), built from each arm's
    Wilson interval (l, u): [d - sqrt((p_b-l_b)² + (u_a-p_a)²), d + sqrt((u_b-p_b)² + (p_a-l_a)²)].
    Unlike the Wald interval it stays informative for rare events (0 errors in both arms
    still bounds the difference) and keeps its coverage for small counts. An empty arm
    gives p = 1 and an unbounded interval.
    """
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=float) for v in (x_a, n_a, x_b, n_b))
    z_crit = sps.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_a, p_b = x_a / n_a, x_b / n_b
        pooled = (x_a + x_b) / (n_a + n_b)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        diff = p_b - p_a
        z = np.where(se0 > 0, diff / se0, 0.0)
        low_a, high_a = _wilson(p_a, n_a, z_crit)
        low_b, high_b = _wilson(p_b, n_b, z_crit)
        low = diff - np.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
        high = diff + np.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    pvalue = np.where(se0 > 0, 2 * sps.norm.sf(np.abs(z)), 1.0)
    empty = (n_a == 0) | (n_b == 0)
    low, high = np.where(empty, -np.inf, low), np.where(empty, np.inf, high)
    interval = Interval(_scalar(diff), _scalar(low), _scalar(high), confidence)
    return ProportionTest(_scalar(p_a), _scalar(p_b), interval, _scalar(z), _scalar(pvalue))


def _wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of one proportion (the inversion of the score test)."""
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def welch_test(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> MeanTest:
    """Welch's unequal-variance t-test of `mean(b) - mean(a)` (scipy.stats.ttest_ind)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_ind(b, a, axis=-1, equal_var=False)
        ci = result.confidence_interval(confidence_level=confidence)
    diff = b.mean(axis=-1) - a.mean(axis=-1)
    pvalue = np.where(np.isnan(result.pvalue), 1.0, result.pvalue)
    interval = Interval(_scalar(diff), _scalar(ci.low), _scalar(ci.high), confidence)
    return MeanTest(
        _scalar(a.mean(axis=-1)), _scalar(b.mean(axis=-1)), interval, _scalar(result.statistic),
        _scalar(result.df), _scalar(pvalue),
    )  # fmt: skip


def srm_test(counts: np.ndarray, weights: np.ndarray, threshold: float = 0.001) -> SrmTest:
    """Chi-square goodness-of-fit of observed arm sizes against the configured split.

    A sample-ratio mismatch means assignment or logging is broken (a variant crashes,
    a bot hits one arm), so every other result of the experiment is suspect. The usual
    threshold is p < 0.001: strict, because SRM is checked on every analysis.

    Args:
        counts: units per arm (last axis = arms).
        weights: the split, in any unit (90/10 or 0.9/0.1).
        threshold: p-value below which `mismatch` is set.
    """
    counts = np.asarray(counts, dtype=float)
    weights = np.asarray(weights, dtype=float)
    # Arms with zero weight cannot be tested (no expected count); they must also be empty.
    live = weights > 0
    expected = counts[..., live].sum(axis=-1, keepdims=True) * weights / weights.sum()
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # no units yet: 0/0, reported as p = 1
        statistic, pvalue = sps.chisquare(counts[..., live], expected[..., live], axis=-1)
    stray = (counts[..., ~live] > 0).any(axis=-1)
    pvalue = np.where(stray, 0.0, np.where(np.isnan(pvalue), 1.0, pvalue))
    return SrmTest(counts, expected, _scalar(statistic), _scalar(pvalue), _scalar(pvalue < threshold))


def _scalar(value):
    """0-d arrays become Python scalars, so one experiment's results serialise as plain numbers."""
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array
