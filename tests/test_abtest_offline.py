"""Offline A/B: paired comparisons per metric, the decision, and a run on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvml.abtest.decision import DONT_SHIP, INCONCLUSIVE, SHIP
from cvml.abtest.offline import analyze_pairs, compare_paired, run_offline
from cvml.abtest.power import paired_sample_size
from cvml.abtest.report import write_report
from cvml.errors import ConfigError, DataError
from cvml.recipe import AbtestSpec, GuardrailSpec

SPEC = AbtestSpec(bootstrap_resamples=1999, min_samples=20, mde=1.0)


def _rows(chrf, fabrication=None, latency=None):
    n = len(chrf)
    fabrication = np.zeros(n) if fabrication is None else fabrication
    latency = np.full(n, 0.1) if latency is None else latency
    return [
        {"id": f"r{i}", "task": "rewrite_bullet", "chrf": float(chrf[i]), "fabrication_rate": float(fabrication[i]),
         "pii_leak_rate": 0.0, "keyword_coverage": None, "latency_s": float(latency[i])}
        for i in range(n)
    ]  # fmt: skip


def test_paired_comparison_counts_wins_ties_losses_in_the_metrics_direction():
    a = _rows([50, 50, 50, 50, 50], fabrication=[0, 0, 1, 0, 0], latency=[0.2, 0.2, 0.2, 0.2, 0.2])
    b = _rows([55, 50, 45, 60, 50], fabrication=[0, 1, 0, 1, 1], latency=[0.1, 0.3, 0.1, 0.1, 0.2])
    comparisons = compare_paired(a, b, ["chrf", "fabrication_rate", "latency_s", "keyword_coverage"], n_resamples=999)
    chrf = comparisons["chrf"]
    assert (chrf.wins, chrf.ties, chrf.losses) == (2, 2, 1)
    assert chrf.diff == pytest.approx(2.0) and chrf.test == "wilcoxon"
    fabrication = comparisons["fabrication_rate"]
    # Lower is better: B fabricating where A did not is a loss for B.
    assert (fabrication.wins, fabrication.ties, fabrication.losses) == (1, 1, 3)
    assert fabrication.test == "sign" and fabrication.diff == pytest.approx(0.4)
    latency = comparisons["latency_s"]
    assert (latency.wins, latency.ties, latency.losses) == (3, 1, 1)
    assert "keyword_coverage" not in comparisons  # applies to no example


def test_pairs_are_matched_by_id_not_by_position():
    a = _rows([10, 20, 30])
    b = list(reversed(_rows([11, 21, 31])))
    chrf = compare_paired(a, b, ["chrf"], n_resamples=99)["chrf"]
    assert chrf.diff == pytest.approx(1.0) and chrf.low == chrf.high == pytest.approx(1.0)
    with pytest.raises(DataError, match="share no example id"):
        compare_paired(a, [{**b[0], "id": "other"}], ["chrf"])


def test_a_real_improvement_ships():
    rng = np.random.default_rng(0)
    base = rng.uniform(30, 70, 80)
    comparisons, decision = analyze_pairs(_rows(base), _rows(base + rng.normal(4, 3, 80)), SPEC, ["chrf"])
    assert decision.verdict == SHIP
    assert comparisons["chrf"].low > 0 and comparisons["chrf"].pvalue < 1e-6
    assert [g.passed for g in decision.guardrails] == [True, True]


def test_an_improvement_that_fabricates_more_does_not_ship():
    rng = np.random.default_rng(1)
    base = rng.uniform(30, 70, 80)
    fabricated = (rng.random(80) < 0.3).astype(float)
    _, decision = analyze_pairs(_rows(base), _rows(base + 4, fabrication=fabricated), SPEC, ["chrf"])
    assert decision.verdict == DONT_SHIP
    failed = [g for g in decision.guardrails if not g.passed]
    assert [g.metric for g in failed] == ["fabrication_rate"] and failed[0].harm_lower_bound > 0
    tolerant = SPEC.model_copy(update={"guardrails": [GuardrailSpec(metric="fabrication_rate", tolerance=0.6)]})
    assert analyze_pairs(_rows(base), _rows(base + 4, fabrication=fabricated), tolerant, ["chrf"])[1].verdict == SHIP


def test_a_noisy_small_effect_is_inconclusive_with_the_sample_size_it_needs():
    rng = np.random.default_rng(2)
    base = rng.uniform(30, 70, 30)
    comparisons, decision = analyze_pairs(_rows(base), _rows(base + rng.normal(0.5, 6, 30)), SPEC, ["chrf"])
    assert decision.verdict == INCONCLUSIVE
    assert decision.required_n == paired_sample_size(1.0, comparisons["chrf"].sd, 0.05, 0.8)
    assert decision.required_n > 200


def test_identical_answers_rule_out_the_mde():
    same = _rows(np.linspace(20, 80, 40))
    comparisons, decision = analyze_pairs(same, same, SPEC, ["chrf"])
    assert (comparisons["chrf"].low, comparisons["chrf"].high) == (0.0, 0.0)
    assert comparisons["chrf"].ties == 40 and comparisons["chrf"].pvalue == 1.0
    assert decision.verdict == DONT_SHIP and "MDE" in decision.reasons[0]


def test_unknown_metric_gets_did_you_mean():
    with pytest.raises(ConfigError) as info:
        analyze_pairs(_rows([1, 2]), _rows([1, 2]), SPEC, ["chrff"])
    assert "did you mean 'chrf'" in info.value.hint


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    from cvml.data.records import validate_row
    from cvml.tiny.synth import generate_records

    rows = []
    for row in generate_records(n_people=12, seed=3):
        record, _ = validate_row(row)
        if record and not row["meta"]["planted"] and len(rows) < 12:
            rows.append(record.model_dump())
    path = tmp_path_factory.mktemp("eval") / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_offline_ab_of_a_model_against_itself(tiny_base, eval_file, tmp_path):
    from cvml.registry import Registry

    registry = Registry()
    registry.register(tiny_base, "cv", "base")
    registry.register(tiny_base, "cv", "base")
    registry.promote("cv@1", "prod")
    spec = AbtestSpec(max_new_tokens=8, bootstrap_resamples=999, min_samples=10)
    progress = []
    result = run_offline("cv@prod", "cv@2", eval_file, spec, device="cpu", on_progress=lambda e: progress.append((e.phase, e.done, e.total)))
    assert result.n == 12 and progress[-1] == ("answering", 12, 12)
    assert (result.a["ref"], result.b["ref"]) == ("cv@1", "cv@2")
    # Same weights, same greedy decoding: every quality metric ties on every example.
    assert all(pair["output_a"] == pair["output_b"] for pair in result.pairs)
    chrf = result.comparisons["chrf"]
    assert (chrf.diff, chrf.ties, chrf.pvalue) == (0.0, 12, 1.0)
    assert result.comparisons["latency_s"].mean_a > 0
    assert result.decision.verdict == DONT_SHIP  # an improvement of 1 chrF point is ruled out

    files = write_report(result, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["decision"]["verdict"] == "DON'T SHIP" and report["metrics"]["chrf"]["ties"] == 12
    assert (tmp_path / "report" / "differences.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "report" / "pairs.jsonl").read_text().splitlines()) == 12
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Decision: **DON'T SHIP**" in markdown and "| chrf |" in markdown
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["kind"] == "abtest-offline" and manifest["inputs"]["data"]["sha256"]
    assert set(files) == {"json", "differences", "pairs", "markdown", "manifest"}
