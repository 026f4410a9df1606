"""What the load generator asks the model: chat prompts of eval (or synthetic) records.

Prompts are built with `cvml.prompts.build_messages`, exactly as training and serving
build them. The workload's digest goes into the report so two reports made with different
prompts or lengths are flagged instead of compared as if alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cvml.data.records import Record, validate_row
from cvml.prompts import build_messages

# Distinct prompts the load generator cycles through.
PERF_PROMPTS = 64


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    messages: tuple[dict[str, str], ...]


def synthetic_records(n: int, seed: int = 0) -> list[Record]:
    """Seeded synthetic CV records, for perf runs given no eval data."""
    from cvml.tiny.synth import generate_records

    rows = generate_records(n_people=max(4, n // 3), seed=seed)
    return [r for r in (validate_row(row)[0] for row in rows) if r is not None][:n]


def perf_prompts(records: list[Record], n: int = PERF_PROMPTS) -> list[BenchPrompt]:
    """Chat prompts of the first `n` records."""
    return [
        BenchPrompt(r.id, tuple(build_messages(r.task, r.source_text, r.job_description))) for r in records[:n]
    ]


def workload_digest(prompts: list[BenchPrompt], max_new_tokens: int, ignore_eos: bool) -> str:
    payload = json.dumps(
        {"prompts": [[p.id, list(p.messages)] for p in prompts], "max_new_tokens": max_new_tokens, "ignore_eos": ignore_eos},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
