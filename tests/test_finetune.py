"""Integration: fine-tune the tiny fixture model end to end and check what the run leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cvml.manifest import sha256_file
from cvml.recipe import load_recipe
from cvml.train import finetune


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_base, tiny_data):
    import os

    import yaml

    root = tmp_path_factory.mktemp("lora_run")
    os.environ["CVML_HOME"] = str(root / "home")
    recipe = {
        "name": "e2e", "seed": 7,
        "model": {"base": str(tiny_base), "device": "cpu"},
        "data": {"train": str(tiny_data), "max_seq_len": 256},
        "train": {"method": "lora", "max_steps": 24, "micro_batch_size": 2, "lr": 3e-3, "warmup_ratio": 0.1,
                  "eval_every": 12, "save_every": 10, "merge": True, "output_dir": str(root / "run")},
    }
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    try:
        result = finetune(load_recipe(path))
    finally:
        del os.environ["CVML_HOME"]
    return result, root


def test_run_improves_on_the_base(lora_run):
    result, _ = lora_run
    assert result.steps == 24
    # The fixture base is a 2-layer, 64-wide model: LoRA moves it little in 24 steps, but surely.
    assert result.final_eval_loss < result.base_eval_loss - 0.05
    assert result.train_tokens_per_s > 0


def test_run_folder_holds_the_audit_trail(lora_run, tiny_data):
    result, _ = lora_run
    run = Path(result.run_dir)
    for name in ("metrics.jsonl", "loss_curve.png", "samples.jsonl", "quarantine.jsonl", "manifest.json", "result.json"):
        assert (run / name).is_file(), name
    adapter = run / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "manifest.json"):
        assert (adapter / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["inputs"]["train"]["sha256"] == sha256_file(tiny_data)
    assert manifest["seed"] == 7 and manifest["recipe"]["train"]["max_steps"] == 24
    assert manifest["libraries"]["torch"] == torch.__version__ and manifest["libraries"]["peft"]
    assert len(manifest["chat_template_sha256"]) == 64
    assert manifest["train_tokens_per_s"] > 0 and manifest["wall_s"] > 0
    counts = result.counts
    assert counts["rows_read"] == (counts["train"] + counts["validation"] + counts["quarantined_schema"]
                                   + counts["quarantined_too_long"] + counts["unused_by_max_examples"])
    quarantined = (run / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) == counts["quarantined_schema"] + counts["quarantined_too_long"] > 0
    assert all(json.loads(q)["reason"] for q in quarantined)


def test_metrics_log_every_step_and_each_eval(lora_run):
    result, _ = lora_run
    rows = _metrics(Path(result.run_dir))
    assert [r["step"] for r in rows if r["type"] == "train"] == list(range(1, 25))
    assert [r["step"] for r in rows if r["type"] == "eval"] == [0, 12, 24]
    lrs = [r["lr"] for r in rows if r["type"] == "train"]
    assert lrs[1] > lrs[0] and lrs[-1] < max(lrs) / 5  # warm-up then cosine decay


def test_merged_model_matches_adapter(lora_run):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    result, _ = lora_run
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        a = AutoPeftModelForCausalLM.from_pretrained(result.model_dir).eval()(input_ids=ids).logits
        b = AutoModelForCausalLM.from_pretrained(result.merged_dir).eval()(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_run_is_registered_with_datasets(lora_run):
    from cvml.registry import Registry

    result, root = lora_run
    version = Registry(root / "home").resolve("e2e")
    assert result.registered == version.ref == "e2e@1"
    assert version.kind == "merged" and Path(version.path) == Path(result.merged_dir).resolve()
    assert {d.role for d in version.datasets} == {"train"}


def test_full_finetune_without_packing(make_recipe):
    recipe = load_recipe(make_recipe("full", train={"method": "full", "packing": False, "lr": 1e-3, "max_steps": 6, "eval_every": 6}))
    result = finetune(recipe)
    assert Path(result.model_dir, "model.safetensors").is_file()
    assert result.plan["trainable_parameters"] == result.plan["total_parameters"]
    assert result.plan["packing_efficiency"] < 1.0
    assert result.final_eval_loss < result.base_eval_loss


def test_early_stopping_stops(make_recipe):
    # A huge learning rate makes the eval loss climb; patience 1 stops at the 2nd eval.
    recipe = load_recipe(make_recipe("es", train={"lr": 5.0, "max_steps": 30, "eval_every": 2, "warmup_ratio": 0.0,
                                                  "early_stopping": {"patience": 1}}))
    result = finetune(recipe)
    assert result.stopped_early and result.steps < 30
    # The model handed back is the best evaluation's, re-evaluated after restoring it.
    assert result.best_step is not None and result.best_step < result.steps
    assert result.final_eval_loss == pytest.approx(result.best_eval_loss, rel=1e-6)
    rows = _metrics(Path(result.run_dir))
    assert rows[-1]["restored_best_step"] == result.best_step


def test_existing_run_needs_resume_or_overwrite(make_recipe):
    from cvml.errors import ConfigError

    recipe = load_recipe(make_recipe("again", train={"max_steps": 2, "eval_every": 2}))
    finetune(recipe)
    with pytest.raises(ConfigError, match="already holds a run"):
        finetune(recipe)
    assert finetune(recipe, overwrite=True).steps == 2


def test_progress_is_reported_through_the_callback(make_recipe):
    from cvml.progress import Progress

    events: list[Progress] = []
    result = finetune(load_recipe(make_recipe("prog", train={"max_steps": 3, "eval_every": 2})), on_progress=events.append)
    assert {e.phase for e in events} == {"train"} and {e.total for e in events} == {3}
    assert [e.done for e in events] == [0, 1, 2, 3]
    assert events[1].info.startswith("loss ") and events[1].info.endswith(" tok/s")
    assert " · eval " in events[2].info  # evaluated at step 2
    assert result.steps == 3


def test_the_vocabulary_is_stored_with_the_model_and_the_monitor_reads_it(lora_run, tmp_path):
    """`cvml monitor` measures production's unknown words against the words the model was
    trained on, and compares with the train split its manifest names."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from cvml.data.vocabulary import Vocabulary
    from cvml.monitor import Monitor
    from cvml.monitor.model import resolve_model
    from cvml.monitor.simulate import SCENARIOS, request_pool, simulate, write_log
    from cvml.recipe import MonitorSpec
    from cvml.windows import Window

    result, root = lora_run
    for folder in (result.model_dir, result.merged_dir):
        vocabulary = Vocabulary.read(folder)
        assert {"led", "team", "using"} <= set(vocabulary.counts) and vocabulary.documents > 100
        assert min(vocabulary.counts.values()) >= 2
    model = resolve_model("e2e", root / "home")  # the registered, merged version
    assert model.ref == "e2e@1" and model.vocabulary is not None and model.tokenizer is not None
    assert model.training_data is not None and model.training_data.name == "cv-raw.jsonl"
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    entries, _ = simulate(request_pool(seed=5, n_people=100), 120,
                          replace(SCENARIOS["no_drift"], model_version="e2e@1"), Window(start, start + timedelta(hours=1)), seed=1)  # fmt: skip
    write_log(tmp_path / "requests.db", entries, [])
    spec = MonitorSpec(reference="training", window="2026-11-01..2026-11-01", model="e2e@1")
    report = Monitor(spec, log=tmp_path / "requests.db", registry=root / "home").report()
    assert report.model.ref == "e2e@1" and report.reference.kind == "training"
    for name in ("oov_rate", "source_tokens", "language", "input_text"):
        assert report.drift.feature(name).drifted is not None, name


def test_the_optimizer_is_fused_adamw_with_the_per_tensor_update():
    """cvml's optimizer is AdamW's fused kernel on the CPU (as transformers' Trainer uses), and
    it updates the weights as the per-tensor AdamW does, to float rounding."""
    from cvml.train.loop import _adamw

    torch.manual_seed(0)
    start = [torch.randn(16, 8), torch.randn(8)]
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    loop_params = [torch.nn.Parameter(t.clone()) for t in start]
    fused = _adamw(fused_params, 1e-2, 0.01)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        for params, optimizer in ((fused_params, fused), (loop_params, loop)):
            optimizer.zero_grad()
            sum((p**2).sum() for p in params).backward()
            optimizer.step()
    for a, b, s in zip(fused_params, loop_params, start):
        assert not torch.equal(a.detach(), s)  # it moved
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
