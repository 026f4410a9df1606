"""Records → token ids with labels on the assistant turn only.

The prompt (system + user, with the generation prompt) and the completion (the target
and the end-of-turn tokens) are tokenized separately and concatenated. That is exactly
what serving does — tokenize the prompt, generate the rest — so training and inference
see the same token boundary, for any chat template whose prompt is a string prefix of
the full conversation (checked, not assumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from cvml.data.records import Record
from cvml.prompts import render_example

IGNORE_INDEX = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def render(tokenizer, record: Record) -> tuple[str, str]:
    """(prompt text, completion text) for one record, through the tokenizer's chat template."""
    return render_example(tokenizer, record.task, record.source_text, record.job_description, record.target)


def encode_records(
    tokenizer, records: Sequence[Record], max_seq_len: int
) -> tuple[list[Example], list[dict[str, Any]]]:
    """Tokenize records; an example longer than max_seq_len is quarantined with its length."""
    pairs = [render(tokenizer, r) for r in records]
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    examples: list[Example] = []
    quarantine: list[dict[str, Any]] = []
    for record, p_ids, c_ids in zip(records, prompts, completions):
        n = len(p_ids) + len(c_ids)
        if n > max_seq_len:
            quarantine.append(
                {"id": record.id, "reason": f"{n} tokens exceeds data.max_seq_len={max_seq_len}", "row": record.model_dump()}
            )
            continue
        examples.append(Example(list(p_ids) + list(c_ids), [IGNORE_INDEX] * len(p_ids) + list(c_ids)))
    return examples, quarantine
