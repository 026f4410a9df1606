"""Everything a finished run leaves behind: model or adapter with tokenizer and
generation config, optional merged model, samples, loss curve, manifest, registry entry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cvml.recipe import Recipe, recipe_to_dict
from cvml.train.result import FinetuneResult
from cvml.train.state import TrainState

N_SAMPLES = 6


def write_outputs(
    *, recipe: Recipe, accelerator, model, tokenizer, data, plan, state: TrainState, final_eval_loss: float,
    stopped_early: bool, wall_s: float,
) -> FinetuneResult:
    """Save the model (and merged model), samples, loss curve, manifest and result.json on the
    main process, register the model if the recipe says so; every process gets the result."""
    run_dir = recipe.output_dir
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.eval()
    is_lora = recipe.train.method == "lora"
    model_dir = run_dir / ("adapter" if is_lora else "model")
    merged_dir = run_dir / "merged" if recipe.train.merge else None
    result = FinetuneResult(
        run_dir=str(run_dir),
        model_dir=str(model_dir),
        merged_dir=str(merged_dir) if merged_dir else None,
        steps=state.step,
        base_eval_loss=state.base_eval_loss,
        final_eval_loss=final_eval_loss,
        best_eval_loss=state.best_eval_loss,
        best_step=state.best_step,
        final_train_loss=state.last_train_loss,
        train_tokens_per_s=state.tokens_per_s,
        wall_s=round(wall_s, 1),
        stopped_early=stopped_early,
        plan=plan.as_dict(),
        counts=data.counts,
    )
    if not accelerator.is_main_process:
        return result

    if is_lora:
        base = recipe.model.base
        if Path(base).exists():  # keep the adapter loadable from any working directory
            model.peft_config["default"].base_model_name_or_path = str(Path(base).resolve())
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    model.generation_config.save_pretrained(model_dir)
    vocabulary = training_vocabulary(data.train_records)
    vocabulary.write(model_dir)
    if merged_dir is not None:
        from cvml.train.merge import merge_adapter

        merge_adapter(model_dir, merged_dir)
        vocabulary.write(merged_dir)

    result.samples = generate_samples(model, tokenizer, data.eval_records[:N_SAMPLES])
    _write_jsonl(run_dir / "samples.jsonl", result.samples)
    _write_jsonl(run_dir / "quarantine.jsonl", data.quarantine)
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")

    from cvml.manifest import build_manifest, write_manifest

    manifest = build_manifest(
        "finetune",
        inputs=data.inputs,
        recipe=recipe_to_dict(recipe),
        seed=recipe.seed,
        extra={
            "base_model": recipe.model.base,
            "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
            "wall_s": result.wall_s,
            "train_tokens_per_s": result.train_tokens_per_s,
            "plan": result.plan,
            "counts": result.counts,
            "metrics": {
                "base_eval_loss": result.base_eval_loss,
                "final_eval_loss": result.final_eval_loss,
                "best_eval_loss": result.best_eval_loss,
                "final_train_loss": result.final_train_loss,
            },
            "devices": {"distributed_type": str(accelerator.distributed_type), "num_processes": accelerator.num_processes},
        },
    )
    write_manifest(run_dir, manifest)
    write_manifest(model_dir, manifest)
    if recipe.train.register_model:
        result.registered = register_run(recipe, result, manifest)
    (run_dir / "result.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def register_run(recipe: Recipe, result: FinetuneResult, manifest: dict[str, Any]) -> str:
    """Register the run's model (merged if written) as the next version of recipe.name."""
    from cvml.errors import RegistryError
    from cvml.registry import Registry

    registry = Registry()
    parent = None
    if Path(recipe.model.base).exists():
        try:
            found = registry.resolve(str(Path(recipe.model.base).resolve()))
            parent = found.ref if found.registered else None
        except RegistryError:
            parent = None
    datasets = [{"path": v["path"], "sha256": v["sha256"], "role": role} for role, v in manifest["inputs"].items()]
    version = registry.register(
        result.merged_dir or result.model_dir,
        name=recipe.name,
        kind="merged" if result.merged_dir else "finetune",
        parent=parent,
        datasets=datasets,
        metadata={
            "run_dir": str(Path(result.run_dir).resolve()),
            "method": recipe.train.method,
            "base_model": recipe.model.base,
            "eval_loss": result.final_eval_loss,
            "base_eval_loss": result.base_eval_loss,
        },
        reason="cvml finetune",
    )
    return version.ref


def training_vocabulary(records):
    """The words the model was trained on (`cvml monitor` measures production's unknown words with it)."""
    from cvml.data.vocabulary import Vocabulary

    return Vocabulary.from_texts(text for r in records for text in (r.source_text, r.job_description, r.target))


def generate_samples(model, tokenizer, records, max_new_tokens: int = 96) -> list[dict[str, Any]]:
    """Greedy outputs for a few validation records: the quickest look at what the model learned."""
    import torch

    from cvml.data.encode import render

    if not records:
        return []
    prompts = [render(tokenizer, r)[0] for r in records]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation pads on the left
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [
        {"id": r.id, "task": r.task, "source_text": r.source_text, "target": r.target, "output": t.strip()}
        for r, t in zip(records, texts)
    ]


def plot_loss_curve(metrics_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = [], []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        (train if rec["type"] == "train" else evals).append(rec)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", alpha=0.7)
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per assistant token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
