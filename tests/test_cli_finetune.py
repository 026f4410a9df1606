"""CLI behaviour of validate/finetune/tiny through Typer's CliRunner: JSON on stdout,
messages + hints on stderr, exit codes (1 error, 2 usage/config), tracebacks only in debug."""

from __future__ import annotations

import json

import pytest
import yaml

from cvml.cli.main import app


def _invoke(runner, *args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_validate_ok_and_json(runner, make_recipe):
    path = make_recipe()
    result = _invoke(runner, "validate", path, "--json", "--set", "train.lr=1e-4")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["recipe"]["train"]["lr"] == pytest.approx(1e-4)


def test_validate_reports_every_problem_with_exit_code_2(runner, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "model": {"base": "m", "dtyp": "x"}, "data": {"train": "d", "max_seq_len": 1}}))
    result = _invoke(runner, "validate", path)
    assert result.exit_code == 2
    assert "2 problems" in result.stderr
    assert "model.dtyp" in result.stderr and "did you mean 'model.dtype'" in result.stderr
    assert "data.max_seq_len" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_explain_lists_fields(runner):
    result = _invoke(runner, "validate", "--explain", "--json")
    assert result.exit_code == 0
    paths = {row["path"] for row in json.loads(result.stdout)}
    assert {"model.base", "train.lora.r", "train.early_stopping.patience"} <= paths


def test_dry_run_prints_plan_and_trains_nothing(runner, make_recipe, tmp_path):
    path = make_recipe("dry")
    result = _invoke(runner, "finetune", path, "--dry-run", "--json", "--set", "train.lr=1e-4", "--max-steps", "3")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    plan = payload["plan"]
    assert payload["recipe"]["train"]["lr"] == pytest.approx(1e-4)
    assert plan["total_steps"] == 3  # the explicit flag beats the recipe's 10
    assert 0 < plan["trainable_parameters"] < plan["total_parameters"]
    from transformers import AutoModelForCausalLM

    from cvml.recipe import load_recipe
    from cvml.train.modeling import count_parameters

    # Counted on the meta device, but equal to the loaded model's count (tied embeddings once).
    base = AutoModelForCausalLM.from_pretrained(load_recipe(path).model.base)
    assert plan["total_parameters"] - plan["trainable_parameters"] == count_parameters(base)[1]
    assert 0.9 < plan["packing_efficiency"] <= 1.0
    assert plan["train_tokens"] > plan["label_tokens"] > 0
    assert payload["data"]["train"] == plan["examples"]
    assert not (tmp_path / "runs" / "dry").exists()


def test_flag_beats_set_beats_yaml(runner, make_recipe):
    path = make_recipe("prec")
    result = _invoke(runner, "finetune", path, "--dry-run", "--json", "--set", "train.max_steps=4", "--max-steps", "2")
    assert json.loads(result.stdout)["plan"]["total_steps"] == 2
    result = _invoke(runner, "finetune", path, "--dry-run", "--json", "--set", "train.max_steps=4")
    assert json.loads(result.stdout)["plan"]["total_steps"] == 4


@pytest.mark.parametrize(
    "section, message, code",
    [
        ({"data": {"train": "/no/such/data.jsonl"}}, "dataset not found: /no/such/data.jsonl", 1),
        ({"model": {"base": "/no/such/model", "device": "cpu"}}, "model path does not exist", 1),
    ],
)
def test_missing_inputs_are_clear_errors(runner, make_recipe, section, message, code):
    result = _invoke(runner, "finetune", make_recipe("missing", **section))
    assert result.exit_code == code
    assert message in result.stderr and "Hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_cuda_without_gpu_is_a_clear_error(runner, make_recipe):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = _invoke(runner, "finetune", make_recipe("cuda", model={"device": "cuda"}))
    assert result.exit_code == 1
    assert "no CUDA GPU is available" in result.stderr


def test_missing_recipe_file(runner, tmp_path):
    result = _invoke(runner, "finetune", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "recipe file not found" in result.stderr


def test_debug_mode_shows_the_traceback(runner, tmp_path):
    result = _invoke(runner, "validate", tmp_path / "nope.yaml", env={"CVML_DEBUG": "1"})
    assert result.exit_code != 0
    from cvml.errors import RecipeError

    assert isinstance(result.exception, RecipeError)


def test_finetune_json_result(runner, make_recipe):
    result = _invoke(runner, "finetune", make_recipe("cli", train={"max_steps": 4, "eval_every": 4}), "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["steps"] == 4 and payload["registered"] == "cli@1"
    assert payload["final_eval_loss"] < payload["base_eval_loss"]


@pytest.mark.parametrize("json_flag, draws", [(True, False), (False, True)])
def test_finetune_draws_progress_unless_json(runner, make_recipe, monkeypatch, json_flag, draws):
    import cvml.train
    from cvml.progress import Progress
    from cvml.train.result import FinetuneResult

    seen = {}

    def fake_finetune(recipe, *, resume=False, overwrite=False, on_progress=None):
        seen["on_progress"] = on_progress
        if on_progress is not None:
            on_progress(Progress("train", 1, 2, "loss 1.000 · 10 tok/s"))
        return FinetuneResult(
            run_dir="r", model_dir="r/adapter", merged_dir=None, steps=2, base_eval_loss=2.0, final_eval_loss=1.0,
            best_eval_loss=1.0, best_step=None, final_train_loss=1.0, train_tokens_per_s=10.0, wall_s=1.0,
            stopped_early=False, plan={}, counts={},
        )

    monkeypatch.setattr(cvml.train, "finetune", fake_finetune)
    result = _invoke(runner, "finetune", make_recipe("patched"), *(["--json"] if json_flag else []))
    assert result.exit_code == 0, result.stderr
    assert callable(seen["on_progress"]) is draws
    if json_flag:
        assert json.loads(result.stdout)["steps"] == 2
    else:
        assert "finetune: train" in result.stderr
