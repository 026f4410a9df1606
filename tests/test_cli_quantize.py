"""`cvml quantize` through Typer's CliRunner: one JSON document on stdout (GPT-QModel's
banner and logs never reach it), the perplexity guard's exit codes, errors with hints."""

from __future__ import annotations

import json

import pytest
import yaml

from cvml.cli.main import app

FAST = ["--set", "quantize.calibration_samples=4", "--set", "quantize.eval_samples=8",
        "--set", "quantize.quality_samples=2", "--set", "quantize.max_new_tokens=8"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: single-threaded is faster on a shared CPU (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _invoke(runner, *args):
    return runner.invoke(app, ["quantize", *[str(a) for a in args]])


def test_json_result_is_the_only_thing_on_stdout_and_the_guard_passes(runner, tiny_base, tiny_data, tmp_path):
    from cvml.registry import Registry

    Registry().register(tiny_base, "tiny", "base")
    result = _invoke(runner, "tiny", "--method", "gptq", "--group-size", "32", "--data", tiny_data, "--out", tmp_path / "q",
                     "--max-ppl-increase", "0.5", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["passed"] and payload["gate"]["max_ppl_increase"] == 0.5
    assert payload["registered"] == "tiny@2" and payload["params"]["group_size"] == 32
    assert payload["data"]["calibration_samples"] == 4  # --set reached the spec
    assert abs(payload["perplexity"]["increase"]) < 0.5


def test_the_guard_exits_1_when_perplexity_rises_too_much(runner, tiny_base, tiny_data, tmp_path):
    result = _invoke(runner, tiny_base, "--method", "rtn", "--bits", "2", "--group-size", "32", "--data", tiny_data,
                     "--out", tmp_path / "q2", "--max-ppl-increase", "0.001", *FAST)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    report = json.loads((tmp_path / "q2" / "quantize_report.json").read_text())
    assert report["passed"] is False and report["perplexity"]["increase"] > 0.001


def test_recipe_section_with_flags_taking_precedence(runner, tiny_base, tiny_data, tmp_path):
    recipe = tmp_path / "q.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "cvq", "seed": 3,
        "quantize": {"method": "rtn", "bits": 8, "group_size": 32, "data": str(tiny_data), "output": str(tmp_path / "{name}-{variant}")},
    }))
    result = _invoke(runner, tiny_base, "--recipe", recipe, "--method", "int8", "--set", "quantize.group_size=-1", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["method"] == "int8" and payload["params"]["bits"] == 8
    assert payload["output_dir"] == str(tmp_path / "cvq-int8")


@pytest.mark.parametrize(
    "args,code,message,hint",
    [
        (["--method", "gptqq"], 2, "quantize: unknown method 'gptqq'", "did you mean 'gptq'?"),
        (["--method", "int8", "--bits", "4"], 2, "int8 cannot store 4-bit weights", None),
        (["--set", "train.lr=1"], 2, "needs a recipe", "--recipe"),
        (["--method", "rtn", "--group-size", "128"], 1, "group_size 128 does not divide in_features 64", "--group-size 32 or 64"),
    ],
)
def test_errors_name_the_fix(runner, tiny_base, tiny_data, tmp_path, args, code, message, hint):
    result = _invoke(runner, tiny_base, "--data", tiny_data, "--out", tmp_path / "x", *args)
    assert result.exit_code == code
    assert message in result.stderr
    if hint:
        assert hint in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_is_a_clear_error(runner, tmp_path):
    result = _invoke(runner, "no-such-model@prod", "--out", tmp_path / "x")
    assert result.exit_code == 1
    assert "no-such-model" in result.stderr and "Traceback" not in result.stderr
