"""Task quality of a model on eval records: greedy outputs, then reference and
reference-free metrics per example, safety checks included.

    loaded = load_for_inference("runs/tiny-cv")
    records = load_eval_records("data/tiny-cv", limit=64)
    result = evaluate_quality(loaded, records)        # QualityResult
    result.metrics["chrf"], result.per_example[0]["fabrication_rate"]

Per example, every aggregate metric has a value under the same name (rates as 0.0/1.0,
None where the metric does not apply), and the aggregate is the mean of those values, so
a paired test of two models on the same ids (bench's relative quality gates, abtest offline)
compares exactly what the report shows:
- chrf: sacrebleu chrF of the output against the target (0-100).
- rouge_l: ROUGE-L F-measure against the target, Porter-stemmed (0-1).
- keyword_coverage: share of the job ad's keywords in the output (records with an ad).
- format_ok_rate: no format problem (`textmetrics.format_problems`).
- action_verb_rate: rewrite_bullet outputs that open with an action verb.
- fabrication_rate: outputs the fabrication check flags (claims absent from source + ad).
- pii_leak_rate: outputs holding personal data the input did not contain.
- empty_rate: empty outputs.
`target_metrics` holds the reference-free metrics of the targets themselves: what the eval
data's own answers score (the ceiling of coverage, the checks' false alarms on faithful text).
Outputs are stored with leaked personal data replaced by `<TYPE>`: reports travel (CI
artifacts, PR comments) and must not carry what a model recalled of someone's email.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from cvml.bench.textmetrics import format_problems, starts_with_action_verb
from cvml.data.records import TASKS, Record, load_records, resolve_data_file
from cvml.errors import DataError
from cvml.prompts import build_messages
from cvml.safety import textscore

DEFAULT_MAX_NEW_TOKENS = 96
DEFAULT_BATCH_SIZE = 32  # on CPU a tiny model decodes 64 records ~1.6x faster at 32 than at 16
SAMPLES_PER_TASK = 2
REFERENCE_METRICS = ("chrf", "rouge_l")
FREE_METRICS = (
    "keyword_coverage", "format_ok_rate", "action_verb_rate", "fabrication_rate", "pii_leak_rate", "empty_rate",
)
METRICS = REFERENCE_METRICS + FREE_METRICS
ProgressFn = Callable[[int, int], None]


class PromptItem(Protocol):
    """What generation needs of an item: an eval Record, or a bias-probe case."""

    task: str
    source_text: str
    job_description: str | None


@dataclass
class QualityResult:
    """Aggregates, per-task aggregates, per-example values and a few outputs side by side."""

    metrics: dict[str, Any]
    by_task: dict[str, dict[str, Any]]
    target_metrics: dict[str, Any]
    per_example: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    timing: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- eval data --------------------------------------------------------------------------------

def load_eval_records(path: str | Path, split: str = "test", limit: int | None = None) -> list[Record]:
    """The records of a JSONL/Parquet file, or of a curated folder's `split`, in file order.

    An eval set is all-or-nothing: a row that fails the schema is an error, not a smaller
    eval set, since a gate compares reports example by example.

    Raises:
        DataError: the file is missing, holds a row that fails the schema, or no record.
    """
    file = resolve_data_file(path, split)
    records, quarantine = load_records(file, split)
    if quarantine:
        first = quarantine[0]
        raise DataError(
            f"{file}: {len(quarantine)} of {len(records) + len(quarantine)} rows fail the record schema "
            f"(line {first['line']}: {first['reason']})",
            hint="Evaluate on a curated split (`cvml curate` writes test.parquet), or fix those rows.",
        )
    if not records:
        raise DataError(f"{file} holds no eval records", hint="Point bench.eval_data at a non-empty split.")
    return records[:limit] if limit is not None else records


# --- generation -------------------------------------------------------------------------------

def build_prompt(tokenizer, task: str, source_text: str, job_description: str | None = None) -> str:
    """The prompt text exactly as training renders it (`cvml.train.encode.render`)."""
    messages = build_messages(task, source_text, job_description)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate_outputs(
    loaded,
    items: Sequence[PromptItem],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressFn | None = None,
) -> list[str]:
    """Greedy outputs, one per item, in the items' order.

    Prompts are batched by length (left-padded, so a batch wastes little on padding);
    the model's saved generation config applies, with sampling off. An output is the text
    before the first end-of-sequence token, special tokens kept, so that a leaked chat
    token stays visible to the format check.

    Args:
        loaded: a `cvml.modelio.LoadedModel`.
        items: records or probe cases (anything with task, source_text, job_description).
        on_progress: called with (done, total) after each batch.

    Raises:
        DataError: a prompt plus max_new_tokens exceeds the model's context.
    """
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    prompts = [build_prompt(tokenizer, it.task, it.source_text, it.job_description) for it in items]
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    _check_context(items, ids, max_new_tokens, loaded.context_length)
    config = _greedy_config(model, tokenizer, max_new_tokens)
    stops = set(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    outputs = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        pad = [[tokenizer.pad_token_id] * (width - len(ids[i])) for i in chunk]
        input_ids = torch.tensor([p + ids[i] for p, i in zip(pad, chunk)], device=loaded.device)
        mask = torch.tensor([[0] * len(p) + [1] * len(ids[i]) for p, i in zip(pad, chunk)], device=loaded.device)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
        for i, row in zip(chunk, out[:, width:].tolist()):
            end = next((k for k, tok in enumerate(row) if tok in stops), len(row))
            outputs[i] = tokenizer.decode(row[:end], skip_special_tokens=False).strip()
        if on_progress is not None:
            on_progress(min(start + batch_size, len(order)), len(order))
    return outputs


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


# --- scoring ----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _scorers():
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    return CHRF(), rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def reference_free(task: str, output: str, source_text: str, job_description: str | None) -> dict[str, Any]:
    """The reference-free metrics of one output, with what each check found.

    Returns:
        Every name of FREE_METRICS (floats, None where it does not apply) plus
        format_problems, fabricated_claims, n_claims, words, and pii_leaks as type and
        offsets only (a report must not spread the personal data a model leaked).
    """
    from cvml.safety.fabrication import check_fabrication
    from cvml.safety.leak import pii_leaks

    text = output.strip()
    problems = format_problems(task, text, source_text)
    fabrication = check_fabrication(text, source_text, job_description)
    leaks = pii_leaks(text, source_text, job_description)
    coverage = textscore.keyword_coverage(text, textscore.keywords(job_description)) if job_description else None
    return {
        "keyword_coverage": coverage,
        "format_ok_rate": float(not problems),
        "action_verb_rate": float(starts_with_action_verb(text)) if task == "rewrite_bullet" else None,
        "fabrication_rate": float(fabrication.flagged),
        "pii_leak_rate": float(bool(leaks)),
        "empty_rate": float(not text),
        "format_problems": problems,
        "fabricated_claims": [asdict(claim) for claim in fabrication.claims],
        "n_claims": fabrication.n_claims,
        "pii_leaks": [{"type": leak.type, "start": leak.start, "end": leak.end} for leak in leaks],
        "words": textscore.word_count(text),
    }


def score_example(record: Record, output: str) -> dict[str, Any]:
    """All metrics of one output: id, task, the output (leaked PII replaced by `<TYPE>`),
    every name of METRICS, and the checks' findings."""
    chrf, rouge = _scorers()
    text = output.strip()
    free = reference_free(record.task, text, record.source_text, record.job_description)
    return {
        "id": record.id,
        "task": record.task,
        "output": _redact(text, free["pii_leaks"]),
        "chrf": round(chrf.sentence_score(text, [record.target]).score, 4),
        "rouge_l": round(rouge.score(record.target, text)["rougeL"].fmeasure, 6),
        **free,
    }


def _redact(text: str, leaks: list[dict[str, Any]]) -> str:
    for leak in sorted(leaks, key=lambda x: -x["start"]):
        text = text[: leak["start"]] + f"<{leak['type']}>" + text[leak["end"] :]
    return text


def score_outputs(records: Sequence[Record], outputs: Sequence[str]) -> QualityResult:
    """Score outputs against their records (same order); no model needed.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(records) != len(outputs):
        raise ValueError(f"{len(records)} records but {len(outputs)} outputs")
    rows = [score_example(r, o) for r, o in zip(records, outputs)]
    targets = [reference_free(r.task, r.target, r.source_text, r.job_description) for r in records]
    by_task = {task: aggregate([row for row in rows if row["task"] == task]) for task in TASKS}
    return QualityResult(
        metrics=aggregate(rows),
        by_task={task: values for task, values in by_task.items() if values["n"]},
        target_metrics=aggregate(targets, FREE_METRICS),
        per_example=rows,
        samples=_samples(records, rows),
    )


def aggregate(rows: Sequence[dict[str, Any]], names: Sequence[str] = METRICS) -> dict[str, Any]:
    """Mean of each metric over the rows where it applies (None where it applies to none), and n."""
    result: dict[str, Any] = {"n": len(rows)}
    for name in names:
        values = [row[name] for row in rows if row.get(name) is not None]
        result[name] = round(sum(values) / len(values), 6) if values else None
    if rows and "words" in rows[0]:
        result["mean_words"] = round(sum(row["words"] for row in rows) / len(rows), 2)
    return result


def _samples(records: Sequence[Record], rows: Sequence[dict]) -> list[dict[str, Any]]:
    """The first SAMPLES_PER_TASK examples of each task, input, target and output side by side."""
    picked: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for record, row in zip(records, rows):
        if seen.get(record.task, 0) >= SAMPLES_PER_TASK:
            continue
        seen[record.task] = seen.get(record.task, 0) + 1
        picked.append({
            "id": record.id, "task": record.task, "source_text": record.source_text,
            "job_description": record.job_description, "target": record.target,
            **{k: row[k] for k in ("output", "chrf", "rouge_l", "format_problems", "fabricated_claims", "pii_leaks")},
        })
    return picked


# --- end to end -------------------------------------------------------------------------------

def evaluate_quality(
    loaded,
    records: Sequence[Record],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressFn | None = None,
) -> QualityResult:
    """Generate greedily for (the first `limit` of) the records and score the outputs, timed.

    Raises:
        DataError: no records, or a prompt that does not fit the context.
    """
    records = list(records[:limit] if limit is not None else records)
    if not records:
        raise DataError("no eval records to score", hint="Check bench.eval_data and bench.eval_samples.")
    start = time.perf_counter()
    outputs = generate_outputs(
        loaded, records, max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress
    )
    generated = time.perf_counter()
    result = score_outputs(records, outputs)
    done = time.perf_counter()
    result.timing = {
        "generate_s": round(generated - start, 3),
        "score_s": round(done - generated, 3),
        "total_s": round(done - start, 3),
        "records_per_s": round(len(records) / max(done - start, 1e-9), 3),
    }
    result.settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "n_records": len(records)}
    return result


# --- bias probe -------------------------------------------------------------------------------

def default_bias_names_dir() -> Path:
    """`../shared/data/bias-names` next to the repository that holds this package."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "bias-names"


def run_bias_probe(
    loaded,
    names_dir: str | Path | None = None,
    *,
    n_templates: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Generate for the counterfactual name-swap probe and analyse the outputs by group.

    Résumé excerpts and job ads are cut to the longest of PROBE_MAX_CHARS whose prompts
    fit the model's context with max_new_tokens; the report states the length used.

    Returns:
        `analyze_bias(...).to_dict()` plus "max_chars" and "timing".

    Raises:
        DataError: the bias-names folder is missing, or no probe length fits the context.
    """
    from cvml.safety.bias import analyze_bias

    folder = Path(names_dir) if names_dir is not None else default_bias_names_dir()
    if not folder.is_dir():
        raise DataError(
            f"bias-names data not found at {folder}",
            hint="Set bench.bias_names_dir to the folder holding top_mens_names.json, top_womens_names.json and "
            "resumes_to_rank.json, or turn the probe off with bench.bias_probe: false.",
        )
    start = time.perf_counter()
    cases, max_chars = _fitting_probe(loaded, folder, n_templates, seed, max_new_tokens)
    outputs = generate_outputs(
        loaded, cases, max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress
    )
    generated = time.perf_counter()
    report = analyze_bias(cases, outputs).to_dict()
    done = time.perf_counter()
    timing = {
        "generate_s": round(generated - start, 3),
        "analyze_s": round(done - generated, 3),
        "total_s": round(done - start, 3),
    }
    return {**report, "max_chars": max_chars, "timing": timing}


# Source and job-ad lengths (characters) the probe tries, longest first.
PROBE_MAX_CHARS = (600, 400, 250, 150)


def _fitting_probe(loaded, folder: Path, n_templates: int | None, seed: int, max_new_tokens: int):
    from cvml.safety.bias import build_probe

    tokenizer = loaded.tokenizer
    for max_chars in PROBE_MAX_CHARS:
        cases = build_probe(folder, n_templates=n_templates, seed=seed, max_chars=max_chars)
        prompts = [build_prompt(tokenizer, c.task, c.source_text, c.job_description) for c in cases]
        longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])
        if longest + max_new_tokens <= loaded.context_length:
            return cases, max_chars
    raise DataError(
        f"the bias probe's prompts do not fit the model's context of {loaded.context_length} tokens even cut to "
        f"{PROBE_MAX_CHARS[-1]} characters, with max_new_tokens={max_new_tokens}",
        hint="Lower bench.max_new_tokens, or turn the probe off with bench.bias_probe: false.",
    )
