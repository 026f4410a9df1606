"""`cvml models ...` through the real entry point: JSON on stdout, errors with hints, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvml.cli.main import app


@pytest.fixture
def cvml(runner, tmp_path, monkeypatch, store_backend):
    """Run `cvml models ARGS...` against a registry in a temporary CVML_HOME."""
    monkeypatch.setenv("CVML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CVML_ACTOR", "ci")

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["models", *map(str, args)])
        assert result.exit_code == code, result.output
        return result

    return run


@pytest.fixture
def model(tmp_path):
    def make(name: str) -> Path:
        path = tmp_path / "models" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    return make


def _json(result):
    return json.loads(result.stdout)


def test_register_prints_the_new_version(cvml, model, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("{}\n")
    base = _json(cvml("register", model("base"), "--name", "tiny-base", "--kind", "base", "--json"))
    assert (base["ref"], base["kind"], base["actor"], base["parent"]) == ("tiny-base@1", "base", "ci", None)

    ft = _json(
        cvml(
            "register", model("ft"), "--name", "cv", "--parent", "tiny-base",
            "--dataset", train, "--dataset", f"eval={train}",
            "--meta", "bleu=0.31", "--meta", "recipe=tiny-cv", "--json",
        )
    )  # fmt: skip
    assert (ft["ref"], ft["kind"], ft["parent"]) == ("cv@1", "finetune", "tiny-base@1")
    assert [d["role"] for d in ft["datasets"]] == ["train", "eval"]
    assert ft["metadata"] == {"bleu": 0.31, "recipe": "tiny-cv"}

    result = cvml("register", model("ft2"), "--name", "cv", "--reason", "more data")
    assert "Registered cv@2 (finetune)" in result.stdout


def test_list_and_show(cvml, model):
    for i in range(3):
        cvml("register", model(f"v{i}"), "--name", "cv")
    cvml("register", model("other"), "--name", "other", "--kind", "base")
    cvml("promote", "cv@2", "--alias", "prod")

    assert [v["ref"] for v in _json(cvml("list", "--json"))] == ["cv@1", "cv@2", "cv@3", "other@1"]
    assert [v["version"] for v in _json(cvml("list", "cv", "--json"))] == [1, 2, 3]
    table = cvml("list").stdout
    assert all(ref in table for ref in ("cv@1", "cv@3", "other@1", "prod"))

    assert _json(cvml("show", "cv", "--json"))["version"] == 3
    assert _json(cvml("show", "cv@v1", "--json"))["path"] == str(model("v0"))
    shown = _json(cvml("show", "cv@prod", "--json"))
    assert (shown["version"], shown["aliases"]) == (2, ["prod"])
    assert "cv@2" in cvml("show", "cv@prod").stdout
    loose = _json(cvml("show", model("loose"), "--json"))
    assert (loose["registered"], loose["version"]) == (False, None)


def test_promote_and_rollback(cvml, model):
    for i in range(3):
        cvml("register", model(f"v{i}"), "--name", "cv")
    for version in (1, 2, 3):
        cvml("promote", f"cv@{version}", "--alias", "prod", "--reason", f"ship {version}")

    same = _json(cvml("promote", "cv@3", "--alias", "prod", "--json"))
    assert (same["changed"], same["version"], same["event"]) == (False, 3, None)

    back = _json(cvml("rollback", "cv", "--alias", "prod", "--reason", "regression", "--json"))
    assert (back["changed"], back["ref"], back["previous"], back["version"]) == (True, "cv@prod", 3, 2)
    event = back["event"]
    assert (event["action"], event["actor"], event["reason"]) == ("rollback", "ci", "regression")
    assert "cv@prod: v2 → v1 (rollback)" in cvml("rollback", "cv", "--alias", "prod").stdout
    assert _json(cvml("show", "cv@prod", "--json"))["version"] == 1

    result = cvml("rollback", "cv", "--alias", "prod", code=1)
    assert "nothing to roll back to" in result.stderr and "Hint:" in result.stderr
    assert result.stdout == ""


def test_events(cvml, model):
    cvml("register", model("v1"), "--name", "cv", "--reason", "first")
    cvml("promote", "cv", "--alias", "canary", "--reason", "try it")
    rows = _json(cvml("events", "cv", "--json"))
    assert [(e["action"], e["alias"], e["to_version"], e["actor"], e["reason"]) for e in rows] == [
        ("register", None, 1, "ci", "first"),
        ("promote", "canary", 1, "ci", "try it"),
    ]
    table = cvml("events").stdout
    assert "cv@canary" in table and "try it" in table


def test_lineage_renders_datasets_and_derived_models(cvml, model, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    cvml("register", model("base"), "--name", "tiny-base", "--kind", "base")
    cvml("register", model("ft"), "--name", "cv", "--parent", "tiny-base@1", "--dataset", data)
    cvml("register", model("q"), "--name", "cv-q4", "--kind", "quantized", "--parent", "cv@1")

    tree = cvml("lineage", "cv").stdout
    assert tree.index("tiny-base@1") < tree.index("cv@1") < tree.index("dataset train") < tree.index("cv-q4@1")

    payload = _json(cvml("lineage", "cv-q4", "--json"))
    assert [a["ref"] for a in payload["ancestors"]] == ["cv@1", "tiny-base@1"]
    assert payload["ancestors"][0]["datasets"][0]["path"] == str(data)
    assert [d["model"]["ref"] for d in _json(cvml("lineage", "tiny-base", "--json"))["descendants"]] == ["cv@1"]


def test_registry_option_selects_the_database(cvml, model, tmp_path):
    other = tmp_path / "elsewhere" / "team.db"
    cvml("register", model("m"), "--name", "cv", "--registry", other)
    assert other.is_file()
    assert _json(cvml("list", "--json")) == []
    assert [v["ref"] for v in _json(cvml("list", "--registry", other, "--json"))] == ["cv@1"]


def test_errors_exit_1_with_message_and_hint(cvml, model, tmp_path):
    cvml("register", model("m"), "--name", "cv-rewriter")
    cvml("promote", "cv-rewriter", "--alias", "prod")

    result = cvml("show", "cv-rewritter", code=1)
    assert "no model named 'cv-rewritter'" in result.stderr
    assert "did you mean 'cv-rewriter'?" in result.stderr
    assert result.stdout == ""
    assert "did you mean 'prod'?" in cvml("show", "cv-rewriter@prd", code=1).stderr
    assert "did you mean 'cv-rewriter'?" in cvml("list", "cv-rewritter", code=1).stderr
    assert "no such file or folder" in cvml("register", tmp_path / "missing", "--name", "x", code=1).stderr
    result = cvml("register", model("m"), "--name", "x", "--kind", "quantised", code=1)
    assert "did you mean 'quantized'?" in result.stderr


def test_bad_meta_is_a_usage_error(cvml, model):
    result = cvml("register", model("m"), "--name", "cv", "--meta", "no-equals-sign", code=2)
    assert "KEY=VALUE" in result.output
