"""What quantization costs, measured the same way for the source and the quantized model:
perplexity per assistant token on validation records, greedy answers side by side with
bench's quality metrics, bytes on disk and in memory."""

from __future__ import annotations

import math
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cvml.data.records import Record

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# Tensor names (last part) of a quantized layer: GPTQ's packed format, then cvml's int8 one.
QUANTIZED_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx", "weight_int8", "weight_scale", "weight_zero_point")
_ITEMSIZE = {"I8": 1, "U8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4, "I64": 8, "F64": 8}


def perplexity(model, examples: Sequence, device: str, on_step: Callable[[], None] | None = None) -> dict[str, float]:
    """exp(mean cross-entropy) over the assistant tokens of `examples`.

    Each example is one forward pass with no padding, and logits are kept only for the
    positions that predict a label (the answer is the tail of every example), so the
    number is exact and memory stays small with a large vocabulary.

    Args:
        model: a causal LM in eval mode.
        examples: `cvml.data.encode.Example`s (labels -100 on the prompt).
        device: where the model is.
        on_step: called after each example.
    """
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for example in examples:
            n = example.n_label_tokens
            ids = torch.tensor([example.input_ids], device=device)
            logits = model(input_ids=ids, logits_to_keep=n + 1, use_cache=False).logits[0, :-1]
            targets = torch.tensor(example.input_ids[-n:], device=device)
            total += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            count += n
            if on_step is not None:
                on_step()
    nll = total / max(count, 1)
    return {"ppl": math.exp(nll), "nll_per_token": nll, "tokens": count, "examples": len(examples)}


def answers(loaded, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
    """Greedy answers to `records` (prompted as serve prompts) with bench's quality metrics."""
    from cvml.evaluation.quality import evaluate_quality

    result = evaluate_quality(loaded, records, max_new_tokens=max_new_tokens)
    return {"metrics": result.metrics, "outputs": [row["output"] for row in result.per_example], "timing": result.timing}


def side_by_side(records: Sequence[Record], source: Sequence[str], quantized: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"id": r.id, "task": r.task, "source_text": r.source_text, "target": r.target, "source_model": a, "quantized": b,
         "same": a == b}
        for r, a, b in zip(records, source, quantized)
    ]


def fits_context(tokenizer, records: Sequence[Record], max_new_tokens: int, context: int) -> list[Record]:
    """The records whose prompt plus `max_new_tokens` fits the model's context."""
    from cvml.prompts import render_prompt

    prompts = [render_prompt(tokenizer, r.task, r.source_text, r.job_description) for r in records]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
    return [r for r, n in zip(records, lengths) if n + max_new_tokens <= context]


def resident_bytes(model) -> int:
    """Bytes the model holds in memory: parameters, buffers, and torch's packed int8 weights
    (which live outside `parameters()`). Tied tensors count once."""
    seen: dict[int, int] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    total = sum(seen.values())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            weight, bias = packed._weight_bias()
            total += weight.numel() * weight.element_size() + weight.q_per_channel_scales().numel() * 8
            total += 0 if bias is None else bias.numel() * bias.element_size()
    return total


def fp16_bytes(model) -> int:
    """What the model's parameters take in float16: the size the target ratio is against."""
    return 2 * sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())


def linear_sizes(model) -> dict[str, int]:
    """Weight elements of every linear layer by name (before quantizing)."""
    from torch import nn

    return {name: m.weight.numel() for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def quantized_layers_bytes(folder: Path, linears: dict[str, int]) -> dict[str, int]:
    """Bytes the quantized layers take in the folder's weight files, and what the same
    layers take in float16: the ratio without the tensors left in float (embeddings, norms)."""
    from safetensors import safe_open

    stored, names = 0, set()
    for file in Path(folder).glob("*.safetensors"):
        with safe_open(str(file), "pt") as fh:
            for key in fh.keys():
                name, _, suffix = key.rpartition(".")
                if suffix in QUANTIZED_SUFFIXES and name in linears:
                    names.add(name)
                    view = fh.get_slice(key)
                    stored += math.prod(view.get_shape()) * _ITEMSIZE[view.get_dtype()]
    return {"bytes": stored, "fp16_bytes": 2 * sum(linears[n] for n in names), "layers": len(names)}


def weight_bytes(folder: Path) -> int:
    """Bytes of the weight files in a model folder."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (what quantizing needed, models included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
