"""The curated record schema and the readers every area shares.

A record: id, task (rewrite_bullet | tailor_section | summary), source_text,
job_description (optional), target, group (person/source id), meta.
Rows that fail the schema are returned with a reason, never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cvml.errors import DataError

Task = Literal["rewrite_bullet", "tailor_section", "summary"]
TASKS: tuple[str, ...] = ("rewrite_bullet", "tailor_section", "summary")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    task: Task
    source_text: str
    job_description: str | None = None
    target: str
    group: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("source_text", "target")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("job_description")
    @classmethod
    def _blank_jd_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


def validate_row(row: Any) -> tuple[Record | None, str | None]:
    """(record, None) for a good row; (None, reason) for a bad one."""
    if not isinstance(row, dict):
        return None, f"row is a {type(row).__name__}, not an object"
    if isinstance(row.get("meta"), str):  # Parquet datasets store meta as JSON text
        try:
            row = {**row, "meta": json.loads(row["meta"])}
        except json.JSONDecodeError:
            return None, "meta: not a JSON object"
    try:
        record = Record.model_validate(row)
    except ValidationError as exc:
        reasons = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "row"
            reasons.append(f"{where}: {err['msg']}")
        return None, "; ".join(reasons)
    if record.task == "tailor_section" and not record.job_description:
        return None, "job_description: required for task tailor_section"
    return record, None


def resolve_data_file(path: str | Path, split: str = "train") -> Path:
    """A file path as given, or `<folder>/<split>.{parquet,jsonl}` for a dataset folder."""
    path = Path(path)
    if path.is_dir():
        for ext in (".parquet", ".jsonl"):
            candidate = path / f"{split}{ext}"
            if candidate.is_file():
                return candidate
        raise DataError(
            f"dataset folder {path} has no {split}.parquet or {split}.jsonl",
            hint="Point data.train at a .jsonl/.parquet file or a folder made by `cvml curate`.",
        )
    if not path.is_file():
        raise DataError(
            f"dataset not found: {path}",
            hint="Generate the embedded default with `cvml tiny data`, or fix data.train / data.validation.",
        )
    return path


def iter_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line_or_row_number, raw row) from JSONL or Parquet, streaming.

    A JSONL line that is not JSON is yielded as a string marker so the caller can
    quarantine it with its line number; an unreadable file is a DataError.
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield lineno, _BadJson(f"invalid JSON: {exc.msg} at column {exc.colno}")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"cannot read Parquet file {path}: {exc}") from None
        n = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    else:
        raise DataError(f"unsupported data file {path}", hint="Use .jsonl or .parquet.")


class _BadJson(str):
    """A JSONL line that failed to parse; carries the reason."""


def load_records(path: str | Path, split: str = "train") -> tuple[list[Record], list[dict[str, Any]]]:
    """Read and validate every row. Returns (records, quarantine) where each quarantined
    entry is {"source", "line", "reason", "row"}; len(records) + len(quarantine) = rows read."""
    file = resolve_data_file(path, split)
    records: list[Record] = []
    quarantine: list[dict[str, Any]] = []
    for lineno, row in iter_rows(file):
        if isinstance(row, _BadJson):
            quarantine.append({"source": str(file), "line": lineno, "reason": str(row), "row": None})
            continue
        record, reason = validate_row(row)
        if record is None:
            quarantine.append({"source": str(file), "line": lineno, "reason": reason, "row": row})
        else:
            records.append(record)
    return records, quarantine
