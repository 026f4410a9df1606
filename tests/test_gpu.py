"""GPU paths: bf16 weights with bf16 autocast on CUDA. Marked `gpu`; skipped without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvml.recipe import load_recipe
from cvml.train import finetune

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("method", ["lora", "full"])
def test_bf16_finetune_on_cuda(make_recipe, method):
    recipe = load_recipe(make_recipe(
        f"gpu-{method}",
        model={"device": "cuda", "dtype": "bfloat16"},
        train={"method": method, "mixed_precision": "bf16", "max_steps": 12, "eval_every": 12, "lr": 3e-3},
    ))
    result = finetune(recipe)
    assert result.final_eval_loss < result.base_eval_loss
    manifest = json.loads(Path(result.run_dir, "manifest.json").read_text())
    assert "MULTI" not in manifest["devices"]["distributed_type"]
    if method == "lora":
        assert json.loads(Path(result.model_dir, "adapter_config.json").read_text())["r"] == 16
    else:
        config = json.loads(Path(result.model_dir, "config.json").read_text())
        assert (config.get("dtype") or config.get("torch_dtype")) == "bfloat16"


def test_cuda_resume_is_exact(make_recipe, tmp_path):
    path = make_recipe("gpu-resume", model={"device": "cuda"}, train={"max_steps": 8, "save_every": 4, "eval_every": 8})
    ref = finetune(load_recipe(path, [f"train.output_dir={tmp_path / 'a'}"]))
    stop_at_4 = load_recipe(path, [f"train.output_dir={tmp_path / 'b'}"])

    class Stop(Exception):
        pass

    def stop(event):
        if event.done == 5:
            raise Stop

    with pytest.raises(Stop):
        finetune(stop_at_4, on_progress=stop)
    resumed = finetune(stop_at_4, resume=True)
    assert resumed.final_eval_loss == pytest.approx(ref.final_eval_loss, rel=1e-5)
