"""Always-valid inference for online experiments, so that looking every day is safe.

A fixed-horizon test read after every batch of traffic and stopped at the first p < α
has a false-positive rate far above α. Both methods here bound the chance of *ever*
declaring a difference under H0, however often the results are read.

The statistic is the difference in means θ̂ = mean_b - mean_a with estimated variance
V = s_a²/n_a + s_b²/n_b. Treating θ̂ as Gaussian with variance V (the CLT; exact for
Gaussian data with known variance) and mixing the likelihood ratio over a prior
θ ~ N(θ0, τ²) gives the mixture likelihood ratio (Robbins 1970; Johari et al. 2017,
"Peeking at A/B tests: why it matters, and what to do about it", the normal mSPRT):

    Λ(θ0) = sqrt(V / (V + τ²)) · exp( τ² (θ̂ - θ0)² / (2 V (V + τ²)) ).

Λ(θ0) is a nonnegative martingale under θ = θ0, so by Ville's inequality
P(sup Λ ≥ 1/α) ≤ α. Hence:

- the always-valid p-value p_n = min(1, min_{k≤n} 1/Λ_k(0)) ("reject when p_n ≤ α");
- the confidence sequence {θ0 : Λ(θ0) < 1/α} = θ̂ ± sqrt( V (V+τ²)/τ² · (log((V+τ²)/V) - 2 log α) ),
  intersected over time (the running intersection is still valid).

The two methods differ only in how τ² is chosen:

- "msprt": τ = the minimum detectable effect, a prior on the effect in the metric's own
  units (Johari et al. suggest matching τ to the size of effects one expects);
- "confidence_sequence": the asymptotic confidence sequence of Waudby-Smith et al.
  (2021, "Time-uniform central limit theory"), τ² = ρ²σ̂², with ρ chosen so the sequence
  is (nearly) tightest when the experiment reaches its planned size n*: the half-width at
  n* is smallest where x = n*ρ² solves x = -2 log α + log(1 + x), and one step of that
  fixed point gives x = -2 log α + log(1 - 2 log α) (Howard et al. 2021). In the two-arm
  form, with V ≈ σ̂²/n, that is τ² = (n · V) / n* · (-2 log α + log(1 - 2 log α)).

With an estimated variance the guarantee is asymptotic, so no look is evaluated before
each arm has `min_samples` observations; tests/test_abtest_stats.py checks by simulation
that the false-positive rate under continuous peeking stays at or below α.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvml.errors import ConfigError

METHODS = ("msprt", "confidence_sequence")


@dataclass(frozen=True)
class SequentialResult:
    """One always-valid analysis, one entry per look (last axis = looks, in time order).

    Looks before both arms reach `min_samples` have p = 1 and an unbounded interval.
    """

    method: str
    alpha: float
    n: np.ndarray  # observations in both arms at each look
    estimate: np.ndarray  # θ̂ = mean_b - mean_a at each look
    low: np.ndarray  # the confidence sequence, intersected over the looks so far
    high: np.ndarray
    pvalue: np.ndarray  # always-valid p-value (non-increasing)

    @property
    def rejected(self) -> np.ndarray | bool:
        """Whether H0 (no difference) has been rejected by the last look."""
        result = self.pvalue[..., -1] <= self.alpha
        return result.item() if np.ndim(result) == 0 else result

    def first_rejection(self) -> int | None:
        """Index of the first look at which H0 was rejected (one experiment only)."""
        hits = np.flatnonzero(self.pvalue <= self.alpha)
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class RunningDifference:
    """Difference in means after each observation of a stream (last axis = observations)."""

    n_a: np.ndarray
    n_b: np.ndarray
    estimate: np.ndarray
    variance: np.ndarray


def running_difference(is_b: np.ndarray, values: np.ndarray) -> RunningDifference:
    """θ̂ = mean_b - mean_a and V = s_a²/n_a + s_b²/n_b after every observation.

    Args:
        is_b: which arm each observation belongs to (True = b), in arrival order.
        values: the observations (0/1 for a rate such as acceptance, any number otherwise).

    Returns:
        Running arm sizes, estimate and variance; NaN where an arm has fewer than 2
        observations.
    """
    is_b = np.asarray(is_b, dtype=bool)
    values = np.asarray(values, dtype=float)
    means, variances, sizes = [], [], []
    for mask in (~is_b, is_b):
        n = np.cumsum(mask, axis=-1)
        total = np.cumsum(np.where(mask, values, 0.0), axis=-1)
        squares = np.cumsum(np.where(mask, values * values, 0.0), axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
            var = np.maximum(squares - n * mean * mean, 0.0) / (n - 1)
        var = np.where(n >= 2, var, np.nan)
        means.append(mean)
        variances.append(var / n)
        sizes.append(n)
    return RunningDifference(sizes[0], sizes[1], means[1] - means[0], variances[0] + variances[1])


def mixture_log_lr(estimate: np.ndarray, variance: np.ndarray, tau2: np.ndarray | float, null: float = 0.0) -> np.ndarray:
    """log Λ(θ0) of the normal-mixture SPRT (see the module docstring)."""
    total = variance + tau2
    return 0.5 * np.log(variance / total) + tau2 * (estimate - null) ** 2 / (2 * variance * total)


def mixture_halfwidth(variance: np.ndarray, tau2: np.ndarray | float, alpha: float) -> np.ndarray:
    """Half-width of {θ0 : Λ(θ0) < 1/α} around θ̂ (see the module docstring)."""
    total = variance + tau2
    return np.sqrt(variance * total / tau2 * (np.log(total / variance) - 2 * np.log(alpha)))


def mixture_scale(
    method: str,
    variance: np.ndarray,
    n: np.ndarray,
    alpha: float,
    mde: float | None = None,
    horizon: int | None = None,
) -> np.ndarray | float:
    """τ² for a method: mde² (msprt), or the confidence sequence tuned for `horizon` observations.

    Raises:
        ConfigError: unknown method, or the setting it needs (mde > 0, horizon ≥ 1) is missing.
    """
    if method == "msprt":
        if not mde or mde <= 0:
            raise ConfigError("the msprt sequential test needs a positive minimum detectable effect (abtest.online.mde)")
        return float(mde) ** 2
    if method == "confidence_sequence":
        if not horizon or horizon < 1:
            raise ConfigError("the confidence sequence needs a planned sample size (abtest.online.horizon ≥ 1)")
        log_alpha = np.log(alpha)
        return n * variance / horizon * (-2 * log_alpha + np.log(1 - 2 * log_alpha))
    raise ConfigError(f"unknown sequential method {method!r}", hint=f"use one of: {', '.join(METHODS)}")


def sequential_test(
    running: RunningDifference,
    method: str = "msprt",
    alpha: float = 0.05,
    mde: float | None = None,
    horizon: int | None = None,
    min_samples: int = 100,
) -> SequentialResult:
    """Always-valid p-values and confidence sequence at every look of a running difference.

    Args:
        running: the stream's running difference (`running_difference`).
        method: "msprt" or "confidence_sequence" (module docstring).
        alpha: the error rate guaranteed over all looks.
        mde: minimum detectable effect, τ of the msprt prior (metric units).
        horizon: planned total observations, where the confidence sequence is tightest.
        min_samples: looks before both arms hold this many observations are skipped,
            because the Gaussian approximation and the variance estimate need them.

    Raises:
        ConfigError: see `mixture_scale`.
    """
    n = running.n_a + running.n_b
    variance = running.variance
    ready = (running.n_a >= min_samples) & (running.n_b >= min_samples) & (variance > 0)
    # Placeholder variance keeps the arithmetic finite where a look is not evaluated.
    safe_var = np.where(ready, variance, 1.0)
    tau2 = mixture_scale(method, safe_var, n, alpha, mde=mde, horizon=horizon)
    estimate = np.where(ready, running.estimate, 0.0)
    log_lr = np.where(ready, mixture_log_lr(estimate, safe_var, tau2), -np.inf)
    pvalue = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)), axis=-1)
    half = np.where(ready, mixture_halfwidth(safe_var, tau2, alpha), np.inf)
    low = np.maximum.accumulate(np.where(ready, estimate - half, -np.inf), axis=-1)
    high = np.minimum.accumulate(np.where(ready, estimate + half, np.inf), axis=-1)
    return SequentialResult(method, alpha, n, running.estimate, low, high, pvalue)
