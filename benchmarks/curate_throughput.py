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
    rows = generate_records(n_people=max(1, round(args.records / 4.875)), seed=0)[: args.records]
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
    quality = duplicate_quality(rows, work / "out" / "removed.jsonl")
    print(json.dumps({
        "benchmark": "curate_throughput",
        "records": len(rows),
        "seconds": round(seconds, 2),
        "records_per_s": round(len(rows) / seconds, 1),
        "length_unit": result.length_unit,
        "balanced": result.balanced,
        "kept": result.kept,
        "quarantined": result.quarantined,
        "removed": result.removed,
        **quality,
    }))


def duplicate_quality(rows: list[dict], removed_ledger: Path) -> dict:
    """Recall: planted near (exact) duplicates removed as duplicates. Precision: rows removed
    as near duplicates that were planted duplicates of either kind."""
    planted = {r.get("id"): set((r.get("meta") or {}).get("planted", [])) for r in rows}
    removed = [json.loads(line) for line in removed_ledger.read_text(encoding="utf-8").splitlines()]
    as_dup = {e["id"] for e in removed if e["stage"].startswith("dedup")}
    as_near = [e["id"] for e in removed if e["stage"] == "dedup_near"]
    # Planted rows that an earlier stage removed (e.g. a near copy of a filtered row) cannot be
    # found by dedup; they are left out of the recall denominator and counted separately.
    elsewhere = {e["id"] for e in removed if not e["stage"].startswith("dedup")}
    near = [i for i, tags in planted.items() if "dup:near" in tags and i not in elsewhere]
    exact = [i for i, tags in planted.items() if "dup:exact" in tags and i not in elsewhere]
    dup_tags = {"dup:near", "dup:exact"}
    return {
        "near_dup_recall": round(sum(i in as_dup for i in near) / max(1, len(near)), 4),
        "near_dup_precision": round(sum(bool(planted.get(i, set()) & dup_tags) for i in as_near) / max(1, len(as_near)), 4),
        "exact_dup_recall": round(sum(i in as_dup for i in exact) / max(1, len(exact)), 4),
        "planted_near": len(near),
        "planted_exact": len(exact),
        "removed_as_near": len(as_near),
    }


if __name__ == "__main__":
    main()
