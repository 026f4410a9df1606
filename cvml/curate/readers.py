"""Streaming readers for raw inputs: JSONL, CSV, Parquet, and saved `datasets` folders.

Rows are yielded one at a time (Parquet and Arrow in batches), never collected into a
list, so inputs larger than memory curate fine. A row that cannot be parsed is yielded
with its error so it can be quarantined; a file that cannot be read at all is a
DataError naming the file and line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cvml.errors import DataError

_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class RawRow:
    source: str  # file (or folder) it came from
    line: int  # line (JSONL/CSV) or row number (Parquet/Arrow), 1-based
    row: Any  # the parsed row, or None when it could not be parsed
    error: str | None = None


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            return "hf"
        raise DataError(f"{path} is a folder but not a saved `datasets` dataset", hint="Give files, or a save_to_disk folder.")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unsupported input format: {path}", hint="Use .jsonl, .csv, .parquet or a `datasets` folder.")
    return fmt


def iter_raw(path: str | Path) -> Iterator[RawRow]:
    """Every row of one input, streamed."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input not found: {path}", hint="Check curate.inputs (or --input).")
    fmt = detect_format(path)
    yield from {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "hf": _hf}[fmt](path)


def _jsonl(path: Path) -> Iterator[RawRow]:
    # Bytes, decoded line by line, so an encoding error names its own line.
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})", hint="Re-encode the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                yield RawRow(str(path), lineno, json.loads(line))
            except json.JSONDecodeError as exc:
                yield RawRow(str(path), lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}")


def _csv(path: Path) -> Iterator[RawRow]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, strict=True)  # an unclosed quote is an error, not a swallowed file
        try:
            for row in reader:
                if None in row:  # more fields than the header: the row is malformed, not the file
                    yield RawRow(str(path), reader.line_num, None, f"{len(row[None])} more fields than the header")
                    continue
                yield RawRow(str(path), reader.line_num, {k: (v if v != "" else None) for k, v in row.items()})
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}:{reader.line_num}: cannot parse CSV ({exc})", hint="Check quoting and encoding.") from None


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: cannot read Parquet ({exc})") from None
    n = 0
    for batch in table.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            n += 1
            yield RawRow(str(path), n, row)


def _hf(path: Path) -> Iterator[RawRow]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))  # memory-mapped Arrow: iterating does not load it whole
    splits = ds.values() if isinstance(ds, DatasetDict) else [ds]
    n = 0
    for split in splits:
        for batch in split.iter(batch_size=2048):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys)):
                n += 1
                yield RawRow(str(path), n, dict(zip(keys, values)))


def map_columns(row: dict[str, Any], columns: dict[str, str], fields: set[str]) -> dict[str, Any]:
    """Rename input columns to record fields; columns that are not record fields go to meta
    (provenance is kept, nothing is silently dropped). `meta` may arrive as a JSON string."""
    out: dict[str, Any] = {}
    used = set()
    for field in fields:
        column = columns.get(field, field)
        if column in row:
            out[field] = row[column]
            used.add(column)
    meta = out.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"meta": meta}
    meta = dict(meta) if isinstance(meta, dict) else ({} if meta is None else {"meta": meta})
    extra = {k: v for k, v in row.items() if k not in used}
    if extra:
        meta.setdefault("extra", {}).update(extra)
    out["meta"] = meta
    return out
