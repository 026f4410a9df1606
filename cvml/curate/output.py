"""What a curated dataset folder holds: Parquet per split, report.json/.md, a length
histogram PNG and manifest.json (sha256 of every input and split, recipe, code version).

The folder is its owner's only (0700) and so is every file in it (0600 from creation):
a dataset holds people's CVs, redacted or not.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from typing import IO, Any, Iterable

SPLITS = ("train", "validation", "test")
COLUMNS = ("id", "task", "source_text", "job_description", "target", "group", "meta")
REPORT_VERSION = 1
# Every file a dataset folder holds; each is created owner-only before anything writes it.
DATASET_FILES = (*(f"{s}.parquet" for s in SPLITS), "quarantine.jsonl", "removed.jsonl", "pii_index.jsonl",
                 "report.json", "report.md", "lengths.png", "manifest.json")


def quarantine_key(source: str, line: int) -> str:
    """What the PII index files a quarantined row without a group under: its ledger line."""
    return f"quarantine:{source}:{line}"


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) as a folder only its owner can enter (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:  # a folder an older cvml (or a user) made
        os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Replace `path` with an empty file only its owner can read: mode 0600 from creation, and
    a new inode, so an older file's wider mode does not carry over. Writers that open it with
    "w" (pyarrow, matplotlib, write_text) keep that mode."""
    os.close(_create_private(path))
    return path


def open_private(path: Path, mode: str = "w") -> IO:
    """`private_file(path)` opened for writing ("w" text, utf-8; "wb" bytes)."""
    fd = _create_private(path)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `path` whole or not at all: a private temporary file next to it, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open_private(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames and unlinks in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_private(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


class SplitWriter:
    """{split}.parquet written as rows arrive, in row groups of a fixed size (so the files
    depend on the rows only), and each split's (source, target) lengths for the report.
    Every split gets a file, even an empty one, so readers never guess."""

    ROW_GROUP = 65_536

    def __init__(self, out: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._schema = pa.schema([(c, pa.string()) for c in COLUMNS])
        self._writers = {s: pq.ParquetWriter(private_file(out / f"{s}.parquet"), self._schema) for s in SPLITS}
        self._columns: dict[str, list[list]] = {s: [[] for _ in COLUMNS] for s in SPLITS}
        self.counts = {s: 0 for s in SPLITS}
        self.lengths = {s: {"source": array("i"), "target": array("i")} for s in SPLITS}

    def add(self, split: str, values: list, n_src: int, n_tgt: int) -> None:
        """One row: its values in column order (meta as JSON text)."""
        columns = self._columns[split]
        for column, value in zip(columns, values):
            column.append(value)
        self.counts[split] += 1
        self.lengths[split]["source"].append(n_src)
        self.lengths[split]["target"].append(n_tgt)
        if len(columns[0]) == self.ROW_GROUP:
            self._flush(split)

    def close(self) -> None:
        for split in SPLITS:
            self._flush(split)
            self._writers[split].close()

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        columns = self._columns[split]
        if columns[0]:
            self._writers[split].write_table(pa.table(dict(zip(COLUMNS, columns)), schema=self._schema))
            self._columns[split] = [[] for _ in COLUMNS]


def write_report(
    out: Path, result, spec, lengths: dict, recipe: dict[str, Any] | None, *,
    cluster_sizes: Iterable[int] = (), cluster_examples: list[list[str]] = (),
    erasures: list[dict] | None = None, suppression: dict[str, Any] | None = None,
) -> dict[str, str]:
    """report.json, report.md, lengths.png and manifest.json; returns their paths.

    `cluster_sizes` are the sizes of the duplicate clusters, `cluster_examples` the ids of
    the first ones. `erasures` are the erasure events of the dataset this run replaced: the
    record of who was erased stays with the folder. `suppression` says what the suppression
    list removed."""
    from cvml.manifest import build_manifest, sha256_file, write_manifest

    report = {
        "report_version": REPORT_VERSION,
        **result.as_dict(),
        "duplicate_cluster_sizes": _histogram(cluster_sizes),
        "duplicate_cluster_examples": list(cluster_examples),
        "lengths": {s: {k: _summary(v) for k, v in d.items()} for s, d in lengths.items()},
    }
    files = {name: str(out / name) for name in ("report.json", "report.md", "lengths.png", "manifest.json")}
    for name in files:
        private_file(out / name)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    _plot_lengths(lengths, result.length_unit, out / "lengths.png")
    manifest = build_manifest(
        "dataset",
        inputs={f"input_{i}": p for i, p in enumerate(spec.inputs)}
        | {f"eval_set_{i}": p for i, p in enumerate(spec.decontaminate.eval_sets)},
        recipe=recipe or {"curate": spec.model_dump(mode="json")},
        seed=spec.split.seed,
        extra={
            "outputs": {s: {"path": f"{s}.parquet", "rows": result.kept[s], "sha256": sha256_file(out / f"{s}.parquet")}
                        for s in SPLITS},
            "counts": {"input_rows": result.input_rows, "kept": result.kept, "quarantined": result.quarantined,
                       "removed": result.removed},
            "erasures": list(erasures or []),
            "suppression": suppression or {"entries": 0, "rows_removed": 0},
        },
    )
    write_manifest(out, manifest)
    return files


def _histogram(values: Iterable[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def _summary(values: Iterable[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(values), "min": ordered[0], "p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1],
            "mean": round(sum(values) / len(values), 1)}


def _markdown(report: dict) -> str:
    lines = [
        f"# Curation report — {report['output']}",
        "",
        f"{report['input_rows']:,} input rows in {report['seconds']} s ({report['records_per_s']:,.0f} rows/s). "
        f"Books balance: {'yes' if report['balanced'] else '**NO**'}.",
        "",
        "| outcome | stage | rows |",
        "|---|---|---:|",
    ]
    for kind in ("quarantined", "removed", "kept"):
        for stage, n in report[kind].items():
            lines.append(f"| {kind} | {stage} | {n:,} |")
    lines += ["", "## PII redacted", "", "| type | spans |", "|---|---:|"]
    lines += [f"| {t} | {n:,} |" for t, n in sorted(report["pii"].items())] or ["| (none) | 0 |"]
    lines += ["", f"## Duplicates: {report['duplicate_clusters']} clusters", "",
              "| cluster size | clusters |", "|---:|---:|"]
    lines += [f"| {size} | {n} |" for size, n in report["duplicate_cluster_sizes"].items()]
    lines += ["", f"## Lengths ({report['length_unit']})", "", "| split | field | n | p50 | p95 | max |", "|---|---|---:|---:|---:|---:|"]
    for split, fields in report["lengths"].items():
        for name, s in fields.items():
            if s["n"]:
                lines.append(f"| {split} | {name} | {s['n']} | {s['p50']} | {s['p95']} | {s['max']} |")
    lines += ["", "Rows not kept are listed with their reason in `quarantine.jsonl` and `removed.jsonl`.", ""]
    return "\n".join(lines)


def _plot_lengths(lengths: dict, unit: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, field in zip(axes, ("source", "target")):
        for split in SPLITS:
            values = lengths[split][field]
            if values:
                ax.hist(values, bins=30, alpha=0.55, label=f"{split} ({len(values)})")
        ax.set_title(f"{field} length")
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rows")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
