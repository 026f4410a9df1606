"""`cvml curate` through the CLI: recipe or flags, --json results, forget, usage errors."""

from __future__ import annotations

import json

import yaml

from cvml.cli.main import app


def test_curate_recipe_then_finetune_reads_it(runner, tmp_path, tiny_data, tiny_base):
    recipe = {
        "name": "cur",
        "model": {"base": str(tiny_base), "device": "cpu"},
        "curate": {"inputs": [str(tiny_data)], "output": str(tmp_path / "data" / "{name}")},
        "data": {"train": str(tmp_path / "data" / "{name}"), "validation": str(tmp_path / "data" / "{name}"), "max_seq_len": 256},
        "train": {"max_steps": 2, "micro_batch_size": 2, "eval_every": 2, "output_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["curate", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["output"] == str(tmp_path / "data" / "cur")
    assert payload["length_unit"] == "tokens"  # model.base's tokenizer measures lengths
    assert payload["input_rows"] == sum(payload["kept"].values()) + sum(payload["quarantined"].values()) + sum(payload["removed"].values())

    plan = runner.invoke(app, ["finetune", str(path), "--dry-run", "--json"])
    assert plan.exit_code == 0, plan.stderr
    data = json.loads(plan.stdout)["data"]
    assert data["rows_read"] == payload["kept"]["train"] + payload["kept"]["validation"]
    assert data["quarantined_schema"] == 0  # curated rows are clean


def test_curate_with_flags_only(runner, tmp_path, tiny_data):
    out = tmp_path / "cv-v1"
    result = runner.invoke(app, ["curate", "--input", str(tiny_data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["length_unit"] == "words"
    assert (out / "train.parquet").is_file() and (out / "manifest.json").is_file()

    groups = runner.invoke(app, ["curate", "forget", "--dataset", str(out), "--group", "no-such", "--json"])
    assert groups.exit_code == 1 and "no row of the dataset matches" in groups.stderr


def test_curate_usage_errors(runner, tmp_path):
    result = runner.invoke(app, ["curate", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "x"}))
    result = runner.invoke(app, ["curate", str(recipe)])
    assert result.exit_code == 2 and "curate: required by this command but missing" in result.stderr
    missing = runner.invoke(app, ["curate", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "input not found" in missing.stderr
