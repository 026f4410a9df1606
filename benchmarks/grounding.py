"""Grounded decoding on the demo's fine-tuned model: fabrication, quality and latency.

The fine-tuned tiny model of `make demo` answers its eval set (the curated test split,
every record unless --eval-samples) three times, greedily: grounding off, numbers and
strict, decoded by `model.generate` with cvml's grounding processor, exactly as bench
and abtest decode. Per mode: the fabrication and harmful rates, the numeric claims the
inputs do not support, and chrF against the references, with a paired bootstrap interval
of strict - off. Latency: 16 closed-loop clients on cvml's engine, grounding off and strict
in alternating trials, e2e p95 of each. Last, the full bias probe (1,024 cases) as bench
runs it by default, timed.

Missing inputs (the tiny base, the synthetic rows, the curated data, the fine-tuned model)
are built first, as `make demo` builds them. The last line printed is one JSON object.

    python benchmarks/grounding.py [--recipe recipes/tiny-cv.yaml] [--model runs/tiny-cv] [--trials 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

MODES = ("off", "numbers", "strict")
QUANTITIES = ("number", "percent", "money", "year", "duration")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/tiny-cv.yaml")
    parser.add_argument("--model", default=None, help="Fine-tuned model folder (default: the recipe's output_dir).")
    parser.add_argument("--eval-samples", type=int, default=None, help="First N test records (default: all).")
    parser.add_argument("--trials", type=int, default=3, help="Latency trials per mode (alternating).")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--no-bias", action="store_true", help="Skip the full bias probe.")
    args = parser.parse_args()
    from cvml.errors import CvmlError

    try:
        with contextlib.redirect_stdout(sys.stderr):
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
    from cvml._quiet import quiet_libraries
    from cvml.evaluation import load_eval_records
    from cvml.modelio import load_for_inference
    from cvml.recipe import load_recipe

    quiet_libraries()
    recipe = load_recipe(args.recipe)
    model_dir = Path(args.model or recipe.train.output_dir.format(name=recipe.name))
    prepare(recipe, model_dir)
    loaded = load_for_inference(str(model_dir), device="cpu")
    records = load_eval_records(recipe.curate_output, limit=args.eval_samples)
    log(f"{len(records)} eval records, model {model_dir}")
    quality = {mode: _quality(loaded, records, recipe.bench.max_new_tokens, mode) for mode in MODES}
    chrf_ci = _paired_ci(quality["off"]["chrf_values"], quality["strict"]["chrf_values"])
    latency = _latency(loaded, records, recipe.bench.max_new_tokens, args.clients, args.trials)
    bias_s = None if args.no_bias else _bias_probe_s(loaded, recipe.bench.max_new_tokens)
    _print_table(quality, latency, chrf_ci, bias_s)
    summary = {"model": str(model_dir), "n_records": len(records), "clients": args.clients}
    for mode in MODES:
        q = quality[mode]
        summary[f"fabrication_rate_{mode}"] = q["fabrication_rate"]
        summary[f"harmful_rate_{mode}"] = q["harmful_rate"]
        summary[f"unsupported_numbers_{mode}"] = q["unsupported_numbers"]
        summary[f"chrf_{mode}"] = q["chrf"]
    summary.update({
        "chrf_strict_minus_off": chrf_ci[0],
        "chrf_strict_ci_low": chrf_ci[1],
        "chrf_strict_ci_high": chrf_ci[2],
        "p95_s_off": latency["off"],
        "p95_s_strict": latency["strict"],
        "p95_ratio_strict": round(latency["strict"] / latency["off"], 4),
        "bias_probe_full_s": bias_s,
    })
    return summary


def prepare(recipe, model_dir: Path) -> None:
    """The fine-tuned model of `make demo` (tiny base, synthetic rows, curated data first)."""
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
        resolve_data_file(recipe.curate_output, "test")
    except DataError:
        for raw in map(Path, recipe.curate.inputs):
            if not raw.exists():
                from cvml.tiny.synth import write_synthetic_dataset

                log(f"writing synthetic raw rows to {raw} (as `cvml tiny data --out {raw.parent}`) ...")
                write_synthetic_dataset(raw.parent, seed=0)
        from cvml.curate.run import run_curate

        log(f"curating -> {recipe.curate_output} (as `cvml curate {recipe.name}`) ...")
        run_curate(recipe)
    if not any((folder / "config.json").exists() for folder in (model_dir, model_dir / "model")):
        from cvml.train import finetune

        log(f"fine-tuning -> {model_dir} (as `cvml finetune`, a few minutes) ...")
        finetune(recipe.model_copy(update={"train": recipe.train.model_copy(update={"output_dir": str(model_dir)})}),
                 overwrite=True)


def _quality(loaded, records, max_new_tokens: int, mode: str) -> dict:
    from cvml.evaluation import generate_outputs, score_outputs
    from cvml.safety.fabrication import check_fabrication

    start = time.perf_counter()
    outputs = generate_outputs(loaded, records, max_new_tokens=max_new_tokens, grounding=mode)
    seconds = time.perf_counter() - start
    scored = score_outputs(records, outputs)
    unsupported = sum(
        1
        for record, output in zip(records, outputs)
        for claim in check_fabrication(output, record.source_text, record.job_description).claims
        if claim.kind in QUANTITIES
    )
    log(f"grounding {mode}: fabrication {scored.metrics['fabrication_rate']:.3f}, chrF {scored.metrics['chrf']:.2f}, "
        f"{unsupported} unsupported numbers, {seconds:.1f} s")
    return {
        "fabrication_rate": scored.metrics["fabrication_rate"],
        "harmful_rate": scored.metrics["harmful_rate"],
        "pii_leak_rate": scored.metrics["pii_leak_rate"],
        "chrf": scored.metrics["chrf"],
        "chrf_values": [row["chrf"] for row in scored.per_example],
        "unsupported_numbers": unsupported,
        "generate_s": round(seconds, 3),
    }


def _paired_ci(off: list[float], strict: list[float]) -> tuple[float, float, float]:
    """Mean of strict - off per example and its 95% paired bootstrap interval."""
    import numpy as np

    from cvml.abtest.stats import paired_bootstrap

    diffs = np.asarray(strict) - np.asarray(off)
    interval = paired_bootstrap(diffs, 0.95, 9999, 0)
    return round(float(diffs.mean()), 4), round(float(interval.low), 4), round(float(interval.high), 4)


def _latency(loaded, records, max_new_tokens: int, clients: int, trials: int) -> dict[str, float]:
    """e2e p95 of `clients` closed-loop clients on cvml's engine, off and strict alternating."""
    from cvml.prompts import render_prompt
    from cvml.safety.grounding import GroundingConstraint, grounding_facts, token_table
    from cvml.serve.engine import Engine
    from cvml.serve.types import GenerationRequest, SamplingParams

    tokenizer = loaded.tokenizer
    prompts = [tokenizer(render_prompt(tokenizer, r.task, r.source_text, r.job_description),
                         add_special_tokens=False)["input_ids"] for r in records]
    engine = Engine(loaded, max_batch_size=clients, max_queue=4 * clients)
    engine.start()
    table = token_table(tokenizer, engine.eos_ids)
    facts = [grounding_facts(r.source_text, r.job_description, "strict") for r in records]
    params = SamplingParams(max_new_tokens=max_new_tokens)

    def trial(mode: str) -> list[float]:
        queue = list(range(len(records)))
        lock, latencies = threading.Lock(), []

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                constraint = GroundingConstraint(table, facts[i], max_new_tokens) if mode == "strict" else None
                start = time.perf_counter()
                engine.submit(GenerationRequest(prompts[i], params, constraint=constraint)).result(timeout=300)
                with lock:
                    latencies.append(time.perf_counter() - start)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies

    try:
        trial("off")  # warm-up
        samples: dict[str, list[float]] = {"off": [], "strict": []}
        for k in range(trials):
            for mode in (("off", "strict") if k % 2 == 0 else ("strict", "off")):
                samples[mode].append(_p95(trial(mode)))
    finally:
        engine.stop()
    log(f"e2e p95 at {clients} clients: off {samples['off']}, strict {samples['strict']}")
    return {mode: round(statistics.median(values), 4) for mode, values in samples.items()}


def _p95(values: list[float]) -> float:
    import numpy as np

    return float(np.percentile(values, 95))


def _bias_probe_s(loaded, max_new_tokens: int) -> float:
    from cvml.evaluation import run_bias_probe

    start = time.perf_counter()
    report = run_bias_probe(loaded, n_templates=None, max_new_tokens=max_new_tokens)
    seconds = time.perf_counter() - start
    log(f"full bias probe: {report.get('n_cases')} cases in {seconds:.1f} s")
    return round(seconds, 2)


def _print_table(quality: dict, latency: dict, chrf_ci, bias_s) -> None:
    print("| grounding | fabrication | harmful | unsupported numbers | chrF | generate s |", file=sys.stderr)
    print("|---|---:|---:|---:|---:|---:|", file=sys.stderr)
    for mode, q in quality.items():
        print(f"| {mode} | {q['fabrication_rate']:.1%} | {q['harmful_rate']:.1%} | {q['unsupported_numbers']} "
              f"| {q['chrf']:.2f} | {q['generate_s']:.1f} |", file=sys.stderr)
    print(f"chrF strict - off: {chrf_ci[0]:+.2f} [{chrf_ci[1]:+.2f}, {chrf_ci[2]:+.2f}]; e2e p95 off "
          f"{latency['off']:.3f} s, strict {latency['strict']:.3f} s; full bias probe {bias_s} s", file=sys.stderr)


if __name__ == "__main__":
    main()
