"""Training throughput: cvml finetune vs a plain transformers.Trainer + PEFT run.

Both train the same LoRA on the same tokenized examples (loss on the assistant turn),
from the same base, for the same number of epochs, learning rate and schedule, in this
one process, one after the other. The baseline pads each batch to its longest example
(DataCollatorForSeq2Seq, the usual recipe); cvml packs examples into rows and projects
onto the vocabulary only where a label follows. Throughput counts real (non-padding)
tokens per second of training; both models are then scored by the same function on the
same validation examples. The last line printed is one JSON object.

    python benchmarks/finetune_throughput.py [--recipe recipes/tiny-cv-lora.yaml] [--epochs N] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/tiny-cv-lora.yaml", help="A LoRA recipe (the baseline is PEFT).")
    parser.add_argument("--epochs", type=float, default=None, help="Epochs for both runs (default: the recipe's).")
    parser.add_argument("--seeds", type=int, default=1, help="Repeat both runs with this many seeds; means are reported.")
    args = parser.parse_args()

    import statistics

    import torch

    from cvml._quiet import quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="cvml-bench-"))
    runs = [_pair(args, work / f"seed{i}", i) for i in range(args.seeds)]
    mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
    print(json.dumps({
        "benchmark": "finetune_throughput",
        "recipe": args.recipe,
        "baseline": "transformers.Trainer + PEFT LoRA, DataCollatorForSeq2Seq padding='longest'",
        "examples": runs[0]["examples"],
        "steps": runs[0]["steps"],
        "seeds": [r["seed"] for r in runs],
        "torch_threads": torch.get_num_threads(),
        "cvml_tokens_per_s": round(mean("cvml_tokens_per_s"), 1),
        "baseline_tokens_per_s": round(mean("baseline_tokens_per_s"), 1),
        "ratio": round(mean("cvml_tokens_per_s") / mean("baseline_tokens_per_s"), 3),
        "cvml_eval_loss": round(mean("cvml_eval_loss"), 4),
        "baseline_eval_loss": round(mean("baseline_eval_loss"), 4),
        "cvml_packing_efficiency": runs[0]["cvml_packing_efficiency"],
        "per_seed": runs,
    }))


def _pair(args, work: Path, index: int) -> dict:
    """One cvml run and one baseline run with the same seed (the recipe's seed + index)."""
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
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log(f"[seed {seed}] cvml finetune ({recipe.train.epochs} epoch(s)) ...")
    ours = finetune(recipe, progress=False)
    steps = ours.plan["total_steps"]

    tokenizer = load_tokenizer(recipe.model)
    data = prepare_data(recipe, tokenizer)
    # Same number of optimizer steps and examples per step as the cvml run.
    per_step = max(1, round(len(data.train_examples) / ours.plan["steps_per_epoch"]))
    log(f"[seed {seed}] baseline Trainer + PEFT, batch {per_step} padded to longest, {steps} steps ...")
    base_model, base_s, base_tokens = _baseline(recipe, tokenizer, data, per_step, steps, work / "baseline")
    baseline_eval = evaluate(base_model, data, recipe.train.micro_batch_size, tokenizer.pad_token_id, Accelerator(cpu=True))
    return {
        "seed": seed,
        "examples": len(data.train_examples),
        "steps": steps,
        "cvml_tokens_per_s": ours.train_tokens_per_s,
        "baseline_tokens_per_s": round(base_tokens / base_s, 1),
        "cvml_eval_loss": round(ours.final_eval_loss, 4),
        "baseline_eval_loss": round(baseline_eval, 4),
        "cvml_packing_efficiency": ours.plan["packing_efficiency"],
    }


def _baseline(recipe, tokenizer, data, batch_size: int, steps: int, out: Path):
    """Train with transformers.Trainer; return (model, train seconds, real tokens trained)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from cvml.train.modeling import attach_lora

    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_pretrained(recipe.model.base, dtype=torch.float32)
    model = attach_lora(model, recipe.train)
    ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in data.train_examples])
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
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
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    epochs_seen = steps * batch_size / len(ds)
    tokens = sum(len(e) for e in data.train_examples) * epochs_seen
    return trainer.model.eval(), seconds, math.floor(tokens)


if __name__ == "__main__":
    main()
