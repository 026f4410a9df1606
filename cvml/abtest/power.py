"""Power and sample size: how many examples (offline) or users (online) an effect needs.

An inconclusive result is only useful with the n that *would* have settled it: the
decision rule reports it for the minimum detectable effect (MDE) it was given.
"""

from __future__ import annotations

import math

from scipy import stats as sps

from cvml.errors import ConfigError

# Sample sizes are searched up to here; beyond it an effect is not worth an experiment.
_MAX_N = 10**9


def paired_power(n: int, effect: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test on n pairs whose differences have mean `effect` and sd `sd`.

    Exact under normal differences: the statistic follows a noncentral t with n - 1
    degrees of freedom and noncentrality effect/sd·sqrt(n).
    """
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)
    nc = effect / sd * math.sqrt(n)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def paired_sample_size(mde: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Smallest number of pairs whose paired t-test has `power` to detect a mean difference of `mde`.

    Starts from the normal approximation n = ((z_{1-α/2} + z_{power}) · sd / mde)² and
    steps up until the exact noncentral-t power reaches the target.

    Raises:
        ConfigError: mde is not positive, or alpha/power are not in (0, 1).
    """
    _check(mde, alpha, power)
    if sd <= 0:
        return 2
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = max(2, math.ceil((z * sd / mde) ** 2))
    while n < _MAX_N and paired_power(n, mde, sd, alpha) < power:
        n += max(1, n // 100)
    return n


def two_proportion_power(p_a: float, p_b: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Power of the two-sided pooled two-proportion z-test (normal approximation).

    power = Φ((|p_b - p_a| - z_{1-α/2}·se0) / se1), with se0 the standard error under H0
    (pooled rate) and se1 under the alternative (Fleiss, without continuity correction).
    """
    if n_a < 1 or n_b < 1:
        return 0.0
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se1 = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    if se1 == 0:
        return 1.0 if p_a != p_b else alpha
    z = sps.norm.ppf(1 - alpha / 2)
    delta = abs(p_b - p_a)
    return float(sps.norm.cdf((delta - z * se0) / se1) + sps.norm.cdf((-delta - z * se0) / se1))


def two_proportion_sample_size(
    p_a: float, mde: float, alpha: float = 0.05, power: float = 0.8, share_b: float = 0.5
) -> tuple[int, int]:
    """Users per arm to detect a rise from `p_a` to `p_a + mde` with the pooled z-test.

    Args:
        p_a: the control's rate (e.g. today's acceptance rate).
        mde: absolute difference to detect (0.02 = two percentage points).
        share_b: the candidate's share of traffic (0.1 for a 90/10 split).

    Returns:
        (n_a, n_b), the smallest sizes in the split's ratio with the wanted power.

    Raises:
        ConfigError: bad mde/alpha/power, p_a + mde outside (0, 1), or share_b outside (0, 1).
    """
    _check(mde, alpha, power)
    p_b = p_a + mde
    if not (0 < p_a < 1 and 0 < p_b < 1):
        raise ConfigError(f"rates must lie in (0, 1): control {p_a:g}, control + mde {p_b:g}")
    if not 0 < share_b < 1:
        raise ConfigError(f"the candidate's traffic share must lie in (0, 1), not {share_b:g}")
    ratio = share_b / (1 - share_b)  # n_b = ratio · n_a
    z_a, z_b = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    pooled = (p_a + ratio * p_b) / (1 + ratio)
    numerator = z_a * math.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio)) + z_b * math.sqrt(
        p_a * (1 - p_a) + p_b * (1 - p_b) / ratio
    )
    n_a = math.ceil((numerator / mde) ** 2)
    return n_a, math.ceil(ratio * n_a)


def two_sample_size(
    mde: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8, share_b: float = 0.5
) -> tuple[int, int]:
    """Observations per arm for Welch's test to detect a difference in means of `mde` (normal approximation).

    Raises:
        ConfigError: bad mde/alpha/power or share_b outside (0, 1).
    """
    _check(mde, alpha, power)
    if not 0 < share_b < 1:
        raise ConfigError(f"the candidate's traffic share must lie in (0, 1), not {share_b:g}")
    ratio = share_b / (1 - share_b)
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n_a = max(2, math.ceil((z / mde) ** 2 * (sd_a**2 + sd_b**2 / ratio)))
    return n_a, max(2, math.ceil(ratio * n_a))


def _check(mde: float, alpha: float, power: float) -> None:
    if not mde or mde <= 0:
        raise ConfigError(f"the minimum detectable effect must be positive, not {mde!r}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ConfigError(f"alpha and power must lie in (0, 1), not alpha={alpha:g}, power={power:g}")
