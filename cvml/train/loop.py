"""`cvml finetune`: the training loop.

Why a hand-written Accelerate loop rather than `transformers.Trainer`: cvml needs a
token-exact loss across gradient accumulation and processes (every assistant token
weighs the same, whatever row it sits in), logits computed only where there are labels
(the vocabulary projection dominates a small model's cost), a data order that is a pure
function of (seed, step) so `--resume` continues bit-for-bit, and checkpoints that carry
the recipe that made them. Accelerate still does what it does well: devices, DDP/FSDP/
DeepSpeed, mixed precision, and saving/loading model+optimizer+RNG state.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from cvml.data.encode import IGNORE_INDEX
from cvml.errors import ConfigError
from cvml.progress import OnProgress, Phase
from cvml.recipe import Recipe, recipe_to_dict, require_sections
from cvml.train import checkpoint as ckpt
from cvml.train.data import RunData, prepare_data
from cvml.train.modeling import (
    attach_lora,
    count_parameters,
    load_model,
    load_tokenizer,
    parameter_counts_without_weights,
    resolve_device,
)
from cvml.train.outputs import write_outputs
from cvml.train.packing import collate
from cvml.train.plan import DataOrder, Plan, make_plan
from cvml.train.result import FinetuneResult
from cvml.train.state import TrainState


def dry_run(recipe: Recipe, world_size: int = 1) -> tuple[Plan, dict[str, int]]:
    """The plan without loading weights: tokenize and pack the data, count parameters on
    the meta device. Returns (plan, data counts)."""
    from cvml._quiet import quiet_libraries

    quiet_libraries()
    require_sections(recipe, "model", "data")
    tokenizer = load_tokenizer(recipe.model)
    data = prepare_data(recipe, tokenizer)
    trainable, total = parameter_counts_without_weights(recipe.model, recipe.train)
    return make_plan(recipe, data, world_size, trainable, total), data.counts


def finetune(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: OnProgress | None = None,
) -> FinetuneResult:
    """Train per the recipe and write the run folder (see README "Run folder").

    Args:
        recipe: the validated recipe.
        resume: continue from the latest complete checkpoint in the run folder.
        overwrite: start afresh even if the run folder already holds a run. A run folder
            holding a registered model is kept as it is: the new run goes to a new folder
            beside it (`<output_dir>-<UTC time>`, see `result.run_dir`).
        on_progress: told after every optimizer step (phase "train", done=step of
            total_steps, info "loss · eval · tok/s"); only the main process reports.

    Returns:
        FinetuneResult with the figures that also land in result.json.

    Raises:
        ResumeError, ConfigError, DataError, ModelError, DeviceError.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from cvml._quiet import quiet_libraries

    quiet_libraries()
    require_sections(recipe, "model", "data")
    started = time.time()
    device = resolve_device(recipe.model)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=recipe.train.mixed_precision)
    run_dir = _prepare_run_dir(recipe.output_dir, resume, overwrite, accelerator)
    if run_dir != recipe.output_dir:
        recipe = _with_output_dir(recipe, run_dir)
    set_seed(recipe.seed)

    tokenizer = load_tokenizer(recipe.model)
    data = prepare_data(recipe, tokenizer)
    model = load_model(recipe.model, device)
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if recipe.train.method == "lora":
        set_seed(recipe.seed)  # the adapter's initialisation depends on the seed alone, not on what loaded before it
        model = attach_lora(model, recipe.train)
    trainable, total = count_parameters(model)
    plan = make_plan(recipe, data, accelerator.num_processes, trainable, total)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, recipe.train.lr, recipe.train.weight_decay)
    # Not passed to prepare(): Accelerate would step it once per process per step.
    scheduler = get_scheduler(
        "constant_with_warmup" if recipe.train.scheduler == "constant" else recipe.train.scheduler,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    lora = recipe.train.method == "lora"
    if lora:
        ckpt.keep_only_trainable(accelerator, model)

    recipe_dict = recipe_to_dict(recipe)
    state = TrainState()
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        found = ckpt.latest_checkpoint(run_dir)
        saved = ckpt.read_state(found)
        ckpt.check_compatible(saved, recipe_dict, accelerator.num_processes)
        accelerator.load_state(str(found), strict=not lora)  # LoRA checkpoints hold the adapter only
        state = TrainState.from_dict(saved["state"])
        if accelerator.is_main_process:
            _truncate_metrics(metrics_path, state.step)

    log = _MetricsLog(metrics_path, accelerator.is_main_process)
    pad_id = tokenizer.pad_token_id
    model.train()
    if state.step == 0:
        state.base_eval_loss = evaluate(model, data, recipe.train.micro_batch_size, pad_id, accelerator)
        log.write({"type": "eval", "step": 0, "eval_loss": state.base_eval_loss})

    # Early stopping hands back the best evaluation's weights. Under FSDP/DeepSpeed the
    # weights are sharded and cvml does not re-shard them: there the last weights are kept.
    keep_best = bool(recipe.train.early_stopping) and accelerator.distributed_type.value not in ("FSDP", "DEEPSPEED")
    if recipe.train.early_stopping and not keep_best:
        log.write({"type": "note", "step": state.step,
                   "note": f"early stopping under {accelerator.distributed_type.value} keeps the last weights, "
                           "not the best evaluation's (sharded weights are not restored)"})
    phase = Phase(on_progress if accelerator.is_main_process else None, "train", plan.total_steps, state.step)
    order = DataOrder(plan, data, recipe.seed, recipe.data.max_seq_len)
    stopped_early = False
    eval_loss = state.base_eval_loss
    world = accelerator.num_processes
    for step in range(state.step, plan.total_steps):
        t0 = time.perf_counter()
        batches = [collate(rows, pad_id) for rows in order.step_batches(step, accelerator.process_index)]
        local = torch.tensor([sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches), sum(b["n_tokens"] for b in batches)])
        n_labels, n_tokens = (int(x) for x in accelerator.reduce(local.to(accelerator.device), "sum"))
        loss_sum = torch.zeros((), device=accelerator.device)
        for j, batch in enumerate(batches):
            sync = nullcontext() if j == len(batches) - 1 else accelerator.no_sync(model)
            with sync:
                summed = token_loss_sum(model, batch, accelerator.device)
                # DDP averages gradients over processes; scaling by world/n_labels makes
                # the update the mean over every label token of the global step.
                accelerator.backward(summed * world / n_labels)
            loss_sum += summed.detach()
        grad_norm = None
        if recipe.train.max_grad_norm:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), recipe.train.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = float(accelerator.reduce(loss_sum, "sum")) / n_labels
        state.advance(train_loss, n_tokens, time.perf_counter() - t0)
        record = {
            "type": "train",
            "step": step + 1,
            "epoch": round((step + 1) / plan.steps_per_epoch, 4),
            "loss": train_loss,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "tokens": n_tokens,
            "tokens_per_s": state.tokens_per_s,
        }
        log.write(record)
        last = step + 1 == plan.total_steps
        if (step + 1) % recipe.train.eval_every == 0 or last:
            eval_loss = evaluate(model, data, recipe.train.micro_batch_size, pad_id, accelerator)
            log.write({"type": "eval", "step": step + 1, "eval_loss": eval_loss})
            es = recipe.train.early_stopping
            if state.record_eval(eval_loss, es.min_delta if es else 0.0) and keep_best:
                state.best_step = step + 1
                ckpt.save_best(accelerator, model, run_dir)
            stopped_early = bool(es) and state.bad_evals >= es.patience and not last
        phase.update(step + 1, info=_progress_info(train_loss, eval_loss, state.tokens_per_s))
        if stopped_early:
            break
        if (step + 1) % recipe.train.save_every == 0 and not last:
            ckpt.save_checkpoint(accelerator, run_dir, state, recipe_dict, world, recipe.train.keep_checkpoints)
    phase.finish()
    if keep_best and state.best_step and not eval_loss <= state.best_eval_loss:  # NaN too
        # With early stopping the run's model is its best evaluation, not its last step.
        ckpt.load_best(accelerator, model, run_dir)
        eval_loss = evaluate(model, data, recipe.train.micro_batch_size, pad_id, accelerator)
        log.write({"type": "eval", "step": state.step, "eval_loss": eval_loss, "restored_best_step": state.best_step})

    return write_outputs(
        recipe=recipe,
        accelerator=accelerator,
        model=model,
        tokenizer=tokenizer,
        data=data,
        plan=plan,
        state=state,
        final_eval_loss=eval_loss,
        stopped_early=stopped_early,
        wall_s=time.time() - started,
    )


def _adamw(params, lr: float, weight_decay: float):
    """AdamW, fused into one kernel where every parameter is a float tensor on the CPU or a
    CUDA device: the same update as the per-tensor loop in fewer passes, and what
    transformers' Trainer uses. (torch checks devices only at the first step, so the choice is
    made here.)"""
    import torch

    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def token_loss_sum(model, batch: dict, device):
    """Summed cross-entropy over label tokens; logits only where a label follows."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"].to(device)
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    out = model(
        input_ids=batch["input_ids"].to(device),
        position_ids=batch["position_ids"].to(device),
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    targets = labels[:, 1:][keep[:, :-1]]
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def evaluate(model, data: RunData, micro_batch_size: int, pad_id: int, accelerator) -> float:
    """Mean loss per assistant token on the validation rows (sharded over processes)."""
    import torch

    rows = data.eval_rows[accelerator.process_index :: accelerator.num_processes]
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(rows), micro_batch_size):
            batch = collate(rows[start : start + micro_batch_size], pad_id)
            totals[0] += token_loss_sum(model, batch, accelerator.device).double()
            totals[1] += int((batch["labels"] != IGNORE_INDEX).sum())
    totals = accelerator.reduce(totals, "sum")
    if was_training:
        model.train()
    return float(totals[0] / totals[1])


def _progress_info(train_loss: float, eval_loss: float | None, tokens_per_s: float) -> str:
    """The status line of the train phase: "loss 1.234 · eval 1.111 · 5,000 tok/s"."""
    evals = f" · eval {eval_loss:.3f}" if eval_loss is not None else ""
    return f"loss {train_loss:.3f}{evals} · {tokens_per_s:,.0f} tok/s"


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, accelerator) -> Path:
    """The run folder to write: `run_dir` (emptied with --overwrite), or, when it holds a
    registered model, a new folder beside it with --overwrite. A registered version's files
    are never rewritten: --resume of such a run and a run without --overwrite are refused."""
    import shutil

    from accelerate.utils import broadcast_object_list

    from cvml.registry import Registry
    from cvml.registry.integrity import new_folder_beside

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other", hint="Pick one.")
    has_run = (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists()
    # Every process asks, so all of them raise alike; the main process names a new folder.
    held = [v.ref for v in Registry().registered_under(run_dir)] if run_dir.exists() else []
    if held and resume:
        raise ConfigError(
            f"{run_dir} holds a finished run whose model is registered as {', '.join(held)}: resuming would rewrite it",
            hint="Start a new run with --overwrite (it writes a new folder beside this one), or set train.output_dir.",
        )
    if (has_run or held) and not resume and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run" + (f" (registered as {', '.join(held)})" if held else ""),
            hint="Add --resume to continue it, --overwrite to start afresh"
            + (" in a new folder beside it" if held else "") + ", or set train.output_dir.",
        )
    if held:
        chosen = [str(new_folder_beside(run_dir)) if accelerator.is_main_process else None]
        run_dir = Path(broadcast_object_list(chosen)[0])
    elif has_run and not resume and accelerator.is_main_process:
        shutil.rmtree(run_dir)
    accelerator.wait_for_everyone()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _with_output_dir(recipe: Recipe, run_dir: Path) -> Recipe:
    """The recipe with train.output_dir set to `run_dir` (braces escaped: it is a format string)."""
    escaped = str(run_dir).replace("{", "{{").replace("}", "}}")
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"output_dir": escaped})})


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class _MetricsLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
