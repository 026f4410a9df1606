"""The data quantization reads: calibration texts from the train split, rendered with the
chat template (in-domain calibration), and held-out validation records to measure the cost.

Where the data is found, first match wins: `quantize.data` (or `--data`), the recipe's
`data` section, else the inputs recorded in the source run's manifest — with the run's own
validation split (or its group hold-out, same fraction and seed), so a fine-tuned model is
never evaluated on rows it trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.data.records import Record, load_records, resolve_data_file
from cvml.data.split import train_validation
from cvml.errors import DataError

DEFAULT_HOLDOUT = 0.1


@dataclass
class QuantizeData:
    """Calibration and evaluation records, and where they came from."""

    calibration: list[Record]
    evaluation: list[Record]
    inputs: dict[str, str]  # role ("train", "validation") -> file, for the manifest
    origin: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Source:
    train: str
    validation: str | None
    fraction: float
    seed: int
    origin: str


def load_data(spec, recipe, source_manifest: dict[str, Any], seed: int) -> QuantizeData:
    """Pick the data (see the module docstring), split it, draw the calibration sample.

    Args:
        spec: the `QuantizeSpec` (data, calibration_samples, eval_samples).
        recipe: the `Recipe` when one was given, else None.
        source_manifest: the manifest of the source model (or of its run folder).
        seed: seeds the calibration draw (and a hold-out split when the data has none).

    Raises:
        DataError: no data found, or an empty train or validation split.
    """
    src = _find(spec, recipe, source_manifest, seed)
    train_file = resolve_data_file(src.train, "train")
    records, quarantined = load_records(train_file)
    inputs = {"train": str(train_file)}
    validation_file = _validation_file(src)
    evaluation = None
    if validation_file is not None:
        evaluation, more = load_records(validation_file)
        quarantined += more
        inputs["validation"] = str(validation_file)
    pool, evaluation = train_validation(records, evaluation, fraction=src.fraction, seed=src.seed)
    if not pool or not evaluation:
        which = "train" if not pool else "validation"
        raise DataError(
            f"the {which} split of {src.train} ({src.origin}) is empty ({len(quarantined)} rows quarantined)",
            hint="Point --data at a curated folder with train and validation splits (cvml curate makes one).",
        )
    calibration = random.Random(seed).sample(pool, min(spec.calibration_samples, len(pool)))
    return QuantizeData(
        calibration=calibration,
        evaluation=evaluation[: spec.eval_samples],
        inputs=inputs,
        origin=src.origin,
        counts={"train_pool": len(pool), "validation": len(evaluation), "quarantined": len(quarantined)},
    )


def calibration_batches(tokenizer, records: list[Record], max_len: int) -> tuple[list[dict[str, Any]], str]:
    """Tokenize each record's whole conversation (prompt + answer, chat template) as one row.

    Returns:
        (rows of {"input_ids", "attention_mask"} tensors shaped [1, n], sha256 of the token
        ids and record ids: the calibration data hash the manifest records).
    """
    from cvml.data.encode import render

    rows = []
    for record in records:
        text = "".join(render(tokenizer, record))
        enc = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_len, return_tensors="pt")
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    payload = [[r.id for r in records], [row["input_ids"][0].tolist() for row in rows]]
    return rows, hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def source_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest that says how a model was made: its own, else its run folder's."""
    from cvml.modelio import RUN_MODEL_DIRS, read_manifest

    if manifest.get("inputs") or folder.name not in RUN_MODEL_DIRS:
        return manifest
    return read_manifest(folder.parent) or manifest


def _find(spec, recipe, manifest: dict[str, Any], seed: int) -> _Source:
    if spec.data:
        return _Source(spec.data, None, DEFAULT_HOLDOUT, seed, f"quantize.data ({spec.data})")
    if recipe is not None and recipe.data is not None:
        data = recipe.data
        return _Source(
            data.train.format(name=recipe.name),
            data.validation.format(name=recipe.name) if data.validation else None,
            data.validation_fraction,
            recipe.seed,
            f"the recipe's data section ({data.train})",
        )
    inputs = manifest.get("inputs") or {}
    if "train" in inputs:
        made_by = manifest.get("recipe") or {}
        return _Source(
            inputs["train"]["path"],
            (inputs.get("validation") or {}).get("path"),
            (made_by.get("data") or {}).get("validation_fraction", DEFAULT_HOLDOUT),
            seed if made_by.get("seed") is None else made_by["seed"],
            "the source run's manifest",
        )
    raise DataError(
        "no data to calibrate and evaluate with: the source model records no training data",
        hint="Pass --data <curated folder or .jsonl>, or a --recipe with a data section.",
    )


def _validation_file(src: _Source) -> Path | None:
    if src.validation:
        return resolve_data_file(src.validation, "validation")
    folder = Path(src.train)
    if folder.is_dir():
        for ext in (".parquet", ".jsonl"):
            if (folder / f"validation{ext}").is_file():
                return folder / f"validation{ext}"
    return None
