"""Streaming readers for raw inputs (JSONL, CSV, Parquet, saved `datasets` folders), in shards.

An input is cut into shards that a worker (a process, a Ray actor) reads on its own: line
ranges of JSONL and CSV files (cut at record boundaries), row ranges of Parquet row groups
and of dataset splits. Every shard numbers its rows as the whole file would, so a malformed
row is quarantined with the same line number whichever worker read it. Rows are yielded
one at a time (Parquet and Arrow in batches), never collected, so inputs larger than memory
curate fine. A row that cannot be parsed is yielded with its error; a file that cannot be
read at all is a DataError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from cvml.errors import DataError

_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_BLOCK = 1 << 24  # bytes read at a time while finding line ends


@dataclass
class RawRow:
    source: str  # file (or folder) it came from
    line: int  # line (JSONL/CSV) or row number (Parquet/Arrow), 1-based
    row: Any  # the parsed row, or None when it could not be parsed
    error: str | None = None


@dataclass(frozen=True)
class Shard:
    """A slice of one input: bytes [start, stop) of a JSONL or CSV file, or rows
    [start, stop) of a Parquet row group or a dataset split (`part`). `first` is the line
    or row number of its first line or row in the whole input."""

    path: str
    fmt: str
    start: int
    stop: int
    first: int
    part: int = 0
    fieldnames: tuple[str, ...] | None = None  # a CSV shard's header


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            return "hf"
        raise DataError(f"{path} is a folder but not a saved `datasets` dataset", hint="Give files, or a save_to_disk folder.")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unsupported input format: {path}", hint="Use .jsonl, .csv, .parquet or a `datasets` folder.")
    return fmt


def plan_shards(inputs: Iterable[str | Path], rows: int) -> Iterator[Shard]:
    """Shards of about `rows` lines or rows each, input after input, in input order.

    Raises:
        DataError: an input is missing, of an unknown format, or (CSV) cannot be parsed.
    """
    for name in inputs:
        path = Path(name)
        if not path.exists():
            raise DataError(f"input not found: {path}", hint="Check curate.inputs (or --input).")
        fmt = detect_format(path)
        yield from {"jsonl": _jsonl_shards, "csv": _csv_shards, "parquet": _parquet_shards, "hf": _hf_shards}[fmt](path, rows)


def read_shard(shard: Shard) -> Iterator[RawRow]:
    """Every row of one shard, streamed."""
    path = Path(shard.path)
    if shard.fmt == "jsonl":
        return _jsonl(path, shard)
    if shard.fmt == "csv":
        return _csv(path, shard)
    if shard.fmt == "parquet":
        return _parquet(path, shard)
    return _hf(path, shard)


def _jsonl_shards(path: Path, rows: int) -> Iterator[Shard]:
    import numpy as np

    start, first, lines, offset = 0, 1, 0, 0
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + offset + 1
            # The file's (lines + k + 1)-th line ends at ends[k]; every `rows`-th one closes a shard.
            for k in range(rows - lines % rows - 1, len(ends), rows):
                yield Shard(str(path), "jsonl", start, int(ends[k]), first)
                start, first = int(ends[k]), lines + k + 2
            lines += len(ends)
            offset += len(block)
    if offset > start:
        yield Shard(str(path), "jsonl", start, offset, first)


def _jsonl(path: Path, shard: Shard) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        fh.seek(shard.start)
        data = fh.read(shard.stop - shard.start)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    # Bytes, decoded line by line, so an encoding error names its own line.
    for lineno, raw in enumerate(lines, start=shard.first):
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


def _csv_shards(path: Path, rows: int) -> Iterator[Shard]:
    """CSV records may span lines (quoted newlines): the file is parsed once here to cut
    it at record boundaries. Lines are split as the reader splits them (newline="")."""
    pos = 0

    def lines() -> Iterator[str]:
        nonlocal pos
        for line in fh:
            pos += len(line.encode("utf-8"))
            yield line

    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(lines(), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            start, first, n = pos, reader.line_num + 1, 0
            for _ in reader:
                n += 1
                if n % rows == 0:
                    yield Shard(str(path), "csv", start, pos, first, fieldnames=tuple(header))
                    start, first = pos, reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}:{reader.line_num}: cannot parse CSV ({exc})", hint="Check quoting and encoding.") from None
    if pos > start:
        yield Shard(str(path), "csv", start, pos, first, fieldnames=tuple(header))


def _csv(path: Path, shard: Shard) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        fh.seek(shard.start)
        data = fh.read(shard.stop - shard.start)
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    reader = csv.DictReader(text, fieldnames=list(shard.fieldnames), strict=True)
    before = shard.first - 1  # lines of the file before this shard
    try:
        for row in reader:
            line = before + reader.line_num
            if None in row:  # more fields than the header: the row is malformed, not the file
                yield RawRow(str(path), line, None, f"{len(row[None])} more fields than the header")
                continue
            yield RawRow(str(path), line, {k: (v if v != "" else None) for k, v in row.items()})
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}:{before + reader.line_num}: cannot parse CSV ({exc})", hint="Check quoting and encoding.") from None


def _parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: cannot read Parquet ({exc})") from None


def _parquet_shards(path: Path, rows: int) -> Iterator[Shard]:
    meta = _parquet_file(path).metadata
    before = 0
    for group in range(meta.num_row_groups):
        n = meta.row_group(group).num_rows
        for start in range(0, n, rows):
            yield Shard(str(path), "parquet", start, min(start + rows, n), before + start + 1, part=group)
        before += n


def _parquet(path: Path, shard: Shard) -> Iterator[RawRow]:
    # Row groups can hold a million rows: stream the group, skipping to the shard's rows.
    at, n = 0, shard.first
    for batch in _parquet_file(path).iter_batches(batch_size=2048, row_groups=[shard.part]):
        lo, hi = max(shard.start - at, 0), min(shard.stop - at, batch.num_rows)
        at += batch.num_rows
        if lo >= hi:
            if at >= shard.stop:
                break
            continue
        for row in batch.slice(lo, hi - lo).to_pylist():
            yield RawRow(str(path), n, row)
            n += 1
        if at >= shard.stop:
            break


def _hf_splits(path: Path) -> list:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))  # memory-mapped Arrow: slicing does not load it whole
    return list(ds.values()) if isinstance(ds, DatasetDict) else [ds]


def _hf_shards(path: Path, rows: int) -> Iterator[Shard]:
    before = 0
    for part, split in enumerate(_hf_splits(path)):
        for start in range(0, len(split), rows):
            yield Shard(str(path), "hf", start, min(start + rows, len(split)), before + start + 1, part=part)
        before += len(split)


def _hf(path: Path, shard: Shard) -> Iterator[RawRow]:
    batch = _hf_splits(path)[shard.part][shard.start:shard.stop]
    keys = list(batch)
    for n, values in enumerate(zip(*(batch[k] for k in keys)), start=shard.first):
        yield RawRow(str(path), n, dict(zip(keys, values)))


def map_columns(row: dict[str, Any], columns: dict[str, str], fields: Iterable[str]) -> dict[str, Any]:
    """Rename input columns to record fields; columns that are not record fields go to meta
    (provenance is kept, nothing is silently dropped). `meta` may arrive as a JSON string.
    `fields` is ordered (not a set), so every process writes the same key order."""
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
