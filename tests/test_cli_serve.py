"""`cvml serve` on the command line: precedence of recipe, --set and flags; the ready line;
clear errors (vLLM missing, unknown model, no chat template, port taken, bad split)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket

import pytest
import yaml

from cvml.cli.main import app
from cvml.serve.server import Listening


@pytest.fixture
def captured(monkeypatch):
    """Replace the server with one that reports ready at once and records what it was given."""
    calls = []

    def fake_serve(spec, *, api_key=None, admin_key=None, on_ready=None):
        calls.append({"spec": spec, "api_key": api_key, "admin_key": admin_key})
        on_ready(Listening(f"http://{spec.host}:{spec.port}", spec.host, spec.port, {"default": "tiny@3"}, spec.engine))

    monkeypatch.setattr("cvml.serve.server.serve", fake_serve)
    return calls


def _recipe(tmp_path, **serve) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "cv-rewriter", "serve": serve}), encoding="utf-8")
    return str(path)


def test_flags_win_over_set_which_wins_over_the_recipe(runner, tmp_path, captured, monkeypatch):
    monkeypatch.setenv("CVML_API_KEY", "from-env")
    recipe = _recipe(tmp_path, port=9000, max_queue=5, log_text="none", model="cv@canary")
    result = runner.invoke(
        app,
        ["serve", "--recipe", recipe, "--set", "serve.port=9100", "--set", "serve.max_queue=7", "--max-queue", "9",
         "--json"],
    )
    assert result.exit_code == 0, result.stderr
    spec = captured[0]["spec"]
    assert (spec.port, spec.max_queue, spec.log_text, spec.model) == (9100, 9, "none", "cv@canary")
    assert captured[0]["api_key"] == "from-env"
    ready = json.loads(result.stdout)
    assert ready["url"] == "http://127.0.0.1:9100" and ready["variants"] == {"default": "tiny@3"} and ready["pid"] > 0


def test_a_recipe_without_a_model_serves_its_registered_name(runner, tmp_path, captured):
    assert runner.invoke(app, ["serve", "--recipe", _recipe(tmp_path)]).exit_code == 0
    assert captured[0]["spec"].model == "cv-rewriter"
    assert runner.invoke(app, ["serve", "other@prod", "--recipe", _recipe(tmp_path, model="x")]).exit_code == 0
    assert captured[1]["spec"].model == "other@prod"


def test_variants_on_the_command_line_replace_the_recipe_model(runner, tmp_path, captured):
    recipe = _recipe(tmp_path, model="cv@prod")
    result = runner.invoke(
        app, ["serve", "--recipe", recipe, "--variant", "a=cv@prod", "--variant", "b=cv@canary", "--split", "90/10"]
    )
    assert result.exit_code == 0, result.stderr
    spec = captured[0]["spec"]
    assert (spec.model, spec.variants, spec.split) == (None, ["a=cv@prod", "b=cv@canary"], "90/10")
    assert "Serving http://127.0.0.1:8000" in result.stdout


def test_a_bad_flag_value_names_the_field(runner, captured):
    result = runner.invoke(app, ["serve", "m", "--log-text", "everything"])
    assert result.exit_code == 2 and "serve.log_text" in result.stderr
    assert not captured


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_engine_vllm_without_vllm_is_a_clear_error(runner, tiny_base):
    result = runner.invoke(app, ["serve", str(tiny_base), "--engine", "vllm", "--port", "0"])
    assert result.exit_code == 2
    assert "vLLM is not installed: pip install vllm (GPU)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_fails_before_listening(runner):
    result = runner.invoke(app, ["serve", "nosuch@prod", "--port", "0"])
    assert result.exit_code == 1 and "no model named 'nosuch'" in result.stderr


def test_two_variants_need_a_split(runner, tiny_base):
    result = runner.invoke(app, ["serve", "--variant", f"a={tiny_base}", "--variant", f"b={tiny_base}", "--port", "0"])
    assert result.exit_code == 2 and "need a traffic split" in result.stderr and "--split 50/50" in result.stderr


def test_port_in_use_is_a_clear_error(runner, tiny_base):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(tiny_base), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_model_without_a_chat_template_is_refused(runner, tmp_path, tiny_base):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_base, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["serve", str(bare), "--port", "0", "--log-db", str(tmp_path / "r.db")])
    assert result.exit_code == 1 and "stores no chat template" in result.stderr
