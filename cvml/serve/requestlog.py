"""The request log: one row per served request, for monitoring and A/B analysis.

    log = RequestLog()                                   # $CVML_HOME/requests.db
    log.record(LogEntry(request_id=rid, endpoint="/v1/cv/rewrite", status=200, variant="b",
                        user_id="u-42", input_text=text, output_text=out, **engine_figures(stats)))
    log.feedback(rid, accepted=True)                     # False: unknown request id
    log.query(experiment="rewrite-v4")                   # list of dicts, for abtest
    log.close()                                          # writes what is queued, checkpoints

`record()` only queues: a writer thread redacts the text and writes batches, so a request
never waits on the disk or on PII detection. Everything else (feedback, query, purge,
forget) first waits for what was queued before it, so it sees this process's own records.

Privacy: text is stored only after `PiiRedactor` (one placeholder scope per request, so an
email in the input and the output gets the same `<EMAIL_1>`), or not at all with
`log_text="none"`. The user id is never stored: rows hold HMAC-SHA256(secret, user_id)
under a random secret kept in the database, which is enough to count users per variant
and to erase one user's rows (`forget`), while an export of the rows cannot be turned back
into ids by hashing guesses. Stickiness does not need the id either: the router hashes the
id of each live request. Deleted rows are overwritten (`secure_delete`) and the WAL is
truncated after purge/forget and on close, so erased text does not linger in the files.

Stored through `cvml.storage`, like the registry: a SQLite file by default, or the Postgres
database of CVML_DB_URL, where every replica of `cvml serve` writes the same log. Writes are
batched off the request path; a batch that fails (the database restarting) is retried with
backoff and counted in `failed_writes` when it still cannot be written.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from functools import cached_property
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cvml.errors import ConfigError, CvmlError
from cvml.paths import cvml_home
from cvml.storage import Database, Schema, StorageUrl, storage_url, utc_now
from cvml.storage.database import Row
from cvml.safety.pii import PiiRedactor, Placeholders
from cvml.serve.types import RequestStats

LOG_TEXT_MODES = ("redacted", "none")
_BATCH = 256  # rows per write transaction at most
_SECRET_KEY = "user_key_secret"
_log = logging.getLogger(__name__)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            experiment TEXT,
            variant TEXT,
            model_ref TEXT,
            model_version TEXT,
            user_key TEXT,
            endpoint TEXT NOT NULL,
            task TEXT,
            status INTEGER NOT NULL,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            queue_s REAL,
            ttft_s REAL,
            e2e_s REAL,
            itl_mean_s REAL,
            pii_leak INTEGER,
            fabrication INTEGER,
            checks TEXT,
            input_text TEXT,
            output_text TEXT,
            error TEXT,
            accepted INTEGER,
            rating REAL,
            feedback_at TEXT
        )""",
        "CREATE INDEX requests_at ON requests (at)",
        "CREATE INDEX requests_user_key ON requests (user_key)",
        "CREATE INDEX requests_experiment ON requests (experiment, variant)",
    ),
)

_COLUMNS = (
    "request_id", "at", "experiment", "variant", "model_ref", "model_version", "user_key", "endpoint", "task",
    "status", "finish_reason", "prompt_tokens", "completion_tokens", "queue_s", "ttft_s", "e2e_s", "itl_mean_s",
    "pii_leak", "fabrication", "checks", "input_text", "output_text", "error", "accepted", "rating", "feedback_at",
)  # fmt: skip
_BOOLEAN_COLUMNS = ("pii_leak", "fabrication", "accepted")
_INSERT = (
    f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


class RequestLogError(CvmlError):
    """The request log cannot be opened, read or written, or was given a value it cannot store."""


REQUEST_LOG = Schema(
    name="request log",
    version_table="request_log_version",
    migrations=_MIGRATIONS,
    # Erased text must not linger in free pages. No fsync per commit: with WAL the file
    # stays consistent, and a power cut may lose only the last rows.
    sqlite_pragmas=("PRAGMA secure_delete = ON", "PRAGMA synchronous = NORMAL"),
    error=RequestLogError,
)
_RETRIES_S = (0.2, 1.0, 3.0)  # waits before retrying a batch the database refused


@dataclass
class LogEntry:
    """One served request, as the server knows it; `record()` turns it into a row.

    `user_id` is hashed and the texts are redacted before anything is written. Timings
    are seconds; `engine_figures(stats)` fills the token counts and timings from the
    engine's `RequestStats`. `at` defaults to the time of `record()` (a tz-aware datetime
    or an ISO-8601 string with an offset also works).
    """

    request_id: str
    endpoint: str
    status: int
    at: datetime | str | None = None
    experiment: str | None = None
    variant: str | None = None
    model_ref: str | None = None  # what the variant names, e.g. cv@canary or a path
    model_version: str | None = None  # what served it, e.g. cv@3 (or the path)
    user_id: str | None = None
    task: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_s: float | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_mean_s: float | None = None
    pii_leak: bool | None = None
    fabrication: bool | None = None
    checks: Mapping[str, Any] | None = None  # the checks' details, stored as JSON
    input_text: str | None = None
    output_text: str | None = None
    error: str | None = None


def engine_figures(stats: RequestStats) -> dict[str, Any]:
    """The LogEntry fields that the engine measured: token counts, finish reason, timings."""
    gaps = stats.inter_token_s
    return {
        "finish_reason": stats.finish_reason,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "queue_s": stats.queue_s,
        "ttft_s": stats.ttft_s,
        "e2e_s": stats.e2e_s,
        "itl_mean_s": sum(gaps) / len(gaps) if gaps else None,
    }


def default_log_path() -> Path:
    """`$CVML_HOME/requests.db` (CVML_HOME defaults to ~/.cvml)."""
    return cvml_home() / "requests.db"


def log_url(location: str | Path | None) -> StorageUrl:
    """Where the log at `location` lives (URL, file, folder; None: CVML_DB_URL, else the default file)."""
    return storage_url(location, default_file=default_log_path())


class RequestLog:
    """A request log in a SQLite file or the shared Postgres database, safe to share across threads.

    Args:
        path: a database URL, a SQLite file, or a folder holding `requests.db`; None means
            CVML_DB_URL, else `default_log_path()`. A SQLite file is created if missing.
        log_text: "redacted" stores input/output/error text after PII redaction;
            "none" stores no text at all.

    Raises:
        ConfigError: `log_text` is not one of LOG_TEXT_MODES.
        RequestLogError: the database cannot be opened as a request log.
    """

    def __init__(self, path: str | Path | None = None, log_text: str = "redacted"):
        if log_text not in LOG_TEXT_MODES:
            raise ConfigError(
                f"unknown log_text {log_text!r}", hint=f"use one of: {', '.join(LOG_TEXT_MODES)}"
            )
        self.url = log_url(path)
        self.path = self.url.where
        self.log_text = log_text
        # Rows that could not be written (logged with the reason); for the server's metrics.
        self.failed_writes = 0
        self._secret = _user_key_secret(self._db)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False

    @cached_property
    def _db(self) -> Database:
        return Database.open(self.url, REQUEST_LOG)

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- writes

    def record(self, entry: LogEntry) -> None:
        """Queue one request for writing; returns at once (microseconds).

        Call it before the response's last bytes go out, so that feedback on the request
        always finds its row. A second entry with the same request_id is ignored.

        Raises:
            RequestLogError: the log is closed, or `entry.at` is not a tz-aware time.
        """
        at = utc_now() if entry.at is None else _iso(entry.at)
        with self._lock:
            if self._closed:
                raise RequestLogError(f"the request log at {self.path} is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="cvml-request-log", daemon=True)
                self._writer.start()
                # A daemon thread dies with the interpreter; write what is queued first.
                atexit.register(self.close)
            self._queue.put((entry, at))

    def flush(self) -> None:
        """Wait until every entry recorded before this call is written."""
        if self._writer is None or not self._writer.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        # Poll, so that a writer that died (its traceback is on stderr) cannot hang the caller.
        while not done.wait(0.5) and self._writer.is_alive():
            pass

    def close(self) -> None:
        """Write what is queued, checkpoint the WAL into the database file and stop the writer.

        Idempotent; later `record()` calls raise, reads still work.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._queue.put(None)
            writer.join()
            atexit.unregister(self.close)

    def feedback(self, request_id: str, accepted: bool | None = None, rating: float | None = None) -> bool:
        """Record the user's verdict on a request; what is not given keeps its earlier value.

        Returns:
            False when no request has this id (the server answers 404).

        Raises:
            RequestLogError: neither `accepted` nor `rating` given, or `rating` not a finite number.
        """
        if accepted is None and rating is None:
            raise RequestLogError("feedback needs accepted or rating", hint="send accepted: true/false or a rating")
        if rating is not None and not math.isfinite(rating):
            raise RequestLogError(f"rating {rating!r} is not a finite number")
        self.flush()
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE requests SET accepted = COALESCE(?, accepted), rating = COALESCE(?, rating), "
                "feedback_at = ? WHERE request_id = ?",
                (None if accepted is None else int(accepted), rating, utc_now(), request_id),
            )
            return cursor.rowcount > 0

    def purge(self, older_than: timedelta) -> int:
        """Delete the requests logged more than `older_than` ago (the retention period).

        Returns:
            The number of rows deleted.

        Raises:
            RequestLogError: `older_than` is not positive.
        """
        if older_than <= timedelta(0):
            raise RequestLogError(f"the retention period must be positive, not {older_than}")
        cutoff = _iso(datetime.now(timezone.utc) - older_than)
        return self._delete("at < ?", cutoff)

    def forget(self, user_id: str) -> int:
        """Delete every request of one user (erasure on request).

        Returns:
            The number of rows deleted.

        Raises:
            RequestLogError: `user_id` is empty.
        """
        if not user_id:
            raise RequestLogError("forget needs a user id")
        return self._delete("user_key = ?", self._user_key(user_id))

    # ------------------------------------------------------------------------------ reads

    def query(
        self,
        experiment: str | None = None,
        since: datetime | str | None = None,
        variant: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Logged requests as dicts (one key per column; booleans as bool, `checks` parsed).

        Args:
            experiment: only this experiment's requests.
            since: only requests at or after this tz-aware time.
            variant: only this variant's requests.
            limit: at most this many rows.
            newest_first: order by time descending (default ascending).
        """
        where, params = _filters(experiment, since, variant)
        order = "DESC" if newest_first else "ASC"
        # The request id breaks ties between equal times, the same on every backend.
        sql = f"SELECT {', '.join(_COLUMNS)} FROM requests{where} ORDER BY at {order}, request_id {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        self.flush()
        with self._db.read() as conn:
            return [_row_dict(row) for row in conn.execute(sql, params)]

    def stats(self, experiment: str | None = None, since: datetime | str | None = None) -> dict[str, Any]:
        """Totals and per-(experiment, variant) figures: requests, errors, users, feedback, latency.

        Latency percentiles are over successful requests (status < 400) that have the figure.
        """
        where, params = _filters(experiment, since, None)
        self.flush()
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT experiment, variant, model_version, user_key, status, e2e_s, ttft_s, completion_tokens, "
                "accepted, rating, at, input_text IS NOT NULL OR output_text IS NOT NULL AS has_text "
                f"FROM requests{where}",
                params,
            ).fetchall()
        groups: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            groups.setdefault((row["experiment"] or "", row["variant"] or ""), []).append(row)
        return {
            "path": str(self.path),
            "requests": len(rows),
            "users": len({row["user_key"] for row in rows} - {None}),
            "with_text": sum(row["has_text"] for row in rows),
            "with_feedback": sum(row["accepted"] is not None or row["rating"] is not None for row in rows),
            "first_at": min((row["at"] for row in rows), default=None),
            "last_at": max((row["at"] for row in rows), default=None),
            "variants": [_group_stats(members) for _, members in sorted(groups.items())],
        }

    # ---------------------------------------------------------------------------- private

    def _write_loop(self) -> None:
        """The writer thread: take what is queued, write it in one transaction, repeat."""
        redactor = PiiRedactor() if self.log_text == "redacted" else None
        stop = False
        while not stop:
            batch, markers = [], []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch, redactor)
            for marker in markers:
                marker.set()
        self._db.compact(("requests",))

    def _write(self, batch: list[tuple[LogEntry, str]], redactor: PiiRedactor | None) -> None:
        rows = []
        for entry, at in batch:
            try:
                rows.append(self._row(entry, at, redactor))
            except Exception:  # one bad entry must not cost the batch its rows
                self.failed_writes += 1
                _log.exception("request %s not logged", getattr(entry, "request_id", "?"))
        if not rows:
            return
        for wait in (*_RETRIES_S, None):
            try:
                with self._db.write() as conn:
                    conn.executemany(_INSERT, rows)
                return
            except CvmlError as exc:  # the database is unreachable or refused the batch
                if wait is None:
                    self.failed_writes += len(rows)
                    _log.error("%d request(s) not logged to %s: %s", len(rows), self.path, exc.message)
                    return
                time.sleep(wait)  # a restarting database: the next connection may succeed
            except Exception:  # a row the database refuses (a constraint): write the others one by one
                self._write_each(rows)
                return

    def _write_each(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            try:
                with self._db.write() as conn:
                    conn.execute(_INSERT, row)
            except Exception:
                self.failed_writes += 1
                _log.exception("request %s not logged", row[0])

    def _row(self, entry: LogEntry, at: str, redactor: PiiRedactor | None) -> tuple[Any, ...]:
        scope = Placeholders()

        def text(value: str | None) -> str | None:
            if value is None or redactor is None:
                return None
            return redactor.redact(value, scope)[0]

        values = {f.name: getattr(entry, f.name) for f in fields(entry)}
        values.update(
            at=at,
            user_key=self._user_key(entry.user_id) if entry.user_id else None,
            checks=None if entry.checks is None else json.dumps(entry.checks, sort_keys=True, default=str),
            input_text=text(entry.input_text),
            output_text=text(entry.output_text),
            # Errors may quote the input; with log_text "none" only whether it failed is kept.
            error=None if entry.error is None else (text(entry.error) or "error"),
            accepted=None,
            rating=None,
            feedback_at=None,
        )
        for column in ("pii_leak", "fabrication"):
            values[column] = None if values[column] is None else int(bool(values[column]))
        # Postgres refuses NUL in text (valid JSON may carry one): store the replacement character.
        return tuple(_no_nul(values[column]) for column in _COLUMNS)

    def _user_key(self, user_id: str) -> str:
        return hmac.new(self._secret, user_id.encode(), hashlib.sha256).hexdigest()

    def _delete(self, condition: str, value: str) -> int:
        self.flush()
        with self._db.write() as conn:
            deleted = conn.execute(f"DELETE FROM requests WHERE {condition}", (value,)).rowcount
        self._db.compact(("requests",))  # erased text must not linger in the WAL / dead rows
        return deleted


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _user_key_secret(db: Database) -> bytes:
    """The database's HMAC secret for user ids, made on first use (so it survives restarts and
    every replica on one database hashes a user alike)."""
    select = "SELECT value FROM meta WHERE key = ?"
    with db.read() as conn:
        row = conn.execute(select, (_SECRET_KEY,)).fetchone()
    if row is None:
        with db.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (_SECRET_KEY, secrets.token_hex(32)),
            )
            row = conn.execute(select, (_SECRET_KEY,)).fetchone()
    return bytes.fromhex(row[0])


def _iso(at: datetime | str) -> str:
    """A time in the one stored format (UTC, microseconds), so that text order is time order."""
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise RequestLogError(f"{at!r} is not an ISO-8601 time") from None
    if at.tzinfo is None:
        raise RequestLogError(f"time {at.isoformat()} has no UTC offset", hint="pass a tz-aware time")
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _filters(
    experiment: str | None, since: datetime | str | None, variant: str | None
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for clause, value in (("experiment = ?", experiment), ("at >= ?", since), ("variant = ?", variant)):
        if value is not None:
            clauses.append(clause)
            params.append(_iso(value) if clause.startswith("at") else value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _row_dict(row: Row) -> dict[str, Any]:
    item = dict(zip(_COLUMNS, row))
    for column in _BOOLEAN_COLUMNS:
        if item[column] is not None:
            item[column] = bool(item[column])
    if item["checks"] is not None:
        item["checks"] = json.loads(item["checks"])
    return item


def _group_stats(rows: list[Row]) -> dict[str, Any]:
    ok = [row for row in rows if row["status"] < 400]
    accepted = [row["accepted"] for row in rows if row["accepted"] is not None]
    ratings = [row["rating"] for row in rows if row["rating"] is not None]
    e2e = [row["e2e_s"] for row in ok if row["e2e_s"] is not None]
    return {
        "experiment": rows[0]["experiment"],
        "variant": rows[0]["variant"],
        "models": sorted({row["model_version"] for row in rows} - {None}),
        "requests": len(rows),
        "errors": len(rows) - len(ok),
        "users": len({row["user_key"] for row in rows} - {None}),
        "feedback": len(accepted),
        "accepted": sum(accepted),
        "acceptance_rate": sum(accepted) / len(accepted) if accepted else None,
        "ratings": len(ratings),
        "mean_rating": sum(ratings) / len(ratings) if ratings else None,
        "e2e_p50_s": _percentile(e2e, 50),
        "e2e_p95_s": _percentile(e2e, 95),
        "ttft_p50_s": _percentile([row["ttft_s"] for row in ok if row["ttft_s"] is not None], 50),
        "completion_tokens": sum(row["completion_tokens"] or 0 for row in ok),
    }


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        return None
    values = sorted(values)
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
