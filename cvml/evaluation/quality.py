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
- harmful_rate: outputs stating a protected attribute (age, religion, ...) the input did
  not, or abusive language (`cvml.safety.harmful`).
- empty_rate: empty outputs.
`target_metrics` holds the reference-free metrics of the targets themselves: what the eval
data's own answers score (the ceiling of coverage, the checks' false alarms on faithful text).
Outputs are stored with leaked personal data replaced by `<TYPE>`: reports travel (CI
artifacts, PR comments) and must not carry what a model recalled of someone's email.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cvml.data.records import TASKS, Record, load_records, resolve_data_file
from cvml.errors import DataError
from cvml.evaluation.generation import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, generate_outputs
from cvml.evaluation.textmetrics import format_problems, starts_with_action_verb
from cvml.progress import OnProgress
from cvml.safety import textscore

SAMPLES_PER_TASK = 2
REFERENCE_METRICS = ("chrf", "rouge_l")
FREE_METRICS = (
    "keyword_coverage", "format_ok_rate", "action_verb_rate", "fabrication_rate", "pii_leak_rate", "harmful_rate",
    "empty_rate",
)
SAFETY_METRICS = ("fabrication_rate", "pii_leak_rate", "harmful_rate")
METRICS = REFERENCE_METRICS + FREE_METRICS


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
        format_problems, fabricated_claims, n_claims, words, harmful (the categories found),
        and pii_leaks as type and offsets only (a report must not spread the personal data
        a model leaked).
    """
    from cvml.safety.fabrication import check_fabrication
    from cvml.safety.harmful import check_harmful
    from cvml.safety.leak import pii_leaks

    text = output.strip()
    problems = format_problems(task, text, source_text)
    fabrication = check_fabrication(text, source_text, job_description)
    leaks = pii_leaks(text, source_text, job_description)
    harmful = check_harmful(text, source_text, job_description).to_dict()
    harms = [name for name in ("protected_attributes", "abusive") if harmful[name]["flagged"]]
    coverage = textscore.keyword_coverage(text, textscore.keywords(job_description)) if job_description else None
    return {
        "keyword_coverage": coverage,
        "format_ok_rate": float(not problems),
        "action_verb_rate": float(starts_with_action_verb(text)) if task == "rewrite_bullet" else None,
        "fabrication_rate": float(fabrication.flagged),
        "pii_leak_rate": float(bool(leaks)),
        "harmful_rate": float(bool(harms)),
        "empty_rate": float(not text),
        "format_problems": problems,
        "fabricated_claims": [asdict(claim) for claim in fabrication.claims],
        "n_claims": fabrication.n_claims,
        "pii_leaks": [{"type": leak.type, "start": leak.start, "end": leak.end} for leak in leaks],
        "harmful": harms,
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
    on_progress: OnProgress | None = None,
    grounding: str = "off",
) -> QualityResult:
    """Generate greedily for (the first `limit` of) the records and score the outputs, timed.
    `grounding` decodes as `cvml serve` does with that setting (`generate_greedy`).

    Raises:
        DataError: no records, or a prompt that does not fit the context.
    """
    records = list(records[:limit] if limit is not None else records)
    if not records:
        raise DataError("no eval records to score", hint="Check bench.eval_data and bench.eval_samples.")
    start = time.perf_counter()
    outputs = generate_outputs(
        loaded, records, max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress,
        phase="quality", grounding=grounding,
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
    result.settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "n_records": len(records),
                       "grounding": grounding}
    return result
