"""Request log on Postgres vs SQLite: rows written per second, and whether it slows serving.

One run starts its own throwaway PostgreSQL (scripts/pg_server.py, as the tests do; stopped
at the end whatever happens), creates the cvml schema in it, and measures:

1. Log throughput. `--rows` realistic request-log rows (chat texts with a name, an email and
   a phone number that the redactor replaces, token counts, timings, a user id that gets
   hashed) go to `RequestLog.record()` one after the other, then `flush()`; rows/s = rows /
   (first record → flush done), with the log in a temp SQLite file and in Postgres, each with
   `log_text="redacted"` (the default) and `"none"` (no redaction: where the time goes).
   Every run checks that all rows landed and that the text is redacted. The writer thread's
   time is split into building rows (redaction, hashing) and inserting them (transactions),
   by timing RequestLog's private `_row` / `_write`. `--passes` repeats the four runs,
   alternating their order; the median pass is reported. `--prototype` also measures
   changes to the write path, monkeypatched in this process only: one `INSERT … SELECT FROM
   unnest(arrays)` statement per batch on Postgres, 1024-row batches, and a SQLite engine
   that keeps its connection between batches.

2. Serving throughput. `cvml serve` on the tiny model twice, in subprocesses up at the same
   time: one logging to SQLite (a file), one to the Postgres on this machine (`--log-db URL`;
   its CPU competes with serving here, unlike a remote database's); the same flags otherwise
   (default `--log-text redacted`; `--threads` OMP threads each, default 1: on a busy 2-core
   box torch's default served ~10x slower, its threads spinning against each other).
   `--clients` closed-loop clients (the official `openai` client, httpx if it is missing)
   send non-streaming /v1/chat/completions requests (synthetic CV prompts, greedy,
   `max_tokens` with `ignore_eos`, so every answer is exactly that long), `--requests` per
   client per round. After an untimed warm-up on each, the rounds alternate
   the servers (SQLite, Postgres, Postgres, SQLite, ...) to cancel drift on a shared machine;
   `--sessions` repeats this with a fresh pair of servers started in swapped order. Output
   tokens/s per server = its tokens / its time over all rounds; `serve_ratio_pg_vs_sqlite` =
   Postgres / SQLite, with a 95% interval from the per-round ratios. After the servers drain,
   each log must hold one row per request sent.

Model: `--model`, else artifacts/tiny/base (the demo model; built there with
`build_base_model(seed=0)` when missing, about 10 minutes on 2 cores, once), except that
`--quick` without artifacts/tiny/base builds a much smaller model (under a minute, cached in the
temp folder). Progress goes to stderr; the last stdout line is one JSON object.

    python benchmarks/store_throughput.py [--rows 20000] [--clients 16] [--sessions 2] [--rounds 8]
                                          [--model PATH] [--skip-serve] [--prototype] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "artifacts" / "tiny" / "base"
QUICK_MODEL = Path(tempfile.gettempdir()) / "store-bench" / "quick-base"
PG_TARGET_ROWS_PER_S = 5000
SERVE_RATIO_TARGET = 0.95
BASELINE = "cvml serve with the request log on SQLite (a file), same model, flags and load, interleaved rounds"

# Realistic rows: a CV header and bullet in, a rewrite out; the person changes with the row.
FIRST = ("Jane", "Omar", "Li", "Priya", "Carlos", "Anna", "Kwame", "Sofia", "Mateo", "Yuki")
LAST = ("Doe", "Haddad", "Wei", "Sharma", "Ruiz", "Novak", "Mensah", "Rossi", "Garcia", "Tanaka")
ROLES = ("Data Analyst", "HR Specialist", "Backend Engineer", "Product Manager", "Nurse")
INPUT = "{name} — {role}\nEmail {email}, phone {phone}\nBuilt dashboards for the sales team of {n} people."
OUTPUT = "Built {k} Tableau dashboards used by {n} sales staff. Contact {name} at {email}."


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A missing or broken input, reported in one line instead of a traceback."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="Request-log rows per log-throughput run.")
    parser.add_argument("--passes", type=int, default=3, help="Repeats of the four log runs (median reported).")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent closed-loop clients per server.")
    parser.add_argument("--sessions", type=int, default=2, help="Fresh pairs of servers, one after the other.")
    parser.add_argument("--rounds", type=int, default=8, help="Measured rounds per server per session.")
    parser.add_argument("--requests", type=int, default=10, help="Requests per client per round.")
    parser.add_argument("--max-tokens", type=int, default=32, help="Output tokens per request (EOS ignored).")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/torch threads per server (0: torch's default, which oversubscribes a small box).")
    parser.add_argument("--log-text", default="redacted", choices=("redacted", "none"), help="Servers' --log-text.")
    parser.add_argument("--model", help=f"Model folder (default {DEMO_MODEL.relative_to(ROOT)}, built if missing).")
    parser.add_argument("--skip-serve", action="store_true", help="Measure the log throughput only.")
    parser.add_argument("--prototype", action="store_true", help="Also measure prototyped faster write paths.")
    parser.add_argument("--quick", action="store_true", help="Under a minute: fewer rows, rounds and requests.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.passes = min(args.rows, 4000), 1
        args.sessions, args.rounds, args.requests = 1, min(args.rounds, 4), min(args.requests, 4)

    from cvml.errors import CvmlError

    # SIGTERM unwinds like Ctrl+C, so the servers and PostgreSQL are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    try:
        summary = run(args)
    except BenchError as exc:
        log(f"store_throughput: {exc}")
        sys.exit(2)
    except CvmlError as exc:
        log(f"store_throughput: {exc.message}" + (f" (hint: {exc.hint})" if getattr(exc, "hint", None) else ""))
        sys.exit(1)
    except KeyboardInterrupt:
        log("store_throughput: interrupted")
        sys.exit(130)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args) -> dict:
    load_before = _loadavg()
    _check_drivers()
    model = None if args.skip_serve else _model_path(args)  # first: a build must not keep a server idle
    pg_server = _load_pg_server()
    log("starting a throwaway PostgreSQL ...")
    try:
        server = pg_server.start()
    except pg_server.PgServerError as exc:
        raise BenchError(f"cannot start PostgreSQL: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        log(f"PostgreSQL {server.version} on 127.0.0.1:{server.port}; creating the cvml schema")
        _create_schema(server.url)
        summary = {
            "benchmark": "store_throughput",
            "quick": args.quick,
            "postgres": server.version,
            "cpus": os.cpu_count(),
            "load_avg_1m_before": load_before,
        }
        summary.update(_log_throughput(server.url, work, args))
        if args.skip_serve:
            summary.update({"serve_ratio_pg_vs_sqlite": None, "baseline": BASELINE, "rounds": 0,
                            "clients": args.clients, "serve": "skipped (--skip-serve)"})
        else:
            summary.update(_serve_throughput(server.url, model, work, args))
        summary["load_avg_1m_after"] = _loadavg()
        summary["targets"] = {
            f"pg_log_rows_per_s_ge_{PG_TARGET_ROWS_PER_S}": _at_least(summary["pg_log_rows_per_s"], PG_TARGET_ROWS_PER_S),
            f"serve_ratio_pg_vs_sqlite_ge_{SERVE_RATIO_TARGET}": _at_least(
                summary.get("serve_ratio_pg_vs_sqlite"), SERVE_RATIO_TARGET
            ),
        }
        return summary
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        log("PostgreSQL stopped")


# ---------------------------------------------------------------------------- setup


def _check_drivers() -> None:
    if importlib.util.find_spec("psycopg") is None:
        raise BenchError("psycopg is not installed: pip install 'psycopg[binary]>=3.2'")


def _load_pg_server():
    """scripts/pg_server.py, loaded by path as tests/conftest.py does (scripts/ is no package)."""
    path = ROOT / "scripts" / "pg_server.py"
    if not path.is_file():
        raise BenchError(f"{path} is missing")
    spec = importlib.util.spec_from_file_location("cvml_pg_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _create_schema(url: str) -> None:
    """`cvml db upgrade --url URL`: Postgres is never migrated implicitly."""
    from cvml.cli.db import _targets
    from cvml.storage.admin import upgrade

    upgrade(url, _targets())


def _model_path(args) -> Path:
    if args.model:
        path = Path(args.model)
        if not (path / "config.json").is_file():
            raise BenchError(f"--model {path}: no config.json there (build one with `cvml tiny model --out {path}`)")
        return path
    if (DEMO_MODEL / "config.json").is_file():
        return DEMO_MODEL
    from cvml._quiet import quiet_import_noise, quiet_libraries

    quiet_import_noise()
    quiet_libraries()
    from cvml.tiny.model import TinySpec, build_base_model

    if args.quick:
        target, spec = QUICK_MODEL, TinySpec(
            vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1,
            pretrain_epochs=1.0, corpus_docs=300, pretrain_batch=8,
        )  # fmt: skip
        if (target / "config.json").is_file():
            return target
        log(f"building a small model at {target} (under a minute) ...")
    else:
        target, spec = DEMO_MODEL, TinySpec()
        log(f"building the demo tiny model at {target} (about 10 minutes on 2 cores, once; "
            "not counted in the figures) ...")
    # Built beside the target and renamed into place, so an interrupted build is never reused.
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
    try:
        build_base_model(building, seed=0, spec=spec)
        if not (target / "config.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _at_least(value, bound):
    return None if value is None else value >= bound


# ---------------------------------------------------------------------------- log throughput


def _entries(n: int, tag: str) -> list:
    from cvml.serve.requestlog import LogEntry

    out = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        name, email = f"{first} {last}", f"{first.lower()}.{last.lower()}{i % 97}@example.com"
        phone = f"+1 415 555 {i % 10_000:04d}"
        people, dashboards = 10 + i % 40, 2 + i % 11
        out.append(LogEntry(
            request_id=f"{tag}-{i:06d}", endpoint="/v1/chat/completions", status=200, experiment="store-bench",
            variant="ab"[i % 2], model_ref="tiny@prod", model_version="tiny@1", user_id=f"user-{i % 500}",
            task="rewrite_bullet", finish_reason="length", prompt_tokens=120 + i % 50, completion_tokens=32,
            queue_s=0.001, ttft_s=0.04, e2e_s=0.35, itl_mean_s=0.01,
            input_text=INPUT.format(name=name, role=ROLES[i % len(ROLES)], email=email, phone=phone, n=people),
            output_text=OUTPUT.format(k=dashboards, n=people, name=name, email=email),
        ))  # fmt: skip
    return out


class _WriterClock:
    """Times RequestLog's writer thread: whole batches (`_write`) and row building (`_row`,
    where redaction and the user-id hash happen); insert = batches - rows. Patches private
    methods, so when they are gone the split is just not reported."""

    def __init__(self):
        self.write_s = self.row_s = self.write_cpu_s = 0.0
        self.batches = 0
        self._saved = None

    def __enter__(self):
        from cvml.serve.requestlog import RequestLog

        if not (hasattr(RequestLog, "_write") and hasattr(RequestLog, "_row")):
            return self
        write, row = RequestLog._write, RequestLog._row
        clock = self

        def timed_write(log, batch, redactor):
            t0, cpu0 = time.perf_counter(), time.thread_time()
            try:
                return write(log, batch, redactor)
            finally:
                clock.write_s += time.perf_counter() - t0
                clock.write_cpu_s += time.thread_time() - cpu0
                clock.batches += 1

        def timed_row(log, entry, at, redactor):
            t0 = time.perf_counter()
            try:
                return row(log, entry, at, redactor)
            finally:
                clock.row_s += time.perf_counter() - t0

        self._saved = (write, row)
        RequestLog._write, RequestLog._row = timed_write, timed_row
        return self

    def __exit__(self, *exc):
        from cvml.serve.requestlog import RequestLog

        if self._saved is not None:
            RequestLog._write, RequestLog._row = self._saved

    def split(self, rows: int) -> dict | None:
        if self._saved is None or not self.batches:
            return None
        return {
            "writer_us_per_row": round(self.write_s / rows * 1e6, 1),
            # The writer thread's own CPU time: its wall time on an idle core, less database waits.
            "writer_cpu_us_per_row": round(self.write_cpu_s / rows * 1e6, 1),
            "build_rows_us_per_row": round(self.row_s / rows * 1e6, 1),  # redaction + hashing
            "insert_us_per_row": round((self.write_s - self.row_s) / rows * 1e6, 1),  # transactions + driver
            "batches": self.batches,
            "rows_per_batch": round(rows / self.batches, 1),
        }


def _one_log_run(location: str, log_text: str, rows: int, tag: str) -> dict:
    from cvml.serve.requestlog import RequestLog

    entries = _entries(rows, tag)
    since = datetime.now(timezone.utc)
    log_ = RequestLog(location, log_text=log_text)  # opened (schema, secret) before the clock starts
    try:
        with _WriterClock() as clock:
            t0 = time.perf_counter()
            for entry in entries:
                log_.record(entry)
            queued = time.perf_counter() - t0
            log_.flush()
            seconds = time.perf_counter() - t0
        writer = getattr(log_, "_writer", None)
        writer_alive = writer is None or writer.is_alive()
        failed = log_.failed_writes
    finally:
        log_.close()
    with RequestLog(location, log_text=log_text) as reader:
        stored = reader.stats(since=since)["requests"]
        sample = reader.query(since=since, limit=1)
    if not writer_alive or failed or stored != rows:
        raise BenchError(f"the request log at {log_.url.display} stored {stored} of {rows} rows "
                         f"({failed} failed writes, writer {'alive' if writer_alive else 'dead'}); see the log above")
    text = sample[0]["input_text"] if sample else None
    if log_text == "redacted" and (text is None or "@" in text or "<EMAIL_1>" not in text):
        raise BenchError(f"expected a redacted input text, found {text!r}")
    if log_text == "none" and text is not None:
        raise BenchError(f"log_text none stored text: {text!r}")
    return {
        "rows_per_s": round(rows / seconds, 1),
        "seconds": round(seconds, 3),
        "record_us_per_row": round(queued / rows * 1e6, 2),  # what a request pays
        "writer": clock.split(rows),
    }


def _log_throughput(pg_url: str, work: Path, args) -> dict:
    configs = [("sqlite", "redacted"), ("postgres", "redacted"), ("postgres", "none"), ("sqlite", "none")]
    passes: list[dict[str, dict]] = []
    for p in range(args.passes):
        results = {}
        for backend, log_text in configs if p % 2 == 0 else configs[::-1]:
            location = pg_url if backend == "postgres" else str(work / f"log-{p}-{log_text}.db")
            result = _one_log_run(location, log_text, args.rows, f"p{p}-{backend}-{log_text}")
            results[f"{backend}_{log_text}"] = result
            split = result["writer"]
            detail = (f"  (writer {split['writer_us_per_row']} us/row, {split['writer_cpu_us_per_row']} CPU: rows "
                      f"{split['build_rows_us_per_row']}, insert {split['insert_us_per_row']}; "
                      f"{split['rows_per_batch']:.0f} rows/batch)") if split else ""
            log(f"log pass {p + 1}/{args.passes} {backend:8s} log_text={log_text:8s} "
                f"{result['rows_per_s']:9,.0f} rows/s{detail}")
        passes.append(results)

    def median_run(key: str) -> dict:
        ordered = sorted((r[key] for r in passes), key=lambda r: r["rows_per_s"])
        return ordered[(len(ordered) - 1) // 2]

    runs = {key: median_run(key) for key in passes[0]}
    out = {
        "rows": args.rows,
        "passes": args.passes,
        "pg_log_rows_per_s": runs["postgres_redacted"]["rows_per_s"],
        "sqlite_log_rows_per_s": runs["sqlite_redacted"]["rows_per_s"],
        "pg_log_rows_per_s_no_text": runs["postgres_none"]["rows_per_s"],
        "sqlite_log_rows_per_s_no_text": runs["sqlite_none"]["rows_per_s"],
        "log_runs": runs,
        "log_passes_rows_per_s": {key: [r[key]["rows_per_s"] for r in passes] for key in runs},
    }
    if args.prototype:
        out["prototype"] = _prototypes(pg_url, work, args)
    return out


# ---------------------------------------------------------------------------- prototypes


def _prototypes(pg_url: str, work: Path, args) -> dict:
    """Faster write paths, patched into this process only (the code under test is unchanged)."""
    from cvml.serve import requestlog

    variants = {
        "postgres_batch_1024": ("postgres", _patch_batch(requestlog, 1024)),
        "postgres_unnest": ("postgres", _patch_unnest(requestlog)),
        "postgres_unnest_batch_1024": ("postgres", _combine(_patch_unnest(requestlog), _patch_batch(requestlog, 1024))),
        "sqlite_kept_connection": ("sqlite", _patch_sqlite_pool()),
    }
    out: dict[str, dict] = {}
    for name, (backend, patch) in variants.items():
        for log_text in ("redacted", "none"):
            location = pg_url if backend == "postgres" else str(work / f"proto-{name}-{log_text}.db")
            with patch():
                result = _one_log_run(location, log_text, args.rows, f"proto-{name}-{log_text}")
            out[f"{name}_{log_text}"] = result
            log(f"prototype {name:28s} log_text={log_text:8s} {result['rows_per_s']:9,.0f} rows/s")
    return out


def _patch_batch(requestlog, size: int):
    from contextlib import contextmanager

    @contextmanager
    def patch():
        saved, requestlog._BATCH = requestlog._BATCH, size
        try:
            yield
        finally:
            requestlog._BATCH = saved

    return patch


def _patch_unnest(requestlog):
    """One `INSERT ... SELECT * FROM unnest(col1[], col2[], ...)` per batch on Postgres: one
    statement and one round trip for the whole batch, instead of psycopg's executemany
    (a pipelined INSERT per row, each bound through SQLAlchemy); no temp table and no
    prepared statement, so it still works behind a transaction pooler."""
    from contextlib import contextmanager

    from cvml.errors import CvmlError
    from cvml.serve.requestlog import RequestLog

    ddl = " ".join(s for m in requestlog._MIGRATIONS for s in m)
    types = {m.group(1): m.group(2) for m in re.finditer(r"(\w+) (TEXT|INTEGER|REAL)\b", ddl)}
    pg_types = {"TEXT": "text", "INTEGER": "bigint", "REAL": "float8"}
    columns = requestlog._COLUMNS
    sql = (
        f"INSERT INTO requests ({', '.join(columns)}) SELECT * FROM unnest("
        + ", ".join(f"CAST(? AS {pg_types[types[c]]}[])" for c in columns)
        + ") ON CONFLICT (request_id) DO NOTHING"
    )
    original = RequestLog._write

    def write(log_, batch, redactor):
        if log_._db.backend != "postgresql":
            return original(log_, batch, redactor)
        rows = []
        for entry, at in batch:
            try:
                rows.append(log_._row(entry, at, redactor))
            except Exception:  # noqa: BLE001 - as RequestLog._write: one bad entry costs only its row
                log_.failed_writes += 1
        if not rows:
            return
        try:
            with log_._db.write() as tx:
                tx.execute(sql, [list(column) for column in zip(*rows)])
        except CvmlError as exc:
            log_.failed_writes += len(rows)
            log(f"prototype unnest insert failed: {exc.message}")

    @contextmanager
    def patch():
        RequestLog._write = write
        try:
            yield
        finally:
            RequestLog._write = original

    return patch


def _patch_sqlite_pool():
    """SQLite engines keep their connection between batches (QueuePool instead of NullPool):
    closing the last connection of a WAL database checkpoints the WAL into the file, once
    per batch today."""
    from contextlib import contextmanager

    from sqlalchemy.pool import QueuePool

    from cvml.storage import database

    @contextmanager
    def patch():
        saved, database.NullPool = database.NullPool, QueuePool
        try:
            yield
        finally:
            database.NullPool = saved

    return patch


def _combine(*patches):
    from contextlib import ExitStack, contextmanager

    @contextmanager
    def patch():
        with ExitStack() as stack:
            for p in patches:
                stack.enter_context(p())
            yield

    return patch


# ---------------------------------------------------------------------------- serve throughput


def _serve_throughput(pg_url: str, model: Path, work: Path, args) -> dict:
    prompts = _prompts(model, args)
    rounds: list[dict] = []
    logged: dict[str, int] = {"sqlite": 0, "postgres": 0}
    flags = ""
    for session in range(args.sessions):
        # A fresh pair of processes per session, launched in swapped order, so that what one
        # process happens to get (placement, memory layout) does not decide the ratio.
        names = ("sqlite", "postgres") if session % 2 == 0 else ("postgres", "sqlite")
        logs = {"sqlite": str(work / f"serve-{session}" / "requests.db"), "postgres": pg_url}
        servers = {name: _Server(name, model, logs[name], work / f"serve-{session}", args) for name in names}
        since = datetime.now(timezone.utc)
        asks = {}
        try:
            for server in servers.values():
                server.launch()  # both load at once
            for server in servers.values():
                server.wait_ready()
                log(f"session {session + 1}/{args.sessions}: cvml serve ({server.name} log) ready at {server.url}")
            flags = servers["sqlite"].description.replace(logs["sqlite"], "FILE")
            asks = {name: _asker(server, args) for name, server in servers.items()}
            for name in names:
                warm = _closed_loop(args.clients, 1, prompts, asks[name])
                servers[name].sent += warm["requests"]
                if warm["errors"]:
                    raise BenchError(f"the {name}-log server failed its warm-up: {warm['first_error']}")
            for _ in range(args.rounds):
                order = names if (len(rounds) % 2 == 0) else names[::-1]
                figures = {}
                for name in order:
                    result = _closed_loop(args.clients, args.requests, prompts, asks[name])
                    servers[name].sent += result["requests"]
                    if result["errors"]:
                        raise BenchError(f"{result['errors']} request(s) to the {name}-log server failed: "
                                         f"{result['first_error']}")
                    figures[name] = result
                ratio = figures["postgres"]["tokens_per_s"] / figures["sqlite"]["tokens_per_s"]
                rounds.append({"session": session + 1, "order": list(order), "sqlite": figures["sqlite"],
                               "postgres": figures["postgres"], "ratio_pg_vs_sqlite": round(ratio, 3)})
                log(f"round {len(rounds)}/{args.sessions * args.rounds} ({order[0]} first): sqlite "
                    f"{figures['sqlite']['tokens_per_s']:7.1f} tok/s, postgres {figures['postgres']['tokens_per_s']:7.1f} "
                    f"tok/s, ratio {ratio:.3f}")
        finally:
            for ask in asks.values():
                ask.close()
            for server in servers.values():
                server.stop()  # SIGTERM: drain, then the log writes what is queued and closes
        for name, server in servers.items():
            found = _logged_rows(server.log_db, since)
            if found != server.sent:
                raise BenchError(f"the {name}-log server logged {found} of {server.sent} requests "
                                 f"(server log: {server.tail()})")
            logged[name] += found

    def total(name: str) -> dict:
        tokens = sum(r[name]["output_tokens"] for r in rounds)
        wall = sum(r[name]["wall_s"] for r in rounds)
        e2e = statistics.median(x for r in rounds for x in r[name]["e2e_s"])
        return {"tokens_per_s": round(tokens / wall, 1), "e2e_p50_s": round(e2e, 4)}

    sqlite, postgres = total("sqlite"), total("postgres")
    for r in rounds:
        for name in ("sqlite", "postgres"):
            r[name] = {k: v for k, v in r[name].items() if k not in ("e2e_s", "first_error")}
    ratio = postgres["tokens_per_s"] / sqlite["tokens_per_s"]
    low, high = _ratio_interval([r["ratio_pg_vs_sqlite"] for r in rounds])
    log(f"serve: sqlite {sqlite['tokens_per_s']} tok/s, postgres {postgres['tokens_per_s']} tok/s, ratio {ratio:.3f}"
        + (f" (95% CI of the per-round ratios {low:.3f}-{high:.3f})" if low else ""))
    return {
        "serve_ratio_pg_vs_sqlite": round(ratio, 3),
        "serve_ratio_ci95": [low, high] if low else None,
        "serve_ratio_median_of_rounds": round(statistics.median(r["ratio_pg_vs_sqlite"] for r in rounds), 3),
        "baseline": BASELINE,
        "serve_tokens_per_s_sqlite": sqlite["tokens_per_s"],
        "serve_tokens_per_s_pg": postgres["tokens_per_s"],
        "serve_e2e_p50_s_sqlite": sqlite["e2e_p50_s"],
        "serve_e2e_p50_s_pg": postgres["e2e_p50_s"],
        "rounds": len(rounds),
        "sessions": args.sessions,
        "clients": args.clients,
        "requests_per_client_per_round": args.requests,
        "max_tokens": args.max_tokens,
        "serve_log_text": args.log_text,
        "serve_threads": args.threads or "torch default",
        "serve_logged_rows": logged,
        "client": "openai" if importlib.util.find_spec("openai") else "httpx",
        "model": str(model),
        "server_flags": flags,
        "serve_rounds": rounds,
    }


def _ratio_interval(ratios: list[float]) -> tuple[float | None, float | None]:
    """95% t-interval of the geometric mean of per-round ratios (rounds are paired in time)."""
    import math

    if len(ratios) < 3:
        return None, None
    from scipy.stats import t

    logs = [math.log(r) for r in ratios]
    mean, half = statistics.fmean(logs), t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return round(math.exp(mean - half), 3), round(math.exp(mean + half), 3)


def _prompts(model: Path, args) -> list[list[dict[str, str]]]:
    """Chat messages from valid synthetic CV records (some with planted PII) that fit the
    model's context with `max_tokens` to spare."""
    from pydantic import ValidationError
    from transformers import AutoConfig, AutoTokenizer

    from cvml.data.records import Record
    from cvml.prompts import build_messages
    from cvml.tiny.synth import generate_records

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    context = AutoConfig.from_pretrained(str(model)).max_position_embeddings
    want = args.clients * args.requests
    out = []
    for row in generate_records(want, seed=1):
        try:
            record = Record.model_validate(row)
        except ValidationError:
            continue  # the generator plants malformed rows for curation to catch
        messages = build_messages(record.task, record.source_text, record.job_description)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        if len(ids) + args.max_tokens <= context:
            out.append(messages)
        if len(out) == want:
            break
    if not out:
        raise BenchError(f"no synthetic prompt fits the context of {model} ({context} tokens)")
    return out


class _Server:
    """`cvml serve MODEL --port 0 --json` in a subprocess with its own CVML_HOME."""

    def __init__(self, name: str, model: Path, log_db: str, work: Path, args):
        self.name, self.log_db, self.threads = name, log_db, args.threads
        self.home = work / f"home-{name}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.cmd = [
            sys.executable, "-m", "cvml", "serve", str(model), "--port", "0", "--json", "--device", "cpu",
            "--max-batch-size", str(max(16, args.clients)), "--max-queue", "256",
            "--max-new-tokens", str(args.max_tokens), "--log-text", args.log_text, "--log-db", log_db,
        ]  # fmt: skip
        self.description = " ".join(self.cmd[self.cmd.index("serve"):]).replace(log_db, _display(log_db))
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.sent = 0
        self.log_path = self.home / "server.log"
        self._stdout: queue.Queue[str | None] = queue.Queue()

    def launch(self) -> None:
        env = {**os.environ, "CVML_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.pop("CVML_DB_URL", None)  # the registry stays in CVML_HOME; only the log moves
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        stderr = self.log_path.open("w")
        self.process = subprocess.Popen(self.cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()

        def pump(stream):
            for line in stream:
                self._stdout.put(line)
            self._stdout.put(None)

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        until, document = time.monotonic() + timeout_s, ""
        while time.monotonic() < until:
            try:
                line = self._stdout.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait()
                raise BenchError(f"`cvml serve` ({self.name} log) exited with {self.process.returncode}: {self.tail()}")
            if document or line.lstrip().startswith("{"):
                document += line  # the ready document is indented JSON over several lines
                try:
                    self.url = json.loads(document)["url"]
                    return
                except json.JSONDecodeError:
                    continue
        raise BenchError(f"`cvml serve` ({self.name} log) was not ready within {timeout_s:g} s: {self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-4:])


def _display(location: str) -> str:
    from cvml.storage import storage_url

    return storage_url(location, default_file=Path(location)).display if "://" in location else location


def _asker(server: _Server, args):
    """ask(messages) -> output tokens, through the openai client (httpx when it is missing)."""
    import httpx

    http = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=args.clients + 4,
                                                         max_keepalive_connections=args.clients + 4))
    if importlib.util.find_spec("openai") is not None:
        from openai import OpenAI

        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, http_client=http)

        def ask(messages) -> int:
            answer = client.chat.completions.create(
                model="default", messages=messages, max_tokens=args.max_tokens, temperature=0,
                extra_body={"ignore_eos": True},
            )
            return answer.usage.completion_tokens
    else:

        def ask(messages) -> int:
            response = http.post(f"{server.url}/v1/chat/completions", json={
                "model": "default", "messages": messages, "max_tokens": args.max_tokens, "temperature": 0,
                "ignore_eos": True,
            })  # fmt: skip
            response.raise_for_status()
            return response.json()["usage"]["completion_tokens"]

    ask.close = http.close
    return ask


def _closed_loop(clients: int, per_client: int, prompts: list, ask) -> dict:
    """`clients` threads, each sending `per_client` requests one after the other."""
    lock = threading.Lock()
    tokens, e2e, errors = [], [], []

    def client(k: int) -> None:
        for j in range(per_client):
            messages = prompts[(k * per_client + j) % len(prompts)]
            t0 = time.perf_counter()
            try:
                n = ask(messages)
            except Exception as exc:  # noqa: BLE001 - counted, so a failing server shows as failing
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                tokens.append(n)
                e2e.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests": clients * per_client,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "output_tokens": sum(tokens),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(sum(tokens) / wall, 1),
        "e2e_s": e2e,
    }


def _logged_rows(location: str, since: datetime) -> int:
    from cvml.serve.requestlog import RequestLog

    with RequestLog(location) as reader:
        return reader.stats(since=since)["requests"]


if __name__ == "__main__":
    main()
