"""Training data for one run: read, quarantine, split by group, tokenize, pack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cvml.data.records import Record, load_records, resolve_data_file
from cvml.data.split import train_validation
from cvml.errors import DataError
from cvml.recipe import Recipe
from cvml.data.encode import Example, encode_records
from cvml.train.packing import Row, pack, packing_efficiency, unpacked


@dataclass
class RunData:
    train_rows: list[Row]
    eval_rows: list[Row]
    train_examples: list[Example]
    eval_examples: list[Example]
    eval_records: list[Record]
    inputs: dict[str, str]  # role -> file, for the manifest
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    train_records: list[Record] = field(default_factory=list)  # what the vocabulary stored with the model reads

    @property
    def train_tokens(self) -> int:
        return sum(len(e) for e in self.train_examples)

    @property
    def train_label_tokens(self) -> int:
        return sum(e.n_label_tokens for e in self.train_examples)

    def efficiency(self, micro_batch_size: int) -> float:
        return packing_efficiency(self.train_rows, micro_batch_size)


def prepare_data(recipe: Recipe, tokenizer) -> RunData:
    """Everything the loop needs from the data section. Counts always add up:
    rows_read = train + validation + quarantined_schema + quarantined_too_long + unused."""
    spec = recipe.data
    train_file = resolve_data_file(spec.train.format(name=recipe.name), "train")
    records, quarantine = load_records(train_file)
    inputs = {"train": str(train_file)}
    validation = None
    if spec.validation:
        val_file = resolve_data_file(spec.validation.format(name=recipe.name), "validation")
        validation, val_quarantine = load_records(val_file)
        quarantine += val_quarantine
        inputs["validation"] = str(val_file)
    candidates, eval_records = train_validation(
        records, validation, fraction=spec.validation_fraction, seed=recipe.seed
    )
    train_records = candidates[: spec.max_examples] if spec.max_examples else candidates
    if not train_records:
        raise DataError(f"no valid training rows in {train_file} ({len(quarantine)} quarantined)")
    if not eval_records:
        raise DataError("the validation split is empty", hint="Raise data.validation_fraction or give data.validation.")

    train_examples, long_train = encode_records(tokenizer, train_records, spec.max_seq_len)
    eval_examples, long_eval = encode_records(tokenizer, eval_records, spec.max_seq_len)
    if not train_examples or not eval_examples:
        which = "training" if not train_examples else "validation"
        raise DataError(
            f"every {which} example is longer than data.max_seq_len={spec.max_seq_len} tokens",
            hint="Raise data.max_seq_len (within the model's context) or shorten the texts.",
        )
    too_long_ids = {q["id"] for q in long_eval}
    eval_records = [r for r in eval_records if r.id not in too_long_ids]
    counts = {
        "rows_read": len(quarantine) + len(candidates) + len(eval_records) + len(long_eval),
        "train": len(train_examples),
        "validation": len(eval_examples),
        "quarantined_schema": len(quarantine),
        "quarantined_too_long": len(long_train) + len(long_eval),
        "unused_by_max_examples": len(candidates) - len(train_records),
    }
    for q in long_train + long_eval:
        quarantine.append({"source": "tokenize", "line": None, "reason": q["reason"], "row": q["row"]})
    make_rows = pack if recipe.train.packing else (lambda examples, _seq_len: unpacked(examples))
    return RunData(
        train_rows=make_rows(train_examples, spec.max_seq_len),
        eval_rows=make_rows(eval_examples, spec.max_seq_len),
        train_examples=train_examples,
        eval_examples=eval_examples,
        eval_records=eval_records,
        inputs=inputs,
        quarantine=quarantine,
        counts=counts,
        train_records=train_records,
    )
