"""Step-level checkpoints that resume exactly.

Accelerate's `save_state` writes model, optimizer, scheduler and every process's RNG
states (and knows how to do it for FSDP/DeepSpeed shards); cvml adds `trainer_state.json`
with the step (the data position: batches are a pure function of seed and step), the
early-stopping state and the recipe that made it. A checkpoint is written to a temporary
folder and renamed when complete, so a run killed mid-save never leaves a half checkpoint
that `--resume` would pick up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cvml.errors import ResumeError
from cvml.train.state import TrainState

STATE_FILE = "trainer_state.json"
BEST_FILE = "best.pt"
# Recipe fields that may change between a run and its resumption without changing the
# numbers it produces (how often to log/save, what to do after training).
_RESUME_SAFE = {
    ("train", "save_every"),
    ("train", "log_every"),
    ("train", "keep_checkpoints"),
    ("train", "register_model"),
    ("train", "merge"),
    ("description",),
}


def keep_only_trainable(accelerator, model) -> None:
    """Make LoRA checkpoints hold the adapter, not the frozen base (MBs instead of GBs at
    0.5B parameters); the base comes back from model.base on resume. Applies where
    Accelerate gathers a state dict (single process, DDP); FSDP/DeepSpeed shard their own."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}

    def hook(_models, weights, _output_dir) -> None:
        for i, state in enumerate(weights):
            weights[i] = {k: v for k, v in state.items() if k in trainable}

    accelerator.register_save_state_pre_hook(hook)


def save_best(accelerator, model, run_dir: Path) -> None:
    """Keep the trainable weights of the best evaluation so far (early stopping restores them)."""
    import torch

    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    state = accelerator.get_state_dict(model)  # gathered on the main process under FSDP
    if accelerator.is_main_process:
        best = {k: v.detach().cpu().clone() for k, v in state.items() if k in trainable}
        path = run_dir / "checkpoints" / BEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(best, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    accelerator.wait_for_everyone()


def load_best(accelerator, model, run_dir: Path) -> None:
    import torch

    best = torch.load(run_dir / "checkpoints" / BEST_FILE, map_location="cpu", weights_only=True)
    missing = set(best) - set(accelerator.unwrap_model(model).state_dict())
    if missing:
        raise ResumeError(f"the best-model file does not match the model ({len(missing)} unknown tensors)")
    accelerator.unwrap_model(model).load_state_dict(best, strict=False)


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(
    accelerator, run_dir: Path, state: TrainState, recipe: dict[str, Any], world_size: int, keep: int
) -> Path:
    """Write checkpoints/step-N (N = state.step) and keep the newest `keep` of them.
    trainer_state.json holds {"state": state.to_dict(), "recipe": recipe, "world_size": world_size}."""
    final = checkpoint_dir(run_dir, state.step)
    tmp = final.with_name(f".tmp-{final.name}")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        saved = {"state": state.to_dict(), "recipe": recipe, "world_size": world_size}
        (tmp / STATE_FILE).write_text(json.dumps(saved, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders are ignored)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def latest_checkpoint(run_dir: Path) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        raise ResumeError(
            f"no complete checkpoint under {run_dir / 'checkpoints'}",
            hint="Start the run without --resume, or point train.output_dir at the run to continue.",
        )
    return found[-1]


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def check_compatible(saved: dict[str, Any], current: dict[str, Any], world_size: int) -> None:
    """Refuse to resume when the recipe (or process count) would change the numbers."""
    diffs = [".".join(p) for p in _diff(saved["recipe"], current) if p not in _RESUME_SAFE]
    if diffs:
        raise ResumeError(
            "the recipe differs from the one that wrote the checkpoint: " + ", ".join(sorted(diffs)),
            hint="Resume with the original recipe, or start a new run (another train.output_dir).",
        )
    if saved["world_size"] != world_size:
        raise ResumeError(
            f"the checkpoint was written by {saved['world_size']} process(es), this run has {world_size}",
            hint="Resume with the same --num-processes so the data order stays the same.",
        )


def _diff(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, ...]] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), path + (key,))
        return out
    return [] if a == b else [path]
