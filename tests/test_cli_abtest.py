"""`cvml abtest ...` through Typer's CliRunner: flags, recipe precedence, JSON, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cvml.cli.main import app
from cvml.progress import Progress


@pytest.fixture
def registry(tmp_path):
    from cvml.registry import Registry

    model = tmp_path / "model"
    model.mkdir()
    reg = Registry()
    reg.register(model, "cv", "base")
    reg.register(model, "cv", "finetune")
    reg.promote("cv@1", "prod")
    reg.promote("cv@2", "canary")
    return reg


@pytest.fixture
def fake_offline(monkeypatch):
    """Patch the library call; record what the CLI passed and answer with a real analysis of synthetic pairs."""
    from cvml.abtest import offline

    calls = {}

    def run(a, b, data, spec, metrics=None, split="test", device="auto", seed=0, on_progress=None,
            grounding=("off", "off")):
        calls.update(a=a, b=b, data=data, spec=spec, metrics=metrics, split=split, grounding=grounding)
        rng = np.random.default_rng(0)
        base = rng.uniform(30, 70, 40)
        rows_a = [{"id": str(i), "task": "summary", "chrf": base[i], "fabrication_rate": 0.0, "pii_leak_rate": 0.0}
                  for i in range(40)]  # fmt: skip
        rows_b = [{**row, "chrf": row["chrf"] + 5} for row in rows_a]
        comparisons, decision = offline.analyze_pairs(rows_a, rows_b, spec, metrics or ["chrf"])
        if on_progress is not None:  # None under --json
            on_progress(Progress("answering", 40, 40))
        info = {"ref": "cv@1", "path": "/m", "requested": a}
        return offline.OfflineResult(info, {**info, "ref": "cv@2", "requested": b}, str(data), comparisons, decision,
                                     [{"id": r["id"]} for r in rows_a], {"max_new_tokens": spec.max_new_tokens})  # fmt: skip

    monkeypatch.setattr(offline, "run_offline", run)
    return calls


def test_offline_json_report_and_flag_precedence(runner, fake_offline, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "abtest": {"mde": 2.0, "eval_samples": 10, "eval_data": "from-recipe"}}))
    result = runner.invoke(app, [
        "abtest", "offline", "--a", "cv@prod", "--b", "runs/new", "--data", "data/x", "--metric", "chrf",
        "--recipe", str(recipe), "--set", "abtest.max_new_tokens=7", "--limit", "5", "--out", str(tmp_path / "rep"), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["decision"]["verdict"] == "SHIP" and payload["decision"]["mde"] == 2.0
    assert payload["metrics"]["chrf"]["diff"] == pytest.approx(5.0)
    spec = fake_offline["spec"]
    assert (spec.eval_samples, spec.max_new_tokens, spec.mde) == (5, 7, 2.0)  # flag > --set > recipe
    assert fake_offline["data"] == "data/x" and fake_offline["metrics"] == ["chrf"]
    assert (tmp_path / "rep" / "report.md").is_file() and payload["files"]["json"].endswith("report.json")


def test_offline_table_and_default_folder(runner, fake_offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["abtest", "offline", "--a", "cv@prod", "--b", "runs/new", "--data", "d.jsonl",
                                 "--grounding-b", "strict"])
    assert result.exit_code == 0, result.stderr
    assert "Decision: SHIP" in result.stdout and "chrf" in result.stdout
    assert fake_offline["grounding"] == ("off", "strict")
    assert (tmp_path / "abtest" / "offline-cv_prod-vs-new" / "report.json").is_file()


def test_offline_grounding_must_be_a_mode(runner, fake_offline):
    result = runner.invoke(app, ["abtest", "offline", "--a", "x", "--b", "y", "--data", "d", "--grounding-b", "on"])
    assert result.exit_code == 2 and "--grounding-b must be off, numbers or strict" in result.stderr


def test_offline_without_data_is_a_usage_error(runner, fake_offline):
    result = runner.invoke(app, ["abtest", "offline", "--a", "x", "--b", "y"])
    assert result.exit_code == 2 and "no eval data given" in result.stderr and "--data" in result.stderr


def test_bad_set_names_the_field(runner):
    result = runner.invoke(app, ["abtest", "offline", "--a", "x", "--b", "y", "--set", "abtest.primry=chrf"])
    assert result.exit_code == 2 and "did you mean 'abtest.primary'" in result.stderr


def test_start_status_analyze_stop(runner, registry, tmp_path):
    started = runner.invoke(app, ["abtest", "start", "--experiment", "e1", "--a", "cv@prod", "--b", "cv@canary",
                                  "--split", "80/20", "--json"])  # fmt: skip
    assert started.exit_code == 0, started.stderr
    assert json.loads(started.stdout)["b"] == {"ref": "cv@canary", "version": "cv@2"}
    listed = runner.invoke(app, ["abtest", "list", "--json"])
    assert [e["name"] for e in json.loads(listed.stdout)] == ["e1"]

    status = runner.invoke(app, ["abtest", "status", "e1", "--json"])
    assert status.exit_code == 0, status.stderr
    payload = json.loads(status.stdout)
    assert payload["requests"] == {"a": 0, "b": 0} and payload["decision"]["verdict"] == "INCONCLUSIVE"

    analyzed = runner.invoke(app, ["abtest", "analyze", "e1", "--out", str(tmp_path / "rep"), "--set",
                                   "abtest.online.sequential=confidence_sequence"])  # fmt: skip
    assert analyzed.exit_code == 0, analyzed.stderr
    assert "INCONCLUSIVE" in analyzed.stdout and (tmp_path / "rep" / "report.json").is_file()

    stopped = runner.invoke(app, ["abtest", "stop", "e1", "--promote", "b", "--reason", "manual", "--json"])
    assert stopped.exit_code == 0, stopped.stderr
    assert json.loads(stopped.stdout)["event"]["to_version"] == 2
    assert registry.resolve("cv@prod").version == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "choose exactly one"),
        (["--rollback", "--auto"], "choose exactly one"),
        (["--promote", "a"], "only the candidate b"),
    ],
)
def test_stop_needs_exactly_one_action(runner, registry, args, message):
    runner.invoke(app, ["abtest", "start", "--experiment", "e1", "--a", "cv@prod", "--b", "cv@canary"])
    result = runner.invoke(app, ["abtest", "stop", "e1", *args])
    assert result.exit_code == 2 and message in result.stderr


def test_unknown_experiment_is_an_error_with_a_hint(runner, registry):
    result = runner.invoke(app, ["abtest", "status", "nope"])
    assert result.exit_code == 1 and "no experiment named 'nope'" in result.stderr
    assert "cvml abtest start" in result.stderr
