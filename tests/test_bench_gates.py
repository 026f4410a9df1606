"""Bench gates on constructed reports: absolute bounds, noise-aware relative bounds (perf
ratios over trials and requests, paired quality differences), the config errors, and how
verdicts reach report.md and junit.xml."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cvml.bench import stats
from cvml.bench.gates import check_metric_names, evaluate_gates
from cvml.bench.perf import level_metrics
from cvml.bench.report import attach_gates, render_junit, render_markdown
from cvml.errors import ConfigError, RecipeError
from cvml.recipe import GateSpec

LEVEL = "c4"


def trial(tokens_per_s: float, e2e: list[float], ttft: list[float] | None = None) -> dict:
    """One trial sample shaped like loadgen.trial_sample's."""
    n = len(e2e)
    return {
        "wall_s": n * 32 / tokens_per_s, "requests": n, "errors": 0, "output_tokens": n * 32,
        "requests_per_s": tokens_per_s / 32, "output_tokens_per_s": tokens_per_s, "error_rate": 0.0,
        "ttft_s": ttft or [x / 10 for x in e2e], "e2e_s": e2e, "itl_s": [x / 32 for x in e2e], "error_messages": [],
    }


def report(throughputs, *, latency_scale=1.0, seed=0, run_id=None, quality=None, load_s=1.0) -> dict:
    """A report with one perf level: per-trial throughputs, per-request e2e ~ gamma × scale."""
    rng = np.random.default_rng(seed)
    trials = [trial(tp, list(rng.gamma(20, 0.05, 24) * latency_scale)) for tp in throughputs]
    metrics = {"load_s": load_s, "perf": {LEVEL: level_metrics(trials)}}
    rows = []
    if quality is not None:
        rows = [{"id": i, "chrf": v} for i, v in quality.items()]
        metrics["quality"] = {"chrf": float(np.mean(list(quality.values()))), "n": len(rows)}
    return {
        "schema": "cvml.bench/1", "name": "t", "created_at": "2026-01-01T00:00:00+00:00", "model": {"ref": "m"},
        "fingerprint": {"cpu_model": "x", "device": "cpu", "dtype": "float32"}, "config": {},
        "pairing": {"run_id": run_id}, "metrics": metrics, "samples": {"perf": {LEVEL: trials}, "quality": rows},
    }


def noisy(mean: float, n: int, cv: float, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, mean * cv, n))


TPUT = f"perf.{LEVEL}.output_tokens_per_s"


# ------------------------------------------------------------------------- absolute


def test_absolute_bounds_pass_and_fail_on_the_point_value():
    rep = report([1000, 1010, 990])
    p95 = rep["metrics"]["perf"][LEVEL]["e2e_p95_s"]
    gates = [
        GateSpec(metric=f"perf.{LEVEL}.e2e_p95_s", max=p95 + 0.01),
        GateSpec(metric=f"perf.{LEVEL}.e2e_p95_s", max=p95 - 0.01),
        GateSpec(metric=TPUT, min=999),
        GateSpec(metric=TPUT, min=1001),
    ]
    results = evaluate_gates(gates, rep, None, confidence=0.95)
    assert [r.verdict for r in results] == ["pass", "fail", "pass", "fail"]
    assert results[1].value == pytest.approx(p95) and results[1].threshold == pytest.approx(p95 - 0.01)
    assert f"{p95:.6g}" in results[1].message and "≤" in results[1].message


def test_a_gate_with_two_bounds_gives_two_results_and_relative_ones_skip_without_baseline():
    rep = report([1000, 1010, 990])
    results = evaluate_gates([GateSpec(metric=TPUT, min=500, max_drop=0.1)], rep, None, confidence=0.95)
    assert [(r.kind, r.verdict) for r in results] == [("min", "pass"), ("max_drop", "skipped")]
    assert "no baseline" in results[1].message


# ------------------------------------------------------------------------- relative perf


def test_clear_throughput_regression_fails_with_the_ci_below_the_bound():
    base = report(noisy(1000, 5, 0.02, seed=1), seed=1)
    cand = report(noisy(780, 5, 0.02, seed=2), seed=2)
    [result] = evaluate_gates([GateSpec(metric=TPUT, max_drop=0.1)], cand, base, confidence=0.95)
    assert result.verdict == "fail"
    tput = lambda rep: np.mean([t["output_tokens_per_s"] for t in rep["samples"]["perf"][LEVEL]])  # noqa: E731
    assert result.observed == pytest.approx(tput(cand) / tput(base))
    assert result.ci_low <= result.observed <= result.ci_high < 0.9
    assert result.method == "trials" and result.n_candidate == 5 and result.n_baseline == 5
    assert "lies below 0.9" in result.message


@pytest.mark.parametrize("seed", range(10))
def test_pure_noise_passes(seed):
    """A/A: same distribution, 5% run-to-run noise; the gate never fires."""
    base = report(noisy(1000, 5, 0.05, seed=100 + seed), seed=seed)
    cand = report(noisy(1000, 5, 0.05, seed=200 + seed), seed=seed + 50)
    results = evaluate_gates(
        [GateSpec(metric=TPUT, max_drop=0.1), GateSpec(metric=f"perf.{LEVEL}.e2e_p95_s", max_rise=0.1)],
        cand, base, confidence=0.95,
    )
    assert [r.verdict for r in results] == ["pass", "pass"]


def test_ci_straddling_the_bound_passes_but_the_same_drop_with_low_noise_fails():
    """An observed 12% drop against a 10% bound: with wide noise the CI straddles 0.9 and the
    gate passes (not a confident regression); with tight noise the same drop fails."""
    wide = evaluate_gates(
        [GateSpec(metric=TPUT, max_drop=0.1)],
        report([700, 1060, 880, 980, 780]), report([800, 1200, 1000, 1100, 900]), confidence=0.95,
    )[0]
    assert wide.observed == pytest.approx(0.88)
    assert wide.ci_low < 0.9 < wide.ci_high
    assert wide.verdict == "pass" and "straddles" in wide.message

    tight = evaluate_gates(
        [GateSpec(metric=TPUT, max_drop=0.1)],
        report([876, 884, 880, 878, 882]), report([995, 1005, 1000, 998, 1002]), confidence=0.95,
    )[0]
    assert tight.observed == pytest.approx(0.88)
    assert tight.verdict == "fail"


def test_latency_percentile_gate_resamples_requests_within_trials():
    base = report([1000] * 3, seed=1)
    slower = report([1000] * 3, latency_scale=1.3, seed=2)
    [fail] = evaluate_gates([GateSpec(metric=f"perf.{LEVEL}.e2e_p50_s", max_rise=0.1)], slower, base, confidence=0.95)
    assert fail.verdict == "fail" and fail.method == "trials×requests"
    assert 1.1 < fail.ci_low <= fail.observed <= fail.ci_high
    same = report([1000] * 3, seed=3)
    [ok] = evaluate_gates([GateSpec(metric=f"perf.{LEVEL}.e2e_p50_s", max_rise=0.1)], same, base, confidence=0.95)
    assert ok.verdict == "pass" and ok.ci_low < 1 < ok.ci_high


def test_interleaved_trials_are_paired_and_cancel_drift():
    """The machine slows down 40% over the run and hits both sides of each pair alike; the
    candidate is truly 10% slower. Paired trials see it; unpaired ones drown in the drift."""
    drift = np.linspace(1.0, 0.6, 8)
    base_tp = list(1000 * drift)
    cand_tp = list(900 * drift * np.random.default_rng(0).normal(1, 0.01, 8))
    gate = [GateSpec(metric=TPUT, max_drop=0.05)]
    paired = evaluate_gates(gate, report(cand_tp, run_id="r1"), report(base_tp, run_id="r1"), confidence=0.95)[0]
    unpaired = evaluate_gates(gate, report(cand_tp, run_id="r1"), report(base_tp, run_id="r2"), confidence=0.95)[0]
    assert paired.method == "paired-trials" and unpaired.method == "trials"
    assert paired.verdict == "fail" and paired.ci_high < 0.95
    assert unpaired.verdict == "pass" and unpaired.ci_high > 0.95
    assert paired.ci_high - paired.ci_low < (unpaired.ci_high - unpaired.ci_low) / 4


# ------------------------------------------------------------------------- relative quality


def test_quality_gate_is_a_paired_test_on_matched_example_ids():
    rng = np.random.default_rng(0)
    base_vals = {f"ex{i}": float(v) for i, v in enumerate(rng.uniform(20, 80, 40))}
    # Every example loses 4 points: small against the 20..80 spread between examples, but
    # consistent, so the paired difference is clear. Candidate rows come in another order
    # and hold two ids the baseline never scored.
    worse = {k: v - 4 for k, v in reversed(list(base_vals.items()))} | {"new1": 99.0, "new2": 99.0}
    gate = [GateSpec(metric="quality.chrf", max_drop=0.05)]
    [fail] = evaluate_gates(gate, report([1] * 3, quality=worse), report([1] * 3, quality=base_vals), confidence=0.95)
    assert fail.verdict == "fail" and fail.method == "paired-examples" and fail.n_candidate == 40
    assert fail.observed == pytest.approx(-4.0)
    assert fail.threshold == pytest.approx(-0.05 * np.mean(list(base_vals.values())))

    jitter = {k: v + float(rng.normal(0, 3)) for k, v in base_vals.items()}
    [ok] = evaluate_gates(gate, report([1] * 3, quality=jitter), report([1] * 3, quality=base_vals), confidence=0.95)
    assert ok.verdict == "pass" and ok.ci_low < 0 < ok.ci_high


# ------------------------------------------------------------------------- config errors


def test_unknown_metric_is_a_config_error_with_did_you_mean_and_all_problems_at_once():
    rep = report([1000, 1000])
    with pytest.raises(RecipeError) as info:
        evaluate_gates(
            [GateSpec(metric=f"perf.{LEVEL}.e2e_p95", max=1), GateSpec(metric="quality.chrf", min=1)], rep, None,
            confidence=0.95,
        )
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2
    problems = dict(info.value.problems)
    assert len(problems) == 2
    assert "did you mean 'perf.c4.e2e_p95_s'" in problems[f"bench.gates[0] (perf.{LEVEL}.e2e_p95)"]
    assert "no metric 'quality.chrf'" in problems["bench.gates[1] (quality.chrf)"]


def test_relative_bound_without_raw_samples_or_enough_trials_is_a_config_error():
    base, cand = report([1000, 1000]), report([1000])
    with pytest.raises(RecipeError) as info:
        evaluate_gates(
            [GateSpec(metric="load_s", max_rise=0.2), GateSpec(metric=TPUT, max_drop=0.1)], cand, base, confidence=0.95
        )
    problems = dict(info.value.problems)
    assert "absolute max/min instead" in problems["bench.gates[0] (load_s)"]
    assert "at least 2 trials per side (candidate 1, baseline 2)" in problems[f"bench.gates[1] ({TPUT})"]


def test_baseline_lacking_the_metric_is_a_config_error():
    base = report([1000, 1000])
    base["metrics"]["perf"] = {"c1": base["metrics"]["perf"][LEVEL]}
    with pytest.raises(RecipeError, match="cannot be evaluated") as info:
        evaluate_gates([GateSpec(metric=TPUT, max_drop=0.1)], report([1000, 1000]), base, confidence=0.95)
    assert "baseline report has no metric" in info.value.problems[0][1]


def test_gates_on_unmeasured_areas_are_skipped_and_names_are_checked_before_running():
    results = evaluate_gates(
        [GateSpec(metric="quality.chrf", min=40, max_drop=0.1)], report([1, 1]), None, confidence=0.95,
        unmeasured={"quality": "--no-quality"},
    )
    assert [(r.kind, r.verdict) for r in results] == [("min", "skipped"), ("max_drop", "skipped")]
    assert "--no-quality" in results[0].message
    planned = {"perf": {"c1": {"e2e_p95_s": None}}, "quality": {"chrf": None}}
    check_metric_names([GateSpec(metric="perf.c1.e2e_p95_s", max=1), GateSpec(metric="bias.impact_ratio", min=0.8)], planned)
    with pytest.raises(RecipeError) as info:
        check_metric_names([GateSpec(metric="perf.c16.e2e_p95_s", max=1)], planned)
    assert "did you mean 'perf.c1.e2e_p95_s'" in info.value.problems[0][1]


def test_all_requests_failing_fails_latency_gates_instead_of_erroring():
    rep = report([1000, 1000])
    rep["metrics"]["perf"][LEVEL]["e2e_p95_s"] = None
    results = evaluate_gates(
        [GateSpec(metric=f"perf.{LEVEL}.e2e_p95_s", max=1.0, max_rise=0.1)], rep, report([1000, 1000]), confidence=0.95
    )
    assert [r.verdict for r in results] == ["fail", "fail"]
    assert all("no value" in r.message for r in results)


# ------------------------------------------------------------------------- stats


def test_bootstrap_helpers_handle_constant_and_single_trial_data():
    flat = stats.ratio_of_trial_means([5, 5], [5, 5], paired=True, confidence=0.95)
    assert (flat.low, flat.estimate, flat.high) == (1.0, 1.0, 1.0)
    one = stats.ratio_of_pooled_stat([[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]], "p50", paired=False, confidence=0.9)
    assert one.estimate == 1.0 and one.low < 1.0 < one.high
    with pytest.raises(ValueError, match="one to one"):
        stats.ratio_of_trial_means([1, 2, 3], [1, 2], paired=True, confidence=0.95)
    # A paired trial whose requests all failed leaves with its partner.
    gap = stats.ratio_of_pooled_stat([[2.0, 2.0], [], [4.0]], [[1.0, 1.0], [9.0], [2.0]], "mean", paired=True, confidence=0.95)
    assert gap.estimate == pytest.approx((8 / 3) / (4 / 3))


# ------------------------------------------------------------------------- rendering


def test_verdicts_reach_markdown_and_junit_with_their_evidence():
    base = report(noisy(1000, 5, 0.02, seed=1), seed=1)
    cand = report(noisy(780, 5, 0.02, seed=2), seed=2)
    cand["role"], cand["warnings"], cand["baseline"] = "candidate", ["FINGERPRINT MISMATCH: cpu_model"], {"metrics": base["metrics"]}
    results = evaluate_gates(
        [GateSpec(metric=TPUT, max_drop=0.1), GateSpec(metric=f"perf.{LEVEL}.e2e_p95_s", max=100)], cand, base,
        confidence=0.95,
    )
    attach_gates(cand, results)
    assert cand["verdict"] == "fail"

    md = render_markdown(cand)
    assert "❌ FAIL" in md and "FINGERPRINT MISMATCH" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| `{TPUT}`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith("-2") and "[" in cells[3]  # change ≈ -22% with its CI
    assert cells[4] == "drop ≤ 10% (95% CI)" and "FAIL" in cells[5]

    suite = ET.fromstring(render_junit(cand)).find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    failure = cases[f"{TPUT} max_drop 0.1"].find("failure")
    assert failure is not None and "95% CI" in failure.get("message") and "below 0.9" in failure.get("message")
    assert cases[f"perf.{LEVEL}.e2e_p95_s max 100"].find("failure") is None
