"""The statistics of cvml abtest, validated by simulation.

Each test simulates thousands of experiments at once (arrays of experiments × samples,
fixed seeds) and checks what the issue asks: on A/A data every test's false-positive rate
stays at its nominal level (≤ 6% at α = 0.05), the sequential tests stay there under
continuous peeking (where a peeked fixed-horizon test does not), the power with a known
effect matches the analytic value within a few points, and a planted SRM is found.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from cvml.abtest import power as pw
from cvml.abtest import stats as st
from cvml.abtest.decision import DONT_SHIP, INCONCLUSIVE, SHIP, Comparison, Guardrail, Rule, decide
from cvml.abtest.sequential import mixture_halfwidth, mixture_log_lr, running_difference, sequential_test
from cvml.errors import ConfigError

ALPHA = 0.05
MAX_FPR = 0.06


def _rejects(interval) -> np.ndarray:
    return (interval.low > 0) | (interval.high < 0)


# ----------------------------------------------------------------------------- A/A false positives


@pytest.mark.integration  # 4,000 bootstraps of 999 resamples
def test_paired_bootstrap_false_positive_rate_matches_the_t_test():
    rng = np.random.default_rng(11)
    diffs = rng.normal(size=(4000, 30))
    fpr = _rejects(st.paired_bootstrap(diffs, n_resamples=999, seed=1)).mean()
    exact = (sps.ttest_1samp(diffs, 0, axis=1).pvalue < ALPHA).mean()
    assert fpr <= MAX_FPR
    # The expanded percentile interval tracks the exact t-test even at n = 30 (a plain
    # percentile interval runs ~1.5 points hot there).
    assert abs(fpr - exact) < 0.01


def test_paired_bootstrap_on_a_pass_fail_metric():
    rng = np.random.default_rng(12)
    diffs = rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], size=(3000, 60))  # 0/1 metric, 60% ties
    fpr = _rejects(st.paired_bootstrap(diffs, n_resamples=999, seed=2)).mean()
    assert 0.02 <= fpr <= MAX_FPR


@pytest.mark.parametrize("test", ["sign", "wilcoxon"])
def test_paired_rank_tests_false_positive_rate(test):
    rng = np.random.default_rng(13)
    diffs = rng.standard_t(df=3, size=(5000, 50))  # heavy tails: where rank tests earn their keep
    p = st.sign_test(diffs).pvalue if test == "sign" else st.wilcoxon_test(diffs)
    fpr = (p < ALPHA).mean()
    assert fpr <= MAX_FPR
    assert fpr > 0.02  # not vacuous: the sign test is discrete, but not absurdly conservative at n = 50


def test_two_proportion_false_positive_rate_with_unequal_arms():
    rng = np.random.default_rng(14)
    n_a, n_b = 1800, 200  # a 90/10 split
    x_a, x_b = rng.binomial(n_a, 0.3, 8000), rng.binomial(n_b, 0.3, 8000)
    test = st.two_proportion_test(x_a, n_a, x_b, n_b)
    assert (test.pvalue < ALPHA).mean() <= MAX_FPR
    assert _rejects(test.diff).mean() <= MAX_FPR


def test_welch_false_positive_rate_with_unequal_variances_and_sizes():
    rng = np.random.default_rng(15)
    a, b = rng.normal(0, 1, (6000, 90)), rng.normal(0, 3, (6000, 10))
    test = st.welch_test(a, b)
    assert (test.pvalue < ALPHA).mean() <= MAX_FPR
    assert _rejects(test.diff).mean() <= MAX_FPR


# --------------------------------------------------------------------------------------- SRM


def test_srm_false_alarms_stay_at_its_threshold_and_a_planted_mismatch_is_found():
    rng = np.random.default_rng(16)
    honest = rng.multinomial(10_000, [0.9, 0.1], size=20_000)
    assert st.srm_test(honest, [90, 10]).mismatch.mean() <= 0.002
    # A variant that drops 4% of its users (crashes, a logging bug) on a 50/50 split.
    planted = rng.multinomial(20_000, [0.51, 0.49], size=2000)
    planted[:, 1] = rng.binomial(planted[:, 1], 0.96)
    assert st.srm_test(planted, [50, 50]).mismatch.mean() >= 0.95
    single = st.srm_test([9000, 1200], [90, 10])
    assert single.mismatch and single.pvalue < 1e-8


def test_srm_counts_traffic_in_a_zero_weight_arm_as_mismatch():
    assert st.srm_test([100, 3], [100, 0]).mismatch
    assert not st.srm_test([100, 0], [100, 0]).mismatch


# ------------------------------------------------------------------------- sequential testing


@pytest.mark.parametrize("method", ["msprt", "confidence_sequence"])
def test_sequential_false_positive_rate_under_continuous_peeking(method):
    rng = np.random.default_rng(17)
    experiments, looks = 1000, 3000
    is_b = rng.random((experiments, looks)) < 0.5
    accepted = (rng.random((experiments, looks)) < 0.3).astype(float)
    result = sequential_test(
        running_difference(is_b, accepted), method=method, alpha=ALPHA, mde=0.05, horizon=looks, min_samples=100
    )
    # Read after every single observation and stopped at the first rejection.
    ever_rejected = (result.pvalue <= ALPHA).any(axis=-1)
    assert ever_rejected.mean() <= ALPHA + 0.01
    # The running confidence sequence covers the true difference (0) at every look.
    covered = ((result.low <= 0) & (result.high >= 0)).all(axis=-1)
    assert covered.mean() >= 1 - ALPHA - 0.01


def test_peeking_at_a_fixed_horizon_test_is_what_the_sequential_test_prevents():
    rng = np.random.default_rng(18)
    is_b = rng.random((1000, 3000)) < 0.5
    values = rng.normal(size=(1000, 3000))
    running = running_difference(is_b, values)
    ready = (running.n_a >= 100) & (running.n_b >= 100)
    z = np.abs(running.estimate) / np.sqrt(np.where(ready, running.variance, np.inf))
    naive = (ready & (2 * sps.norm.sf(z) < ALPHA)).any(axis=-1).mean()
    safe = (sequential_test(running, "msprt", ALPHA, mde=0.1, min_samples=100).pvalue <= ALPHA).any(axis=-1).mean()
    assert naive > 0.15  # peeking inflates a 5% test several-fold
    assert safe <= ALPHA + 0.01


def test_sequential_test_with_a_90_10_split_and_a_real_effect():
    rng = np.random.default_rng(19)
    experiments, looks = 600, 6000
    is_b = rng.random((experiments, looks)) < 0.1
    accepted = (rng.random((experiments, looks)) < np.where(is_b, 0.40, 0.30)).astype(float)
    result = sequential_test(running_difference(is_b, accepted), "msprt", ALPHA, mde=0.1, min_samples=100)
    assert result.rejected.mean() >= 0.8  # a 10-point lift is found with ~600 users in b
    detected = result.rejected
    # When it rejects, the always-valid interval excludes 0 on the right side.
    assert (result.low[detected, -1] > 0).all()


def test_mixture_boundary_is_where_the_likelihood_ratio_reaches_one_over_alpha():
    variance, tau2 = np.array([0.004, 0.0004]), 0.01
    half = mixture_halfwidth(variance, tau2, ALPHA)
    assert np.allclose(mixture_log_lr(half, variance, tau2), np.log(1 / ALPHA))
    with pytest.raises(ConfigError, match="minimum detectable effect"):
        sequential_test(running_difference([False, True], [0.0, 1.0]), "msprt", mde=None)


def test_running_difference_matches_direct_computation():
    rng = np.random.default_rng(20)
    is_b, values = rng.random(500) < 0.3, rng.normal(size=500)
    running = running_difference(is_b, values)
    a, b = values[~is_b], values[is_b]
    assert running.estimate[-1] == pytest.approx(b.mean() - a.mean())
    assert running.variance[-1] == pytest.approx(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert (running.n_a[-1], running.n_b[-1]) == (len(a), len(b))


# --------------------------------------------------------------------------------------- power


def test_paired_power_matches_simulation_and_sample_size_reaches_the_target():
    rng = np.random.default_rng(21)
    diffs = rng.normal(0.3, 1.0, (2000, 60))
    simulated = (st.paired_bootstrap(diffs, n_resamples=999, seed=3).low > 0).mean()
    assert simulated == pytest.approx(pw.paired_power(60, 0.3, 1.0), abs=0.03)
    n = pw.paired_sample_size(0.3, 1.0, power=0.8)
    assert 85 <= n <= 95  # (1.96 + 0.84)² / 0.3² ≈ 87, plus the t correction
    at_n = (st.paired_bootstrap(rng.normal(0.3, 1.0, (2000, n)), n_resamples=999, seed=4).low > 0).mean()
    assert at_n == pytest.approx(0.8, abs=0.03)


def test_two_proportion_power_matches_simulation_for_a_90_10_split():
    rng = np.random.default_rng(22)
    n_a, n_b = pw.two_proportion_sample_size(0.30, 0.05, power=0.8, share_b=0.1)
    assert n_b / (n_a + n_b) == pytest.approx(0.1, abs=0.001)
    x_a, x_b = rng.binomial(n_a, 0.30, 8000), rng.binomial(n_b, 0.35, 8000)
    simulated = (st.two_proportion_test(x_a, n_a, x_b, n_b).pvalue < ALPHA).mean()
    assert simulated == pytest.approx(0.8, abs=0.03)
    x_a, x_b = rng.binomial(1000, 0.30, 8000), rng.binomial(1000, 0.35, 8000)
    simulated = (st.two_proportion_test(x_a, 1000, x_b, 1000).pvalue < ALPHA).mean()
    assert simulated == pytest.approx(pw.two_proportion_power(0.30, 0.35, 1000, 1000), abs=0.03)


def test_welch_sample_size_gives_its_power():
    rng = np.random.default_rng(23)
    n_a, n_b = pw.two_sample_size(0.5, 1.0, 2.0, power=0.8, share_b=0.2)
    a, b = rng.normal(0, 1, (4000, n_a)), rng.normal(0.5, 2, (4000, n_b))
    assert (st.welch_test(a, b).pvalue < ALPHA).mean() == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ConfigError, match="minimum detectable effect"):
        pw.two_sample_size(0, 1, 1)


# ------------------------------------------------------------------------ exact small answers


def test_tests_agree_with_scipy_and_hand_computed_values():
    diffs = np.array([1, 1, 1, -1, 0, 1, 1, 0, 1, -1], dtype=float)
    sign = st.sign_test(diffs)
    assert (sign.wins, sign.ties, sign.losses) == (6, 2, 2)
    assert sign.pvalue == pytest.approx(sps.binomtest(6, 8).pvalue)
    continuous = np.array([0.5, 1.2, -0.3, 2.0, 0.8, 1.1, -0.1, 0.9])
    assert st.wilcoxon_test(continuous) == pytest.approx(sps.wilcoxon(continuous).pvalue)
    assert st.wilcoxon_test(np.zeros(10)) == 1.0
    test = st.two_proportion_test(30, 100, 45, 100)
    pooled = 75 / 200
    z = 0.15 / np.sqrt(pooled * (1 - pooled) * 2 / 100)
    assert test.z == pytest.approx(z) and test.pvalue == pytest.approx(2 * sps.norm.sf(z))
    # Newcombe (1998), example (a): 56/70 vs 48/80, hybrid score interval 0.0524 to 0.3339.
    assert (test := st.two_proportion_test(48, 80, 56, 70).diff).low == pytest.approx(0.0524, abs=1e-4)
    assert test.high == pytest.approx(0.3339, abs=1e-4)
    rare = st.two_proportion_test(0, 1000, 0, 1000).diff  # no errors anywhere: still a finite bound
    assert rare.low == pytest.approx(-rare.high) and 0 < rare.high < 0.004
    constant = st.paired_bootstrap(np.full(20, 0.25))
    assert (constant.low, constant.high) == (0.25, 0.25)


# ------------------------------------------------------------------------------ the decision


def _comparison(metric, diff, low, high, higher=True, n=100, bounds=None):
    bound_low, bound_high = bounds or (low, high)
    return Comparison(metric, higher, n, n, 0.5, 0.5 + diff, diff, low, high, bound_low, bound_high, 0.01, "t", "t")


RULE = Rule("chrf", mde=1.0, guardrails=(Guardrail("fabrication_rate", 0.0),), min_samples=20)


@pytest.mark.parametrize(
    ("primary", "fabrication", "verdict"),
    [
        ((2.0, 0.5, 3.5), (0.0, -0.02, 0.02), SHIP),
        ((2.0, 0.5, 3.5), (0.05, 0.01, 0.09), DONT_SHIP),  # better, but fabricates more
        ((-2.0, -3.5, -0.5), (0.0, -0.02, 0.02), DONT_SHIP),  # significantly worse
        ((0.1, -0.4, 0.6), (0.0, -0.02, 0.02), DONT_SHIP),  # an improvement of the MDE is ruled out
        ((0.5, -1.0, 2.0), (0.0, -0.02, 0.02), INCONCLUSIVE),
    ],
)
def test_decision_rule(primary, fabrication, verdict):
    comparisons = {
        "chrf": _comparison("chrf", *primary),
        "fabrication_rate": _comparison("fabrication_rate", *fabrication, higher=False),
    }
    decision = decide(comparisons, RULE, required_n=400)
    assert decision.verdict == verdict
    assert decision.required_n == (400 if verdict == INCONCLUSIVE else None)


def test_decision_respects_direction_min_samples_and_blockers():
    faster = {"latency_s": _comparison("latency_s", -0.2, -0.3, -0.1, higher=False)}
    assert decide(faster, Rule("latency_s", mde=0.05)).verdict == SHIP
    few = {"chrf": _comparison("chrf", 5.0, 2.0, 8.0, n=10)}
    assert decide(few, RULE).verdict == INCONCLUSIVE
    srm = decide({"chrf": _comparison("chrf", 5.0, 2.0, 8.0)}, RULE, blockers=["sample-ratio mismatch"])
    assert srm.verdict == INCONCLUSIVE and srm.reasons == ["sample-ratio mismatch"]
    with pytest.raises(ConfigError, match="rouge_l"):
        decide({"chrf": _comparison("chrf", 1, 0, 2)}, Rule("rouge_l", mde=0.01))
