"""`cvml bench` through Typer's CliRunner: exit codes 0/1/2, --json, flag precedence,
and `--compare` with its fingerprint warning."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from cvml.bench.api import BenchResult
from cvml.bench.gates import GateResult
from cvml.cli.main import app

SMALL = {
    "concurrency": [1], "requests_per_level": 3, "trials": 2, "warmup_requests": 1, "max_new_tokens": 6,
    "bias_probe": False,
}


def write_recipe(tmp_path, gates, **bench) -> str:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump({"name": "tb", "bench": {**SMALL, **bench, "gates": gates}}), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def passing(runner, tiny_base, tmp_path_factory):
    """A real bench of the tiny model whose gates pass, run with --json."""
    tmp = tmp_path_factory.mktemp("cli")
    recipe = write_recipe(tmp, [{"metric": "perf.c1.error_rate", "max": 0}])
    result = runner.invoke(app, ["bench", str(tiny_base), "--recipe", recipe, "--no-quality", "--out", str(tmp / "out"), "--json"])
    return result, tmp / "out"


def test_passing_gates_exit_0_with_json_on_stdout(passing):
    result, out = passing
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 0 and payload["verdict"] == "pass" and "samples" not in payload
    assert payload["gates"][0]["name"] == "perf.c1.error_rate max 0" and payload["gates"][0]["verdict"] == "pass"
    assert payload["metrics"]["perf"]["c1"]["output_tokens"] == 2 * 3 * 6
    assert (out / "report.json").is_file() and payload["files"]["junit"] == str(out / "junit.xml")


def test_a_failing_gate_exits_1_and_says_why(runner, tiny_base, tmp_path):
    recipe = write_recipe(tmp_path, [{"metric": "perf.c1.output_tokens_per_s", "min": 1.0e12}])
    result = runner.invoke(app, ["bench", str(tiny_base), "--recipe", recipe, "--no-quality", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.stderr
    assert "verdict: FAIL: regression" in result.stdout
    case = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite/testcase")
    assert case.get("name") == "perf.c1.output_tokens_per_s min 1e+12"
    assert "bound ≥ 1e+12" in case.find("failure").get("message")


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give the model to bench"),
        (["m", "--concurrency", "1,x"], "--concurrency '1,x'"),
        (["m", "--no-perf", "--no-quality"], "leave nothing to measure"),
        (["m", "--no-perf"], "quality needs eval records"),
        (["m", "--set", "bench.trails=3"], "did you mean 'bench.trials'"),
        (["m", "--baseline-model", "m2", "--url", "http://127.0.0.1:9"], "cannot be combined with --url"),
    ],
)
def test_usage_and_config_errors_exit_2(runner, args, message):
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_unknown_gate_metric_exits_2_before_measuring(runner, tmp_path, monkeypatch):
    import cvml.modelio

    def no_load(*args, **kwargs):
        raise AssertionError("the model must not be loaded when a gate names an unknown metric")

    monkeypatch.setattr(cvml.modelio, "load_for_inference", no_load)
    recipe = write_recipe(tmp_path, [{"metric": "perf.c4.e2e_p95_s", "max": 1}])
    result = runner.invoke(app, ["bench", "m", "--recipe", recipe, "--no-quality"])
    assert result.exit_code == 2
    assert "did you mean 'perf.c1.e2e_p95_s'" in result.stderr


def test_flags_override_set_which_overrides_the_recipe(runner, tmp_path, monkeypatch):
    seen = {}

    def fake_run_bench(model, spec, **kwargs):
        seen.update(model=model, spec=spec, **kwargs)
        gate = GateResult("perf.c1.error_rate", "max", 0.0, 0.0, "fail", "perf.c1.error_rate = 0.5, bound ≤ 0", value=0.5)
        report = {"name": "tb", "gates": [gate.to_dict()], "metrics": {}, "verdict": "fail", "warnings": []}
        return BenchResult(report, kwargs["out_dir"], {"report_md": "x/report.md"}, [gate])

    monkeypatch.setattr("cvml.bench.api.run_bench", fake_run_bench)
    recipe = write_recipe(tmp_path, [], trials=5, requests_per_level=7)
    result = runner.invoke(app, [
        "bench", "tiny@prod", "--recipe", recipe, "--set", "bench.trials=4", "--set", "bench.requests_per_level=9",
        "--trials", "3", "--concurrency", "1,8", "--out", str(tmp_path / "o"), "--no-quality",
    ])
    assert result.exit_code == 1  # the fake's gate failed
    spec = seen["spec"]
    assert (spec.trials, spec.requests_per_level, spec.concurrency) == (3, 9, [1, 8])
    assert seen["model"] == "tiny@prod" and str(seen["out_dir"]) == str(tmp_path / "o") and seen["quality"] is False


def test_compare_renders_changes_and_warns_on_fingerprint_mismatch(runner, passing, tmp_path):
    _, out = passing
    a = json.loads((out / "report.json").read_text())
    b = copy.deepcopy(a)
    b["fingerprint"]["cpu_model"] = "Another CPU"
    for t in b["samples"]["perf"]["c1"]:
        t["output_tokens_per_s"] *= 0.5
    b["metrics"]["perf"]["c1"]["output_tokens_per_s"] *= 0.5
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))

    result = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"])
    assert result.exit_code == 0, result.stderr
    assert "FINGERPRINT MISMATCH" in result.stderr and "Another CPU" in result.stderr
    diff = json.loads(result.stdout)
    rows = {r["metric"]: r for r in diff["rows"]}
    tput = rows["perf.c1.output_tokens_per_s"]
    assert tput["change"] == pytest.approx(-0.5) and tput["estimate"] == pytest.approx(0.5)
    assert tput["ci_high"] < 1 and tput["significant"]
    assert rows["perf.c1.e2e_p50_s"]["change"] == 0 and not rows["perf.c1.e2e_p50_s"]["significant"]

    table = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert table.exit_code == 0 and "perf.c1.output_tokens_per_s" in table.stdout and "-50.0%" in table.stdout


def test_compare_refuses_files_that_are_not_bench_reports(runner, tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"schema": "other/1"}))
    result = runner.invoke(app, ["bench", "--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "is not a cvml.bench/1 report" in result.stderr
    missing = runner.invoke(app, ["bench", "--compare", str(tmp_path / "nope.json"), str(tmp_path / "x.json")])
    assert missing.exit_code == 2 and "not found" in missing.stderr
