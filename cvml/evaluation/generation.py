"""Greedy generation for evaluation: prompts rendered exactly as training renders them,
batched by length, the model's own generation config with sampling off.

Bench, quantize, abtest and train's samples all generate here, so the text one area
scores is the text another would have scored."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol

from cvml.errors import DataError
from cvml.progress import OnProgress, Phase
from cvml.prompts import render_prompt

DEFAULT_MAX_NEW_TOKENS = 96
DEFAULT_BATCH_SIZE = 32  # on CPU a tiny model decodes 64 records ~1.6x faster at 32 than at 16


class PromptItem(Protocol):
    """What generation needs of an item: an eval Record, or a bias-probe case."""

    task: str
    source_text: str
    job_description: str | None


def generate_outputs(
    loaded,
    items: Sequence[PromptItem],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: OnProgress | None = None,
    phase: str = "generate",
    grounding: str = "off",
) -> list[str]:
    """Greedy outputs of a `cvml.modelio.LoadedModel`, one per item, in the items' order
    (see `generate_greedy`)."""
    return generate_greedy(
        loaded.model, loaded.tokenizer, items, device=loaded.device, context_length=loaded.context_length,
        max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress, phase=phase,
        grounding=grounding,
    )


def generate_greedy(
    model,
    tokenizer,
    items: Sequence[PromptItem],
    *,
    device,
    context_length: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: OnProgress | None = None,
    phase: str = "generate",
    grounding: str = "off",
) -> list[str]:
    """Greedy outputs, one per item, in the items' order.

    Prompts are batched by length (left-padded, so a batch wastes little on padding);
    the model's saved generation config applies, with sampling off. An output is the text
    before the first end-of-sequence token, special tokens kept, so that a leaked chat
    token stays visible to the format check.

    Args:
        items: records or probe cases (anything with task, source_text, job_description).
        context_length: the model's context; prompts that do not fit with max_new_tokens
            are an error (None: not checked).
        on_progress: reports `phase` with the items done after each batch.
        grounding: "off", "numbers" or "strict": each item's output may only state the
            numbers (strict: and names) its source and job description hold
            (`cvml.safety.grounding`), as `cvml serve` decodes with that setting.

    Raises:
        DataError: a prompt plus max_new_tokens exceeds the model's context.
    """
    import torch

    prompts = [render_prompt(tokenizer, it.task, it.source_text, it.job_description) for it in items]
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    if context_length is not None:
        _check_context(items, ids, max_new_tokens, context_length)
    config = _greedy_config(model, tokenizer, max_new_tokens)
    stops = set(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    outputs = [""] * len(ids)
    progress = Phase(on_progress, phase, len(order))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        pad = [[tokenizer.pad_token_id] * (width - len(ids[i])) for i in chunk]
        input_ids = torch.tensor([p + ids[i] for p, i in zip(pad, chunk)], device=device)
        mask = torch.tensor([[0] * len(p) + [1] * len(ids[i]) for p, i in zip(pad, chunk)], device=device)
        extra = {}
        if grounding != "off":
            extra["logits_processor"] = _grounding_processor(tokenizer, [items[i] for i in chunk], grounding, width,
                                                             max_new_tokens, stops)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config, **extra)
        for i, row in zip(chunk, out[:, width:].tolist()):
            end = next((k for k, tok in enumerate(row) if tok in stops), len(row))
            outputs[i] = tokenizer.decode(row[:end], skip_special_tokens=False).strip()
        progress.update(min(start + batch_size, len(order)))
    return outputs


def _grounding_processor(tokenizer, items, mode: str, width: int, max_new_tokens: int, stops):
    from transformers import LogitsProcessorList

    from cvml.safety.grounding import GroundingConstraint, grounding_facts, token_table
    from cvml.safety.grounding.processor import GroundingLogitsProcessor

    table = token_table(tokenizer, stops)
    constraints = [
        GroundingConstraint(table, grounding_facts(it.source_text, it.job_description, mode), max_new_tokens)
        for it in items
    ]
    return LogitsProcessorList([GroundingLogitsProcessor(constraints, width)])


def _greedy_config(model, tokenizer, max_new_tokens: int):
    config = copy.deepcopy(model.generation_config)
    config.update(
        do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    if config.eos_token_id is None:
        config.eos_token_id = tokenizer.eos_token_id
    return config


def _check_context(items: Sequence[PromptItem], ids: list[list[int]], max_new_tokens: int, context: int) -> None:
    over = [
        (getattr(it, "id", None) or getattr(it, "case_id", f"item {i}"), len(x))
        for i, (it, x) in enumerate(zip(items, ids))
        if len(x) + max_new_tokens > context
    ]
    if over:
        which, n = over[0]
        raise DataError(
            f"{len(over)} prompts do not fit the model's context of {context} tokens with max_new_tokens="
            f"{max_new_tokens} (first: {which}, {n} prompt tokens)",
            hint="Lower bench.max_new_tokens, or evaluate on records that fit (curate drops over-long ones).",
        )
