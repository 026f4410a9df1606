"""What quantization costs and buys: GPTQ-4 against its RTN-4 baseline, and int8 decode speed on CPU.

Quality: `cvml quantize` runs gptq, rtn (same bits and group size) and int8 on the same model
with the same calibration draw and validation records; perplexity per assistant token of
the source and of each reloaded quantized model, weight bytes against the model's fp16 size.

Speed: per-token greedy decode latency of the int8 model against the fp32 source, batch 1,
on the same prompts (validation prompts rendered with the chat template), the same number
of new tokens forced for both, runs interleaved (fp32, int8, fp32, ...) so machine load
hits both alike; decode time excludes the prompt: (t(n tokens) - t(1 token)) / (n - 1).
The tiny demo model is small enough that per-layer overhead dominates, so the same
comparison runs on a larger random-weight Llama built here from a LlamaConfig (no download;
weights are random, so only its speed means anything). The last line printed is one JSON object.

    python benchmarks/quantize_quality.py            # prepares the tiny base and a curated split itself
    python benchmarks/quantize_quality.py --model runs/tiny-cv --data data/tiny-cv      # a fine-tuned model
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def prepare_inputs(work: Path) -> tuple[str, str]:
    """The tiny base (`cvml tiny model`) and a curated split of synthetic rows (`cvml tiny data`,
    `cvml curate`), built once under `work` and reused."""
    from cvml.curate.run import run_curate
    from cvml.recipe import resolve_recipe
    from cvml.tiny.model import build_base_model
    from cvml.tiny.synth import write_synthetic_dataset

    base, raw, curated = work / "base", work / "data", work / "curated"
    if not (base / "config.json").is_file():
        print(f"building the tiny base model at {base} ...", file=sys.stderr)
        build_base_model(base, seed=0)
    if not (curated / "validation.parquet").is_file():
        print(f"writing synthetic rows and curating them into {curated} ...", file=sys.stderr)
        rows = write_synthetic_dataset(raw, seed=0)["path"]
        recipe = resolve_recipe(
            Path(__file__).resolve().parents[1] / "recipes" / "tiny-cv.yaml", None,
            {"curate.inputs": [str(rows)], "curate.output": str(curated), "model.base": str(base)},
        )
        run_curate(recipe)
    return str(base), str(curated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="Model folder, run folder or registered name to quantize (default: prepared here).")
    parser.add_argument("--data", help="Curated dataset folder, train + validation splits (default: prepared here).")
    parser.add_argument("--bits", type=int, default=4, help="Bits for gptq and rtn.")
    parser.add_argument("--group-size", type=int, default=64, help="Group size for gptq and rtn (must divide every layer's input size).")
    parser.add_argument("--desc-act", action="store_true", help="GPTQ act-order.")
    parser.add_argument("--damp", type=float, default=0.1, help="GPTQ damp_percent.")
    parser.add_argument("--calibration", type=int, default=128, help="Calibration texts for GPTQ.")
    parser.add_argument("--eval", type=int, default=200, help="Validation records for perplexity.")
    parser.add_argument("--prompts", type=int, default=8, help="Prompts timed for decode latency.")
    parser.add_argument("--new-tokens", type=int, default=32, help="New tokens per timed generation.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed generations per prompt and model (median kept).")
    parser.add_argument("--large-hidden", type=int, default=1024, help="Hidden size of the random-weight model (0 skips it).")
    parser.add_argument("--large-intermediate", type=int, default=2816, help="Its MLP size.")
    parser.add_argument("--large-layers", type=int, default=4, help="Its layers.")
    parser.add_argument("--large-vocab", type=int, default=32000, help="Its vocabulary (tokens beyond the tokenizer's are never produced as input).")
    parser.add_argument("--quick", action="store_true", help="Proof-of-life sizes: few calibration/eval records, prompts and tokens.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (quantized models, reports) instead of deleting it.")
    args = parser.parse_args()
    if (args.model is None) != (args.data is None):
        sys.exit("give both --model and --data, or neither (then the tiny base and a curated split are prepared here)")
    if args.model is None:
        args.model, args.data = prepare_inputs(Path(tempfile.gettempdir()) / "cvml-quantize-quality")
    if args.quick:
        args.calibration, args.eval, args.prompts, args.new_tokens, args.repeats = 16, 24, 2, 8, 1

    import torch

    from cvml._quiet import quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="cvml-quantize-bench-"))
    os.environ["CVML_HOME"] = str(work / "home")  # nothing lands in the user's registry
    log(f"work folder {work}; torch threads {torch.get_num_threads()}")

    try:
        runs = {name: _quantize(args, name, work) for name in ("gptq", "rtn", "int8")}
        latency = _latency(args, args.model, runs["int8"].output_dir, runs["gptq"].output_dir)
        large = _large(args, work) if args.large_hidden else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    fp_ppl = runs["gptq"].perplexity["source"]["ppl"]

    def increase(name: str) -> float:
        return round(runs[name].perplexity["increase"], 5)

    print(json.dumps({
        "benchmark": "quantize_quality",
        "model": args.model,
        "settings": {"bits": args.bits, "group_size": args.group_size, "desc_act": args.desc_act, "damp_percent": args.damp,
                     "calibration": args.calibration, "eval": runs["gptq"].data["eval_examples"], "prompts": args.prompts,
                     "new_tokens": args.new_tokens, "repeats": args.repeats, "torch_threads": torch.get_num_threads()},
        "fp_ppl": round(fp_ppl, 5),
        f"gptq{args.bits}_ppl": round(runs["gptq"].perplexity["quantized"]["ppl"], 5),
        f"rtn{args.bits}_ppl": round(runs["rtn"].perplexity["quantized"]["ppl"], 5),
        "int8_ppl": round(runs["int8"].perplexity["quantized"]["ppl"], 5),
        f"gptq{args.bits}_ppl_increase": increase("gptq"),
        f"rtn{args.bits}_ppl_increase": increase("rtn"),
        "int8_ppl_increase": increase("int8"),
        f"gptq{args.bits}_size_ratio": round(runs["gptq"].size["ratio_vs_fp16"], 4),
        f"rtn{args.bits}_size_ratio": round(runs["rtn"].size["ratio_vs_fp16"], 4),
        "int8_size_ratio": round(runs["int8"].size["ratio_vs_fp16"], 4),
        f"gptq{args.bits}_quantized_layers_size_ratio": round(runs["gptq"].size["quantized_layers_ratio_vs_fp16"], 4),
        f"gptq{args.bits}_quantize_s": round(runs["gptq"].wall_s["quantize"], 2),
        "cpu_latency_ratio": latency["int8_ratio"],
        "cpu_latency_ms_per_token": latency["ms_per_token"],
        f"gptq{args.bits}_cpu_latency_ratio": latency["gptq_ratio"],
        "large_cpu_latency_ratio": large["int8_ratio"] if large else None,
        "large": large,
        "targets": {
            f"gptq{args.bits}_ppl_increase<=0.05": increase("gptq") <= 0.05,
            f"gptq{args.bits}_beats_rtn{args.bits}": increase("gptq") < increase("rtn"),
            f"gptq{args.bits}_size_ratio<=0.35": runs["gptq"].size["ratio_vs_fp16"] <= 0.35,
            "cpu_latency_ratio<=0.8 (large model)": bool(large) and large["int8_ratio"] <= 0.8,
        },
    }))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quantize(args, method: str, work: Path):
    from cvml.quantize import quantize
    from cvml.recipe import QuantizeSpec

    fields = {"method": method, "data": args.data, "calibration_samples": args.calibration, "eval_samples": args.eval,
              "quality_samples": 0, "register_model": False, "device": "cpu"}
    if method != "int8":
        fields.update(bits=args.bits, group_size=args.group_size)
    if method == "gptq":
        fields.update(desc_act=args.desc_act, damp_percent=args.damp)
    log(f"quantizing {args.model} with {method} ...")
    result = quantize(args.model, QuantizeSpec(**fields), output=work / method, seed=0, progress=False)
    log(f"  {method}: ppl {result.perplexity['source']['ppl']:.4f} -> {result.perplexity['quantized']['ppl']:.4f} "
        f"({result.perplexity['increase']:+.2%}), {result.size['ratio_vs_fp16']:.3f}x fp16, {result.wall_s['quantize']:.1f} s")
    return result


def _latency(args, source, int8_dir, gptq_dir=None) -> dict:
    """Per-token decode latency of fp32 vs int8 (and GPTQ when given), interleaved on the same prompts."""
    from cvml.prompts import render_prompt
    from cvml.data.records import load_records
    from cvml.modelio import load_for_inference

    models = {"fp32": load_for_inference(source, device="cpu", dtype="float32"), "int8": load_for_inference(int8_dir, device="cpu")}
    if gptq_dir is not None:
        models["gptq"] = load_for_inference(gptq_dir, device="cpu")
    tokenizer = models["fp32"].tokenizer
    records, _ = load_records(args.data, "validation")
    prompts = [render_prompt(tokenizer, r.task, r.source_text, r.job_description) for r in records[: args.prompts]]
    ids = [tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"] for p in prompts]
    for loaded in models.values():  # warm up allocators and kernels
        _generate(loaded.model, ids[0], 2)
    per_token: dict[str, list[float]] = {name: [] for name in models}
    for prompt in ids:
        times = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, loaded in models.items():
                first = _generate(loaded.model, prompt, 1)
                full = _generate(loaded.model, prompt, args.new_tokens)
                times[name].append((full - first) / (args.new_tokens - 1))
        for name in models:
            per_token[name].append(statistics.median(times[name]))
    ms = {name: round(1000 * statistics.fmean(v), 3) for name, v in per_token.items()}
    log(f"  decode ms/token: {ms}")
    return {
        "ms_per_token": ms,
        "int8_ratio": round(ms["int8"] / ms["fp32"], 4),
        "gptq_ratio": round(ms["gptq"] / ms["fp32"], 4) if "gptq" in ms else None,
    }


def _generate(model, input_ids, n: int) -> float:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n,
                       min_new_tokens=n, do_sample=False, pad_token_id=model.config.pad_token_id)
    return time.perf_counter() - start


def _large(args, work: Path) -> dict:
    """A random-weight Llama with the demo tokenizer: int8 vs fp32 decode latency only."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cvml.modelio import resolve_model

    folder = work / "large-fp32"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model).path)
    config = LlamaConfig(
        vocab_size=max(args.large_vocab, len(tokenizer)), hidden_size=args.large_hidden,
        intermediate_size=args.large_intermediate, num_hidden_layers=args.large_layers,
        num_attention_heads=args.large_hidden // 64, num_key_value_heads=max(1, args.large_hidden // 256),
        max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    log(f"building a random-weight Llama: hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}")
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    from cvml.quantize import quantize
    from cvml.recipe import QuantizeSpec

    spec = QuantizeSpec(method="int8", data=args.data, eval_samples=4, quality_samples=0, register_model=False, device="cpu")
    result = quantize(folder, spec, output=work / "large-int8", seed=0, progress=False)
    latency = _latency(args, folder, result.output_dir)
    return {
        "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size, "layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size, "parameters": params, "ms_per_token": latency["ms_per_token"],
        "int8_ratio": latency["int8_ratio"], "int8_size_ratio": round(result.size["ratio_vs_fp16"], 4),
    }


if __name__ == "__main__":
    main()
