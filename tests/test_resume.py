"""A run killed mid-way and resumed with --resume logs exactly the losses of an
uninterrupted run; a changed recipe refuses to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cvml.errors import ResumeError
from cvml.recipe import load_recipe
from cvml.train import finetune

KILL_AT = 11  # after the checkpoint at step 8, before the one at 12

_KILLED_RUN = """
import os, signal, sys
from cvml.recipe import load_recipe
from cvml.train import finetune

def kill(event):
    if event.done == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, like an OOM kill or a lost node

finetune(load_recipe(sys.argv[1], [f"train.output_dir={{sys.argv[2]}}"]), on_progress=kill)
"""


def _train_losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["type"] == "train"}


@pytest.mark.parametrize("lora_dropout", [0.1])
def test_killed_run_resumes_exactly(make_recipe, tmp_path, lora_dropout):
    # Dropout > 0 makes the losses depend on the RNG state, which the checkpoint must restore.
    path = make_recipe("resume", train={"max_steps": 16, "save_every": 4, "eval_every": 8, "lora": {"dropout": lora_dropout}})
    reference = finetune(load_recipe(path, [f"train.output_dir={tmp_path / 'ref'}"]))

    killed_dir = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN.format(kill_at=KILL_AT), str(path), str(killed_dir)],
        capture_output=True, text=True, env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (killed_dir / "result.json").exists()
    assert sorted(p.name for p in (killed_dir / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "step-000004", "step-000008"
    ]

    # A LoRA checkpoint holds the adapter, not the frozen base.
    from safetensors import safe_open

    with safe_open(killed_dir / "checkpoints" / "step-000008" / "model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_" in k for k in keys)

    resumed = finetune(load_recipe(path, [f"train.output_dir={killed_dir}"]), resume=True)
    want, got = _train_losses(Path(reference.run_dir)), _train_losses(killed_dir)
    assert sorted(got) == list(range(1, 17))  # steps 9-11 were logged, truncated and redone
    for step in range(1, 17):
        assert got[step] == pytest.approx(want[step], abs=1e-6), f"step {step}"
    assert resumed.final_eval_loss == pytest.approx(reference.final_eval_loss, abs=1e-6)


def test_resume_with_a_changed_recipe_is_refused(make_recipe, tmp_path):
    # Not registered: a registered run is never resumed (tests/test_registry_integrity.py); this is about the recipe.
    path = make_recipe("changed", train={"max_steps": 6, "save_every": 3, "eval_every": 6, "register_model": False})
    finetune(load_recipe(path))
    with pytest.raises(ResumeError, match="train.lr"):
        finetune(load_recipe(path, ["train.lr=0.1"]), resume=True)
    # Changing only how often to log is fine.
    assert finetune(load_recipe(path, ["train.log_every=2"]), resume=True).steps == 6


def test_resume_without_checkpoint_is_an_error(make_recipe):
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        finetune(load_recipe(make_recipe("fresh")), resume=True)


def test_train_state_reads_and_writes_the_trainer_state_json_keys():
    from cvml.train.state import TrainState

    # The "state" of a trainer_state.json written before TrainState existed.
    old = {"step": 8, "best_eval_loss": 2.5, "bad_evals": 1, "tokens_seen": 4096, "train_s": 3.5,
           "base_eval_loss": 3.0, "last_train_loss": 2.4, "best_step": None}
    state = TrainState.from_dict(json.loads(json.dumps(old)))
    assert state.step == 8 and state.best_eval_loss == 2.5 and state.tokens_per_s == round(4096 / 3.5, 1)
    assert state.to_dict() == old
    # Older checkpoints may lack best_step.
    assert TrainState.from_dict({k: v for k, v in old.items() if k != "best_step"}).best_step is None
    with pytest.raises(ResumeError, match="unknown keys epoch_rows"):
        TrainState.from_dict({**old, "epoch_rows": 3})


def test_train_state_tracks_the_best_evaluation():
    from cvml.train.state import TrainState

    state = TrainState()
    assert state.record_eval(2.0)
    assert not state.record_eval(1.95, min_delta=0.1) and state.bad_evals == 1
    assert state.record_eval(1.5) and state.bad_evals == 0 and state.best_eval_loss == 1.5
    state.advance(1.7, n_tokens=100, seconds=0.5)
    assert (state.step, state.last_train_loss, state.tokens_seen) == (1, 1.7, 100)
