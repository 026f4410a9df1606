"""Curation throughput on each engine, near-duplicate quality, and peak memory at 2M rows.

Generates seeded synthetic raw rows (with planted PII, exact and near duplicates,
malformed and low-quality rows) and runs the whole `cvml curate` pipeline on them (read,
schema, normalize, token-length limits with the tiny tokenizer when built, PII, filters,
dedup, split, Parquet + report + manifest) three times on the same rows: the local engine
with one worker, the local engine with one worker per core, and Ray Data on a local Ray
with as many CPUs. The three datasets must be identical (hashes compared). Duplicate
removal is scored against what was planted. Then 2,000,000 rows are curated with the
local engine while the memory of the whole process tree is sampled; the quality filters
(per-row CPU that holds nothing across rows) are off there to keep the run short.

Each run is a fresh process. The last line printed is one JSON object.

    python benchmarks/curate_throughput.py [--records 200000] [--rows-2m 2000000] [--workers N]
        [--tokenizer artifacts/tiny/base] [--no-ray]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rows-2m", type=int, default=2_000_000, help="Rows of the memory run (0 skips it).")
    parser.add_argument("--workers", type=int, default=None, help="Local processes and Ray CPUs; default the cores.")
    parser.add_argument("--tokenizer", default="artifacts/tiny/base", help="Tokenizer folder; words if absent.")
    parser.add_argument("--no-ray", action="store_true", help="Skip the Ray run.")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in its own process
    args = parser.parse_args()
    if args.one:
        return one_run(json.loads(args.one))

    from cvml.curate.engines import default_workers
    from cvml.tiny.synth import generate_records

    workers = args.workers or default_workers()
    tokenizer = args.tokenizer if Path(args.tokenizer).is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="cvml-curate-bench-"))
    os.environ["CVML_HOME"] = str(work / "home")  # the runs' keys and suppression list stay in here
    rows = generate_records(n_people=args.records // 4 + 1, seed=0)[: args.records]  # ~4.8 rows a person
    raw = work / "raw.jsonl"
    with raw.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    log(f"{len(rows):,} raw rows → {raw}")

    runs = {"1": {"workers": 1}, "workers": {"workers": workers}}
    if not args.no_ray:
        runs["ray"] = {"workers": workers, "engine": "ray"}
    done = {}
    for key, settings in runs.items():
        done[key] = run_child({"inputs": [str(raw)], "out": str(work / f"out-{key}"), "tokenizer": tokenizer, **settings})
        log(f"{key}: {done[key]['records_per_s']:,.0f} rows/s")
    hashes = {key: digest(work / f"out-{key}") for key in runs}
    first = done["workers"]["result"]

    big = {}
    if args.rows_2m:
        big_raw = write_many_rows(work / "raw-2m.jsonl", args.rows_2m)
        log(f"{args.rows_2m:,} raw rows → {big_raw}")
        big = run_child({"inputs": [str(big_raw)], "out": str(work / "out-2m"), "tokenizer": tokenizer,
                         "workers": workers, "filters": {"enabled": False}})
        log(f"2M: {big['records_per_s']:,.0f} rows/s, peak RSS {big['peak_rss_gb_all']:.2f} GB (all processes)")

    speed = {key: run["records_per_s"] for key, run in done.items()}
    print(json.dumps({
        "benchmark": "curate_throughput",
        "records": len(rows),
        "workers": workers,
        "cpus": os.cpu_count(),
        "length_unit": first["length_unit"],
        "records_per_s_1": speed["1"],
        "records_per_s_workers": speed["workers"],
        "records_per_s_ray": speed.get("ray"),
        "workers_speedup": round(speed["workers"] / speed["1"], 2),
        "ray_vs_local": round(speed["ray"] / speed["workers"], 2) if "ray" in speed else None,
        "ray_start_s": done["ray"]["ray_start_s"] if "ray" in done else None,
        # CPU seconds of each run (driver + worker processes; Ray's own processes not counted),
        # and the machine's load before it: on a shared machine wall-clock speedups need both.
        "cpu_s": {key: run["cpu_s"] for key, run in done.items()},
        "parallel_efficiency": round(done["1"]["cpu_s"] / done["workers"]["cpu_s"], 2),
        "load_before": {key: run["load_before"] for key, run in done.items()},
        "identical_outputs": len({json.dumps(h, sort_keys=True) for h in hashes.values()}) == 1,
        "seconds": {key: run["seconds"] for key, run in done.items()},
        "balanced": first["balanced"],
        "kept": first["kept"],
        "quarantined": first["quarantined"],
        "removed_by_stage": first["removed"],
        **duplicate_quality(rows, work / "out-workers"),
        "rows_2m": args.rows_2m or None,
        "peak_rss_gb_2m": round(big["peak_rss_gb_all"], 2) if big else None,
        "peak_rss_gb_2m_driver": round(big["peak_rss_gb_driver"], 2) if big else None,
        "records_per_s_2m": big.get("records_per_s"),
        "settings_2m": "local engine, filters off" if big else None,
    }))


def one_run(settings: dict) -> None:
    """Curate once in this process; print seconds, the result and this process's peak RSS."""
    from cvml.curate import curate
    from cvml.recipe import CurateSpec

    tokenizer, path = None, settings.pop("tokenizer")
    if path:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    out = settings.pop("out")
    ray_start = None
    if settings.get("engine") == "ray":  # a Ray already running, as on a cluster: its start is timed apart
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=settings["workers"], include_dashboard=False, logging_level="WARNING")
        ray_start = round(time.perf_counter() - started, 1)
    started, cpu = time.perf_counter(), _cpu_s()
    result = curate(CurateSpec(**settings), out, tokenizer=tokenizer)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": round(seconds, 1),
        "records_per_s": round(result.input_rows / seconds, 1),
        "cpu_s": round(_cpu_s() - cpu, 1),
        "ray_start_s": ray_start,
        "peak_rss_gb_driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
        "result": result.as_dict(),
    }))


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_child(settings: dict) -> dict:
    """`one_run` in a fresh process, sampling the RSS of its whole process tree (driver,
    worker processes, Ray's processes) twice a second."""
    import psutil

    load = os.getloadavg()[0]
    child = subprocess.Popen([sys.executable, __file__, "--one", json.dumps(settings)], stdout=subprocess.PIPE)
    tree = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            processes = [tree, *tree.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in processes))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.5)
    stdout = child.stdout.read().decode()
    if child.returncode:
        raise SystemExit(f"run {settings} failed with exit code {child.returncode}")
    run = json.loads(stdout.strip().splitlines()[-1])
    # Sampling can miss the driver's own peak, which the kernel keeps exactly.
    run["peak_rss_gb_all"] = max(peak / GB, run["peak_rss_gb_driver"])
    run["load_before"] = round(load, 2)
    return run


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except Exception:  # a process that ended between listing and reading
        return 0


def write_many_rows(path: Path, n: int) -> Path:
    """`n` synthetic rows, generated and written a chunk of people at a time (each chunk its
    own seed; ids and groups prefixed by the chunk, so they stay unique)."""
    from cvml.tiny.synth import generate_records

    written, chunk = 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < n:
            rows = generate_records(n_people=25_000, seed=100 + chunk)[: n - written]
            for row in rows:
                if "id" in row:
                    row["id"] = f"c{chunk}-{row['id']}"
                if isinstance(row.get("group"), str):
                    row["group"] = f"c{chunk}-{row['group']}"
                fh.write(json.dumps(row) + "\n")
            written += len(rows)
            chunk += 1
    return path


def digest(folder: Path) -> dict[str, str]:
    """sha256 of the splits and ledgers, and of the report less its timing."""
    report = json.loads((folder / "report.json").read_text())
    for key in ("seconds", "records_per_s", "output", "files"):
        report.pop(key)
    hashes = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
              for name in ("train.parquet", "validation.parquet", "test.parquet", "quarantine.jsonl", "removed.jsonl")}
    return {**hashes, "report": hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()}


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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
