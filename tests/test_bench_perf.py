"""Bench perf end to end on the tiny model: the in-process engine, an interleaved baseline
model, a real `cvml serve` over HTTP (--url), and the load generator's own mechanics."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET

import httpx
import pytest

from cvml.bench.api import run_bench
from cvml.bench.loadgen import RequestRecord, closed_loop, poisson_arrivals, trial_sample
from cvml.bench.perf import LATENCIES
from cvml.bench.report import SCHEMA, load_report
from cvml.bench.workload import BenchPrompt
from cvml.recipe import BenchSpec, GateSpec, ServeSpec

NEW_TOKENS = 8
REQUESTS = 4
TRIALS = 2


def small(**overrides) -> BenchSpec:
    values = dict(
        concurrency=[1, 2], requests_per_level=REQUESTS, trials=TRIALS, warmup_requests=2,
        max_new_tokens=NEW_TOKENS, bias_probe=False,
    )
    return BenchSpec(**(values | overrides))


@pytest.fixture(scope="module")
def bench_run(tiny_base, tmp_path_factory):
    """One bench of the tiny model (engine, concurrency 1 and 2), gates that pass."""
    out = tmp_path_factory.mktemp("bench") / "out"
    spec = small(gates=[GateSpec(metric="perf.c2.e2e_p95_s", max=120), GateSpec(metric="perf.c1.error_rate", max=0)])
    return run_bench(str(tiny_base), spec, name="tiny", out_dir=out, quality=False)


def test_end_to_end_report_has_sane_numbers(bench_run):
    report = bench_run.report
    assert bench_run.exit_code == 0 and report["verdict"] == "pass" and report["schema"] == SCHEMA
    for level in ("c1", "c2"):
        m = report["metrics"]["perf"][level]
        # EOS ignored: every request decodes exactly NEW_TOKENS tokens.
        assert m["requests"] == TRIALS * REQUESTS and m["errors"] == 0 and m["error_rate"] == 0
        assert m["output_tokens"] == TRIALS * REQUESTS * NEW_TOKENS
        for kind in LATENCIES:
            p = [m[f"{kind}_{s}_s"] for s in ("p50", "p90", "p95", "p99")]
            assert 0 < p[0] <= p[1] <= p[2] <= p[3]
        assert m["ttft_p50_s"] < m["e2e_p50_s"]
        trials = report["samples"]["perf"][level]
        assert [t["trial"] for t in trials] == list(range(TRIALS))
        for t in trials:
            assert len(t["e2e_s"]) == len(t["ttft_s"]) == REQUESTS
            assert 0 < len(t["itl_s"]) <= REQUESTS * (NEW_TOKENS - 1)
            assert t["output_tokens_per_s"] == pytest.approx(REQUESTS * NEW_TOKENS / t["wall_s"], rel=1e-3)
            assert max(t["e2e_s"]) <= t["wall_s"] + 1e-3
        assert m["output_tokens_per_s"] == pytest.approx(sum(t["output_tokens_per_s"] for t in trials) / TRIALS, rel=1e-4)
    assert report["metrics"]["load_s"] > 0 and report["metrics"]["resources"]["peak_rss_mb"] > 50
    fp = report["fingerprint"]
    # Measured as `cvml serve` loads it: a model this small is served in fp32 on a CPU.
    assert fp["device"] == "cpu" and fp["dtype"] == "float32" and fp["target"] == "engine"
    assert fp["torch"] and fp["cpu_cores"] >= 1
    assert report["config"]["perf_prompts"] == "synthetic" and len(report["config"]["workload_sha256"]) == 64


def test_end_to_end_writes_every_artifact(bench_run):
    out = bench_run.out_dir
    for name in ("report.json", "report.md", "junit.xml", "latency_cdf.png", "throughput.png", "manifest.json"):
        assert (out / name).is_file(), name
    for png in ("latency_cdf.png", "throughput.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = load_report(out / "report.json")
    assert saved["metrics"] == json.loads(json.dumps(bench_run.report["metrics"]))
    assert json.loads((out / "manifest.json").read_text())["kind"] == "bench"
    md = (out / "report.md").read_text()
    assert "✅ PASS" in md and "| c2 |" in md and "`perf.c2.e2e_p95_s`" in md
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_saved_baseline_from_another_machine_warns_loudly(bench_run, tiny_base, tmp_path):
    baseline = json.loads((bench_run.out_dir / "report.json").read_text())
    baseline["fingerprint"]["cpu_model"] = "Some Other CPU"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    spec = small(concurrency=[1], gates=[GateSpec(metric="perf.c1.output_tokens_per_s", max_drop=0.95)])
    result = run_bench(str(tiny_base), spec, name="tiny", out_dir=tmp_path / "out", baseline=path, quality=False)
    assert any(w.startswith("FINGERPRINT MISMATCH") and "Some Other CPU" in w for w in result.warnings)
    here = result.report["fingerprint"]["cpu_model"]
    assert result.report["baseline"]["fingerprint_differences"] == [f"cpu_model: {here!r} ≠ 'Some Other CPU'"]
    [gate] = result.report["gates"]
    assert gate["method"] == "trials" and gate["verdict"] == "pass"  # saved report: trials not paired
    assert "FINGERPRINT MISMATCH" in (tmp_path / "out" / "report.md").read_text()


def test_baseline_model_trials_are_interleaved_and_paired(tiny_base, tmp_path):
    spec = small(concurrency=[2], gates=[GateSpec(metric="perf.c2.output_tokens_per_s", max_drop=0.9)])
    result = run_bench(
        str(tiny_base), spec, name="tiny", out_dir=tmp_path / "out", baseline_model=str(tiny_base), quality=False,
    )
    cand, base = result.report, result.baseline_report
    assert cand["pairing"]["run_id"] == base["pairing"]["run_id"] and cand["pairing"]["interleaved"]
    # Block k runs both sides back to back; the order alternates AB, BA.
    assert [(t["block"], t["slot"]) for t in cand["samples"]["perf"]["c2"]] == [(0, 0), (1, 1)]
    assert [(t["block"], t["slot"]) for t in base["samples"]["perf"]["c2"]] == [(0, 1), (1, 0)]
    [gate] = cand["gates"]
    assert gate["method"] == "paired-trials" and gate["verdict"] == "pass"
    assert load_report(tmp_path / "out" / "baseline" / "report.json")["role"] == "baseline"
    assert result.warnings == []


def test_refused_requests_count_as_errors_and_fail_latency_gates(tiny_base, tmp_path):
    spec = small(concurrency=[2], trials=1, warmup_requests=0, gates=[GateSpec(metric="perf.c2.e2e_p95_s", max=10)])
    result = run_bench(
        str(tiny_base), spec, name="tiny", out_dir=tmp_path / "out", serve=ServeSpec(max_queue=0), quality=False,
    )
    m = result.report["metrics"]["perf"]["c2"]
    assert m["error_rate"] == 1.0 and m["errors"] == REQUESTS and m["e2e_p95_s"] is None
    assert "QueueFullError" in result.report["samples"]["perf"]["c2"][0]["error_messages"][0]
    assert result.exit_code == 1 and "no value" in result.report["gates"][0]["message"]


def test_url_mode_measures_a_real_cvml_server(tiny_base, tmp_path):
    from cvml.serve.server import BackgroundServer

    with BackgroundServer(ServeSpec(model=str(tiny_base), port=0, device="cpu", log_db=str(tmp_path / "log.db"))) as server:
        model_id = httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]
        result = run_bench(
            model_id, small(concurrency=[2], trials=2), name="tiny", out_dir=tmp_path / "out", url=server.url,
            quality=False,
        )
    report = result.report
    m = report["metrics"]["perf"]["c2"]
    assert m["errors"] == 0 and m["requests"] == TRIALS * REQUESTS
    # cvml serve stops at EOS (it does not take ignore_eos), so up to NEW_TOKENS each.
    assert 0 < m["output_tokens"] <= TRIALS * REQUESTS * NEW_TOKENS
    assert m["ttft_p50_s"] <= m["e2e_p50_s"]
    assert report["fingerprint"]["target"] == "url" and report["model"]["url"] == server.url
    assert "load_s" not in report["metrics"] and "resources" not in report["metrics"]


# --------------------------------------------------------------------------- load generator


PROMPTS = [BenchPrompt(f"p{i}", ({"role": "user", "content": str(i)},)) for i in range(3)]


def test_closed_loop_keeps_exactly_c_requests_in_flight():
    in_flight, peak, asked = 0, 0, []

    async def send(prompt):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        asked.append(prompt.id)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return RequestRecord(ok=True, ttft_s=0.001, e2e_s=0.01, output_tokens=5)

    run = asyncio.run(closed_loop(send, PROMPTS, concurrency=3, n_requests=10))
    assert peak == 3 and len(run.records) == 10
    assert sorted(asked) == sorted(f"p{i % 3}" for i in range(10))
    sample = trial_sample(run)
    assert sample["output_tokens"] == 50 and sample["requests_per_s"] == pytest.approx(10 / run.wall_s)


def test_poisson_arrivals_follow_a_seeded_schedule():
    starts: list[float] = []

    async def send(prompt):
        starts.append(time.perf_counter())
        return RequestRecord(ok=True, e2e_s=0.0)

    asyncio.run(poisson_arrivals(send, PROMPTS, rate=100.0, n_requests=30, seed=7))
    first = [b - a for a, b in zip(starts, starts[1:])]
    starts.clear()
    asyncio.run(poisson_arrivals(send, PROMPTS, rate=100.0, n_requests=30, seed=7))
    second = [b - a for a, b in zip(starts, starts[1:])]
    # Same seed, same gaps (to scheduler jitter); mean gap ≈ 1/rate.
    assert sum(abs(a - b) for a, b in zip(first, second)) / len(first) < 0.005
    assert 0.004 < sum(first) / len(first) < 0.03


def test_failed_requests_are_errors_not_latencies():
    async def send(prompt):
        if prompt.id == "p1":
            return RequestRecord(ok=False, e2e_s=0.001, error="HTTP 500: boom")
        return RequestRecord(ok=True, ttft_s=0.001, e2e_s=0.002, output_tokens=3)

    sample = trial_sample(asyncio.run(closed_loop(send, PROMPTS, concurrency=2, n_requests=6)))
    assert sample["errors"] == 2 and sample["error_rate"] == pytest.approx(1 / 3)
    assert len(sample["e2e_s"]) == 4 and sample["output_tokens"] == 12
    assert sample["error_messages"] == ["HTTP 500: boom"]


def test_quality_run_stores_per_example_values_and_gates_them_paired(tiny_base, tmp_path):
    """--no-perf with a baseline model: both score the same examples; the same greedy model
    on both sides gives a zero difference on every example."""
    from cvml.data.records import validate_row
    from cvml.tiny.synth import generate_records

    rows = [r for r in generate_records(n_people=6, seed=1) if not r["meta"]["planted"]]
    records = [rec for rec in (validate_row(r)[0] for r in rows) if rec is not None][:6]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r.model_dump()) + "\n" for r in records))
    spec = small(gates=[GateSpec(metric="quality.chrf", max_drop=0.5), GateSpec(metric="quality.empty_rate", max=1.0),
                        GateSpec(metric="safety.fabrication_rate", max=1.0)])
    result = run_bench(
        str(tiny_base), spec, name="tiny", out_dir=tmp_path / "out", baseline_model=str(tiny_base), perf=False,
        eval_data=eval_file,
    )
    report = result.report
    assert [row["id"] for row in report["samples"]["quality"]] == [r.id for r in records]
    assert report["metrics"]["quality"]["n"] == 6 and "perf" not in report["metrics"] and "load_s" not in report["metrics"]
    chrf, empty, fabrication = report["gates"]
    assert chrf["method"] == "paired-examples" and chrf["n_candidate"] == 6
    assert chrf["observed"] == 0 and chrf["ci_low"] == chrf["ci_high"] == 0 and chrf["verdict"] == "pass"
    assert empty["verdict"] == "pass" and result.exit_code == 0
    # Quality is measured as served (grounding strict); safety also without grounding.
    safety = report["metrics"]["safety"]
    assert report["config"]["grounding"] == "strict" and fabrication["value"] == safety["fabrication_rate"]
    assert set(safety) == {f"{m}{s}" for m in ("fabrication_rate", "pii_leak_rate", "harmful_rate") for s in ("", "_off")}
    assert safety["fabrication_rate"] == report["metrics"]["quality"]["fabrication_rate"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "### Quality (6 eval examples)" in markdown and "| rate | grounding strict | grounding off |" in markdown
    assert not (tmp_path / "out" / "latency_cdf.png").exists()
