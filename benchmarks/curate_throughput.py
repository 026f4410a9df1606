"""Curation throughput and near-duplicate quality on 100,000 synthetic records.

Generates seeded synthetic raw rows (with planted PII, exact and near duplicates,
malformed and low-quality rows), runs the whole `cvml curate` pipeline on them (read,
schema, normalize, token-length limits with the tiny tokenizer when built, PII, filters,
dedup, split, Parquet + report + manifest), and scores duplicate removal against what was
planted. The last line printed is one JSON object.

    python benchmarks/curate_throughput.py [--records 100000] [--tokenizer artifacts/tiny/base]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tokenizer", default="artifacts/tiny/base", help="Tokenizer folder; words if absent.")
    args = parser.parse_args()

    from cvml.curate import curate
    from cvml.recipe import CurateSpec
    from cvml.tiny.synth import generate_records

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="cvml-curate-bench-"))
    rows = generate_records(n_people=args.records // 4 + 1, seed=0)[: args.records]  # ~4.8 rows a person
    raw = work / "raw.jsonl"
    with raw.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    log(f"{len(rows):,} raw rows → {raw}")

    tokenizer = None
    if Path(args.tokenizer).is_dir():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    started = time.perf_counter()
    result = curate(CurateSpec(inputs=[str(raw)]), work / "out", tokenizer=tokenizer)
    seconds = time.perf_counter() - started
    quality = duplicate_quality(rows, work / "out")
    print(json.dumps({
        "benchmark": "curate_throughput",
        "records": len(rows),
        "seconds": round(seconds, 2),
        "records_per_s": round(len(rows) / seconds, 1),
        "length_unit": result.length_unit,
        "balanced": result.balanced,
        "kept": result.kept,
        "quarantined": result.quarantined,
        "removed_by_stage": result.removed,
        **quality,
    }))


def duplicate_quality(rows: list[dict], folder: Path) -> dict:
    """Score the run's duplicate removal against the planted duplicates with dedup's own
    scorer (see cvml.curate.dedup.near_dup_quality for the definitions), rebuilding the
    dedup outcome from the dataset's ledgers."""
    import pyarrow.parquet as pq

    from cvml.curate.dedup import DedupResult, Removal, near_dup_quality
    from cvml.curate.output import SPLITS
    from cvml.data.records import validate_row

    records = [r for r in (validate_row(row)[0] for row in rows) if r is not None]
    kept_ids = {i for s in SPLITS for i in pq.read_table(folder / f"{s}.parquet", columns=["id"])["id"].to_pylist()}
    ledger = [json.loads(line) for line in (folder / "removed.jsonl").read_text(encoding="utf-8").splitlines()]
    removed = [
        Removal(id=e["id"], reason=e["reason"], kept_id=e["kept_id"], kind=e["stage"].removeprefix("dedup_"), similarity=0.0)
        for e in ledger if e["stage"].startswith("dedup")
    ]
    result = DedupResult(kept=[r for r in records if r.id in kept_ids], removed=removed, clusters=[])
    return near_dup_quality(records, result)


if __name__ == "__main__":
    main()
