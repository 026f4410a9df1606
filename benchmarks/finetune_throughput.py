"""Training throughput and quality: cvml finetune vs transformers.Trainer + PEFT and TRL's SFTTrainer.

All three train the same LoRA on the same tokenized examples (loss on the assistant turn),
from the same base, for the same number of optimizer steps, with the same learning rate,
schedule and seed, in this one process, one after the other:

- cvml packs examples into rows (repacked every epoch) and projects onto the vocabulary
  only where a label follows;
- the padded baseline is `transformers.Trainer` with DataCollatorForSeq2Seq padding each
  batch to its longest example (the usual recipe). It is paired with the cvml run: a batch
  sampler replays cvml's data order, so at every optimizer step it trains on exactly the
  examples cvml's packed rows held at that step, and both start from the same adapter
  initialisation (seeded just before the adapter is attached). What differs is packing
  against padding alone, not which examples shared a step: the eval-loss comparison is then
  not at the mercy of shuffle noise (an unpaired padded run differs by ±0.01 from seed to seed);
- TRL's `SFTTrainer` packs best-fit-decreasing into rows of data.max_seq_len (padding-free),
  as many rows per step as cvml (`pip install -e .[bench]`; skipped without trl).

Throughput counts real (non-padding) tokens per second of training; every model is then
scored by cvml's evaluation on the same validation examples. Missing inputs of the tiny
recipe (base model, raw data, curated dataset) are built first, as `cvml tiny model`,
`cvml tiny data` and `cvml curate RECIPE` would. The last line printed is one JSON object.

    python benchmarks/finetune_throughput.py [--recipe recipes/tiny-cv-lora.yaml] [--epochs N] [--seeds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TRL_MISSING = "TRL baseline skipped: trl is not installed (pip install -e .[bench])"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/tiny-cv-lora.yaml", help="A LoRA recipe (the baselines use PEFT).")
    parser.add_argument("--epochs", type=float, default=None, help="Epochs for every run (default: the recipe's).")
    parser.add_argument("--seeds", type=int, default=1, help="Repeat the runs with this many seeds; means are reported.")
    args = parser.parse_args()
    from cvml.errors import CvmlError

    try:
        with contextlib.redirect_stdout(sys.stderr):  # trainers' and libraries' chatter; stdout gets the JSON
            summary = run(args)
    except CvmlError as exc:
        log(f"error: {exc.message}" + (f"\nHint: {exc.hint}" if exc.hint else ""))
        sys.exit(exc.exit_code)
    except Exception as exc:  # a benchmark prints one line, not a traceback (CVML_DEBUG=1 shows it)
        if os.environ.get("CVML_DEBUG"):
            raise
        log(f"error: {type(exc).__name__}: {exc} (set CVML_DEBUG=1 for the traceback)")
        sys.exit(1)
    print(json.dumps(summary))


def run(args) -> dict:
    """Prepare the inputs, train every seed, and summarise (means, and spreads over seeds)."""
    import statistics

    import torch

    from cvml._quiet import quiet_libraries
    from cvml.recipe import load_recipe

    quiet_libraries()
    prepare_inputs(load_recipe(args.recipe))
    has_trl = _trl_available()
    if not has_trl:
        log(TRL_MISSING)
    work = Path(tempfile.mkdtemp(prefix="cvml-bench-"))
    runs = [_seed_runs(args, work / f"seed{i}", i, has_trl) for i in range(args.seeds)]

    def mean(key: str) -> float | None:
        return statistics.fmean(r[key] for r in runs) if has_trl or not key.startswith("trl_") else None

    def spread(key: str) -> float | None:
        if len(runs) < 2 or (key.startswith("trl_") and not has_trl):
            return None
        return round(statistics.stdev(r[key] for r in runs), 4)

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "benchmark": "finetune_throughput",
        "recipe": args.recipe,
        "baseline": "transformers.Trainer + PEFT LoRA, DataCollatorForSeq2Seq padding='longest'",
        "trl_baseline": f"trl {_trl_version()} SFTTrainer + PEFT LoRA, packing='bfd' (padding-free)" if has_trl else None,
        "examples": runs[0]["examples"],
        "steps": runs[0]["steps"],
        "seeds": [r["seed"] for r in runs],
        "torch_threads": torch.get_num_threads(),
        "cvml_tokens_per_s": round(mean("cvml_tokens_per_s"), 1),
        "baseline_tokens_per_s": round(mean("baseline_tokens_per_s"), 1),
        "trl_tokens_per_s": rounded(mean("trl_tokens_per_s"), 1),
        "ratio": round(mean("cvml_tokens_per_s") / mean("baseline_tokens_per_s"), 3),
        "ratio_vs_trl": round(mean("cvml_tokens_per_s") / mean("trl_tokens_per_s"), 3) if has_trl else None,
        "cvml_eval_loss": round(mean("cvml_eval_loss"), 4),
        "baseline_eval_loss": round(mean("baseline_eval_loss"), 4),
        "trl_eval_loss": rounded(mean("trl_eval_loss"), 4),
        "cvml_eval_loss_sd": spread("cvml_eval_loss"),
        "baseline_eval_loss_sd": spread("baseline_eval_loss"),
        "trl_eval_loss_sd": spread("trl_eval_loss"),
        "cvml_packing_efficiency": runs[0]["cvml_packing_efficiency"],
        "per_seed": runs,
    }


def prepare_inputs(recipe) -> None:
    """Build what the recipe reads and a fresh clone lacks: the tiny base model (`cvml tiny
    model`), the raw synthetic rows (`cvml tiny data`), the curated dataset (`cvml curate`)."""
    from cvml.data.records import resolve_data_file
    from cvml.errors import DataError, ModelError
    from cvml.modelio import check_local

    base = recipe.model.base
    try:
        check_local(base)
    except ModelError:
        from cvml.tiny.model import build_base_model

        log(f"building the tiny base model at {base} (as `cvml tiny model --out {base}`) ...")
        build_base_model(base, seed=0)
    try:
        resolve_data_file(recipe.data.train.format(name=recipe.name), "train")
        return
    except DataError:
        if recipe.curate is None:
            raise
    for raw in map(Path, recipe.curate.inputs):
        if not raw.exists() and raw.name == "cv-raw.jsonl":
            from cvml.tiny.synth import write_synthetic_dataset

            log(f"writing synthetic raw rows to {raw} (as `cvml tiny data --out {raw.parent}`) ...")
            write_synthetic_dataset(raw.parent, seed=0)
    from cvml.curate.run import run_curate

    log(f"curating {', '.join(recipe.curate.inputs)} -> {recipe.curate_output} (as `cvml curate RECIPE`) ...")
    run_curate(recipe)


def _seed_runs(args, work: Path, index: int, has_trl: bool) -> dict:
    """One cvml run and the baseline runs with the same seed (the recipe's seed + index)."""
    from accelerate import Accelerator

    from cvml.recipe import load_recipe
    from cvml.train import finetune
    from cvml.train.data import prepare_data
    from cvml.train.loop import evaluate
    from cvml.train.modeling import load_tokenizer

    seed = load_recipe(args.recipe).seed + index
    recipe = load_recipe(
        args.recipe,
        [f"train.output_dir={work / 'cvml'}", "train.register_model=false", "train.merge=false", f"seed={seed}",
         "train.eval_every=100000", "train.save_every=100000"] + ([f"train.epochs={args.epochs}"] if args.epochs else []),
    )
    log(f"[seed {seed}] cvml finetune ({recipe.train.epochs} epoch(s)) ...")
    ours = finetune(recipe)
    plan = ours.plan
    steps = plan["total_steps"]

    tokenizer = load_tokenizer(recipe.model)
    data = prepare_data(recipe, tokenizer)
    score = lambda model: evaluate(  # noqa: E731
        model, data, recipe.train.micro_batch_size, tokenizer.pad_token_id, Accelerator(cpu=True)
    )
    schedule = _cvml_schedule(recipe, plan, data)
    log(f"[seed {seed}] Trainer + PEFT, cvml's examples of each step padded to the longest, {steps} steps ...")
    model, seconds, tokens = _baseline(recipe, tokenizer, data, schedule, work / "baseline")
    result = {
        "seed": seed,
        "examples": len(data.train_examples),
        "steps": steps,
        "cvml_tokens_per_s": ours.train_tokens_per_s,
        "baseline_tokens_per_s": round(tokens / seconds, 1),
        "cvml_eval_loss": round(ours.final_eval_loss, 4),
        "baseline_eval_loss": round(score(model), 4),
        "cvml_packing_efficiency": plan["packing_efficiency"],
    }
    if has_trl:
        log(f"[seed {seed}] TRL SFTTrainer, {plan['rows_per_step']} packed rows of {recipe.data.max_seq_len} per step, "
            f"{steps} steps ...")
        model, seconds, tokens = _trl(recipe, tokenizer, data, steps, work / "trl")
        result["trl_tokens_per_s"] = round(tokens / seconds, 1)
        result["trl_eval_loss"] = round(score(model), 4)
    return result


def _cvml_schedule(recipe, plan: dict, data) -> list[list[int]]:
    """For each optimizer step of the cvml run, the indices (into data.train_examples) of
    the examples its packed rows held: cvml's data order, replayed."""
    from cvml.train.plan import DataOrder, Plan

    index = {id(example): i for i, example in enumerate(data.train_examples)}
    order = DataOrder(Plan(**plan), data, recipe.seed, recipe.data.max_seq_len)
    return [
        [index[id(example)] for batch in order.step_batches(step, 0) for row in batch for example in row.examples]
        for step in range(plan["total_steps"])
    ]


def _lora_model(recipe):
    """The base model with the adapter, initialised as cvml's run initialises it."""
    import torch
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    from cvml.train.modeling import attach_lora

    model = AutoModelForCausalLM.from_pretrained(recipe.model.base, dtype=torch.float32)
    set_seed(recipe.seed)  # as cvml.train.loop does just before attaching
    return attach_lora(model, recipe.train)


def _train_args(recipe, steps: int, out: Path) -> dict:
    """The TrainingArguments both baselines share with the cvml run."""
    return dict(
        output_dir=str(out),
        max_steps=steps,
        learning_rate=recipe.train.lr,
        warmup_steps=int(steps * recipe.train.warmup_ratio),
        lr_scheduler_type=recipe.train.scheduler,
        weight_decay=recipe.train.weight_decay,
        max_grad_norm=recipe.train.max_grad_norm or 0.0,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def _timed_train(trainer):
    """Train, counting the real tokens of every batch the trainer collates; return
    (model, train seconds, real tokens)."""
    collate, tokens = trainer.data_collator, [0]

    def counting(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        tokens[0] += int(mask.sum()) if mask is not None else batch["input_ids"].numel()  # padding-free: no pads
        return batch

    trainer.data_collator = counting
    started = time.perf_counter()
    trainer.train()
    return trainer.model.eval(), time.perf_counter() - started, tokens[0]


def _baseline(recipe, tokenizer, data, schedule: list[list[int]], out: Path):
    """transformers.Trainer, each step's examples (`schedule`) padded to the longest of them."""
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    class ReplayTrainer(Trainer):
        def get_train_dataloader(self):
            loader = DataLoader(self.train_dataset, batch_sampler=schedule, collate_fn=self.data_collator)
            return self.accelerator.prepare(loader)

    ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in data.train_examples])
    trainer = ReplayTrainer(
        model=_lora_model(recipe),
        args=TrainingArguments(**_train_args(recipe, len(schedule), out)),
        train_dataset=ds,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
    )
    return _timed_train(trainer)


def _trl(recipe, tokenizer, data, steps: int, out: Path):
    """TRL's SFTTrainer on the same pre-tokenized examples (its `labels` column is used as
    is: loss on the assistant turn), packed best-fit-decreasing into rows of max_seq_len."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in data.train_examples])
    config = SFTConfig(
        per_device_train_batch_size=recipe.train.micro_batch_size,
        gradient_accumulation_steps=recipe.train.grad_accum,
        packing=True,
        packing_strategy="bfd",
        max_length=recipe.data.max_seq_len,
        gradient_checkpointing=False,  # SFTConfig turns it on by default; cvml and Trainer run without
        bf16=False,  # SFTConfig's default; float32 like the other runs
        **_train_args(recipe, steps, out),
    )
    trainer = SFTTrainer(model=_lora_model(recipe), args=config, train_dataset=ds, processing_class=tokenizer)
    return _timed_train(trainer)


def _trl_available() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def _trl_version() -> str:
    import trl

    return trl.__version__


if __name__ == "__main__":
    main()
