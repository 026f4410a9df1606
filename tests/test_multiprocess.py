"""`cvml finetune --num-processes 2` trains with DDP over gloo on CPU, and its losses equal a
single process doing the same rows with gradient accumulation (token-exact loss)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cvml.recipe import load_recipe
from cvml.train import finetune


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["type"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(make_recipe, tmp_path):
    # lora dropout 0 so the two layouts see identical computations.
    path = make_recipe("ddp", train={"max_steps": 6, "micro_batch_size": 2, "eval_every": 6, "save_every": 3,
                                     "lora": {"dropout": 0.0}})
    two = tmp_path / "two"
    proc = subprocess.run(
        [sys.executable, "-m", "cvml", "finetune", str(path), "--num-processes", "2", "--output-dir", str(two), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["plan"]["world_size"] == 2 and result["steps"] == 6
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["devices"]["num_processes"] == 2
    state = json.loads((two / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["state"]["step"] == 3
    from safetensors import safe_open

    with safe_open(two / "checkpoints" / "step-000003" / "model.safetensors", "pt") as fh:
        assert all("lora_" in k for k in fh.keys())  # adapter only, under DDP too

    one = finetune(load_recipe(path, [f"train.output_dir={tmp_path / 'one'}", "train.grad_accum=2"]))
    assert one.plan["rows_per_step"] == result["plan"]["rows_per_step"] == 4
    for a, b in zip(_losses(two), _losses(Path(one.run_dir)), strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert result["final_eval_loss"] == pytest.approx(one.final_eval_loss, rel=1e-4)
