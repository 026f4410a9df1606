"""Helpers of scripts/gpu_check.sh: build a random-weight model of a named shape, and
gather the step results into one JSON.

    python scripts/gpu_check.py model --shape qwen2.5-0.5b --out DIR [--dtype bfloat16]
    python scripts/gpu_check.py report --work DIR --out FILE

Random weights: speed does not depend on their values, and nothing is downloaded. The
tokenizer is a byte-level BPE trained here on synthetic CV text (cvml's tiny one), the
model's vocabulary padded past it to the shape's size.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

SHAPES = {
    # Qwen2.5-0.5B-Instruct's shape: what a CV product would serve on one GPU or a CPU.
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, max_position_embeddings=4096),
    # The same architecture at the tiny model's size, for the CPU dry run.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=4096, max_position_embeddings=1024),
}


def build_model(shape: str, out: Path, dtype: str) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from cvml.tiny.model import train_tokenizer
    from cvml.tiny.synth import pretraining_corpus

    tokenizer = train_tokenizer(pretraining_corpus(600, seed=1), vocab_size=2048)
    config = Qwen2Config(**SHAPES[shape], tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    return {"shape": shape, "parameters": params, "dtype": dtype}


def report(work: Path, out: Path) -> dict:
    """Every step's result (`<step>.out`: its stdout, `<step>.code`: its exit code) and the
    machine, in one document."""
    import torch

    figures = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
               "torch": torch.__version__, "cuda": torch.cuda.is_available(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "steps": {}}
    for code in sorted(work.glob("*.code")):
        step = {"exit_code": int(code.read_text().strip() or -1)}
        result = _last_json(code.with_suffix(".out").read_text() if code.with_suffix(".out").exists() else "")
        figures["steps"][code.stem] = {**step, **result} if isinstance(result, dict) else step
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _last_json(text: str):
    """The JSON a command printed: its whole stdout, or else its last line."""
    text = text.strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    model = sub.add_parser("model")
    model.add_argument("--shape", choices=sorted(SHAPES), required=True)
    model.add_argument("--out", type=Path, required=True)
    model.add_argument("--dtype", default="float32")
    gathered = sub.add_parser("report")
    gathered.add_argument("--work", type=Path, required=True)
    gathered.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "model":
        print(json.dumps(build_model(args.shape, args.out, args.dtype)))
    else:
        print(json.dumps(report(args.work, args.out)))


if __name__ == "__main__":
    main()
