"""The request log: one row per served request, for monitoring and A/B analysis.

    log = RequestLog()                                   # $CVML_HOME/requests.db
    log.record(LogEntry(request_id=rid, endpoint="/v1/cv/rewrite", status=200, variant="b",
                        user_id="u-42", input_text=text, output_text=out, **engine_figures(stats)))
    log.feedback(rid, accepted=True, edited_text=kept)   # False: unknown request id
    log.query(experiment="rewrite-v4")                   # list of dicts, for abtest
    log.purge(timedelta(days=30))                        # retention; recorded in `purges`
    log.close()                                          # writes what is queued, checkpoints

`record()` only queues: a writer thread redacts the text and writes batches, so a request
never waits on the disk or on PII detection. Everything else (feedback, query, purge,
forget) first waits for what was queued before it, so it sees this process's own records.

Privacy: nothing raw is stored. With `log_text="redacted"` the texts and every string of the
checks' details (claims name employers, schools, amounts) go through `PiiRedactor` with one
placeholder scope per request, so an email in the input, the output and a claim gets the same
`<EMAIL_1>`. With `log_text="none"` no text is stored, and of the checks only their flags and
counts. The user id is never stored: rows hold HMAC-SHA256(key, user_id) and the id of
the key, which is enough to count users per variant and to erase one user's rows (`forget`),
while an export cannot be turned back into ids by hashing guesses. The keys live outside
the database (`cvml.serve.logkeys`: CVML_LOG_KEY, else 0600 files under $CVML_HOME/keys).
Deleted rows are overwritten (`secure_delete`) and the WAL is truncated after purge/forget
and on close, so erased text does not linger in the files.

Stored through `cvml.storage`, like the registry: a SQLite file by default, or the Postgres
database of CVML_DB_URL, where every replica of `cvml serve` writes the same log. Writes are
batched off the request path; a batch that fails (the database restarting) is retried with
backoff and counted in `failed_writes` when it still cannot be written.

Failing closed: while the log cannot write (or could not be opened: the server then starts
degraded rather than not at all), it is `degraded`. Requests are served as ever, but what is
queued keeps no text: `record()` drops the text (and the checks' details) of new entries, and
the writer drops it from those already queued before it waits to retry. The first batch
written again ends it. At most `_MAX_QUEUED` entries wait; beyond that an entry is dropped
and counted in `dropped`. `health()` reports all of it; the server shows it on /ready and
/metrics.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cvml.errors import ConfigError, CvmlError
from cvml.paths import cvml_home
from cvml.safety.pii import PiiRedactor, PiiSpan, Placeholders
from cvml.serve import logkeys
from cvml.serve.logkeys import LEGACY_SECRET, Keyring, env_keys, open_keyring, require_env_keys
from cvml.serve.types import RequestStats
from cvml.storage import Database, Schema, StorageUrl, storage_url, utc_now
from cvml.storage.database import Row

LOG_TEXT_MODES = ("redacted", "none")
_BATCH = 256  # rows per write transaction at most
_MAX_QUEUED = 10_000  # entries waiting for the writer; beyond, an entry is dropped (and counted)
RETENTION_EVERY_S = 24 * 3600.0  # the server purges by age on start and this often
_RETENTION_RETRY_S = 3600.0  # after a purge that failed
_FIGURE_KEY = re.compile(r"[a-z_][a-z0-9_]*")  # the checks' own field names ("flagged", "n_claims")
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
    (
        # The key that hashed the row's user id (its id, never the key: see cvml.serve.logkeys).
        "ALTER TABLE requests ADD COLUMN key_id TEXT",
        # Every retention purge: when, the age cut off, how many rows went.
        "CREATE TABLE purges (at TEXT NOT NULL, older_than_s REAL NOT NULL, deleted INTEGER NOT NULL)",
        "CREATE INDEX purges_at ON purges (at)",
    ),
    (
        # The output as the user kept it after editing (`/v1/feedback` edited_text), redacted
        # like every text: `cvml monitor export` makes it the next fine-tune's target.
        "ALTER TABLE requests ADD COLUMN edited_text TEXT",
    ),
)

_COLUMNS = (
    "request_id", "at", "experiment", "variant", "model_ref", "model_version", "user_key", "endpoint", "task",
    "status", "finish_reason", "prompt_tokens", "completion_tokens", "queue_s", "ttft_s", "e2e_s", "itl_mean_s",
    "pii_leak", "fabrication", "checks", "input_text", "output_text", "error", "accepted", "rating", "feedback_at",
    "key_id", "edited_text",
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
    never_copied={"meta": f"key = '{LEGACY_SECRET}'"},
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
            CVML_DB_URL, else `default_log_path()`. A SQLite file is created if missing
            (0600, in folders made 0700).
        log_text: "redacted" stores input/output/error text and the checks' strings after
            PII redaction; "none" stores no text, and of the checks only flags and counts.
        serving: the log of `cvml serve`. Its keys are checked now: a Postgres log needs
            CVML_LOG_KEY, the same on every replica. A database that cannot be opened
            does not stop the server: the log starts `degraded` (nothing is stored, the
            writer keeps trying to open it) and says why in the server's log and on /ready.

    Raises:
        ConfigError: `log_text` is not one of LOG_TEXT_MODES, CVML_LOG_KEY is malformed or
            (serving a Postgres log) missing, or a key cannot be moved out of the database.
        RequestLogError: the database cannot be opened as a request log (not serving).
    """

    def __init__(self, path: str | Path | None = None, log_text: str = "redacted", *, serving: bool = False):
        if log_text not in LOG_TEXT_MODES:
            raise ConfigError(
                f"unknown log_text {log_text!r}", hint=f"use one of: {', '.join(LOG_TEXT_MODES)}"
            )
        self.url = log_url(path)
        self.path = self.url.where
        self.log_text = log_text
        # Rows that could not be written (logged with the reason); for the server's metrics.
        self.failed_writes = 0
        self.dropped = 0  # entries not even queued: the queue was full
        self.text_dropped = 0  # entries queued without their text: the log was degraded
        self._degraded: str | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._held: deque[Any] = deque()  # taken from the queue by the writer (its thread only)
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._opened: Database | None = None
        self._keys: Keyring | None = None
        self._writer: threading.Thread | None = None
        self._closed = False
        shared = self.url.backend == "postgresql"
        if serving and shared:
            require_env_keys(self.url.display)
        try:
            self._db  # noqa: B018 - opens it, so a bad location fails here
            # A Postgres log without CVML_LOG_KEY (library use) gets its keys when first needed.
            if serving or not shared or env_keys() is not None:
                self._keyring()
        except RequestLogError as exc:
            if not serving:
                raise
            self._degrade(f"cannot open it: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))

    @property
    def _db(self) -> Database:
        """The database, opened on first use (and retried by the writer until it opens)."""
        if self._opened is None:
            with self._open_lock:
                if self._opened is None:
                    try:
                        self._opened = Database.open(self.url, REQUEST_LOG)
                    except OSError as exc:  # a SQLite folder that cannot be made
                        raise RequestLogError(
                            f"cannot open the request log at {self.path}: {exc.strerror or exc}",
                            hint="check that its folder can be created and written",
                        ) from None
        return self._opened

    def _keyring(self) -> Keyring:
        if self._keys is None:
            db = self._db
            with self._open_lock:
                if self._keys is None:
                    if self.url.backend == "postgresql" and env_keys() is None:
                        _log.warning("CVML_LOG_KEY is not set: user ids of the Postgres log at %s are hashed with "
                                     "a key file of this host, which other hosts lack", self.url.display)  # fmt: skip
                    try:
                        self._keys = open_keyring(db, str(self.path))
                    except OSError as exc:
                        raise RequestLogError(
                            f"cannot write the request log's key file: {exc.strerror or exc}",
                            hint="check that $CVML_HOME/keys can be created and written, or set CVML_LOG_KEY",
                        ) from None
        return self._keys

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- health

    @property
    def degraded(self) -> str | None:
        """Why the log cannot write now (None while it can)."""
        return self._degraded

    def health(self) -> dict[str, Any]:
        """{"status": "ok" | "degraded", "reason", "queued", "failed_writes", "dropped", "text_dropped"}."""
        return {
            "status": "ok" if self._degraded is None else "degraded",
            "reason": self._degraded,
            "queued": self._queue.qsize() + len(self._held),
            "failed_writes": self.failed_writes,
            "dropped": self.dropped,
            "text_dropped": self.text_dropped,
        }

    # ----------------------------------------------------------------------------- writes

    def record(self, entry: LogEntry) -> None:
        """Queue one request for writing; returns at once (microseconds).

        Call it before the response's last bytes go out, so that feedback on the request
        always finds its row. A second entry with the same request_id is ignored. While
        the log is degraded the entry is queued without its text; with `_MAX_QUEUED`
        entries waiting it is dropped (`dropped` counts them).

        Raises:
            RequestLogError: the log is closed, or `entry.at` is not a tz-aware time.
        """
        at = utc_now() if entry.at is None else _iso(entry.at)
        with self._lock:
            if self._closed:
                raise RequestLogError(f"the request log at {self.path} is closed")
            if self._queue.qsize() + len(self._held) >= _MAX_QUEUED:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.error("the request log's queue is full (%d entries): %d request(s) not logged so far",
                               _MAX_QUEUED, self.dropped)  # fmt: skip
                return
            if self._degraded is not None:
                entry = self._without_text(entry)
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

    def feedback(
        self, request_id: str, accepted: bool | None = None, rating: float | None = None,
        edited_text: str | None = None,
    ) -> bool:  # fmt: skip
        """Record the user's verdict on a request; what is not given keeps its earlier value.

        Args:
            edited_text: the output as the user kept it after editing; stored PII-redacted
                (its own placeholder numbering), and not at all with log_text "none".

        Returns:
            False when no request has this id (the server answers 404).

        Raises:
            RequestLogError: none of `accepted`, `rating`, `edited_text` given, or `rating`
                not a finite number.
        """
        if accepted is None and rating is None and edited_text is None:
            raise RequestLogError(
                "feedback needs accepted or rating, or edited_text", hint="send accepted: true/false, a rating or the edited text"
            )
        if rating is not None and not math.isfinite(rating):
            raise RequestLogError(f"rating {rating!r} is not a finite number")
        edited = None
        if edited_text is not None and self.log_text == "redacted":
            edited = _no_nul(PiiRedactor().redact(edited_text, Placeholders())[0])
        self.flush()
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE requests SET accepted = COALESCE(?, accepted), rating = COALESCE(?, rating), "
                "edited_text = COALESCE(?, edited_text), feedback_at = ? WHERE request_id = ?",
                (None if accepted is None else int(accepted), rating, edited, utc_now(), request_id),
            )
            return cursor.rowcount > 0

    def purge(self, older_than: timedelta) -> int:
        """Delete the requests logged more than `older_than` ago (the retention period), and
        record the purge (time, period, rows deleted) in the `purges` table.

        Returns:
            The number of rows deleted.

        Raises:
            RequestLogError: `older_than` is not positive, or the database cannot be written.
        """
        if older_than <= timedelta(0):
            raise RequestLogError(f"the retention period must be positive, not {older_than}")
        cutoff = _iso(datetime.now(timezone.utc) - older_than)
        self.flush()
        with self._db.write() as conn:
            deleted = conn.execute("DELETE FROM requests WHERE at < ?", (cutoff,)).rowcount
            conn.execute(
                "INSERT INTO purges (at, older_than_s, deleted) VALUES (?, ?, ?)",
                (utc_now(), older_than.total_seconds(), deleted),
            )
        self._db.compact(("requests",))  # erased text must not linger in the WAL / dead rows
        _log.info("purged %d request(s) older than %s from the request log at %s", deleted, older_than, self.path)
        return deleted

    def forget(self, user_id: str) -> int:
        """Delete every request of one user (erasure on request), under each key that hashed rows.

        Returns:
            The number of rows deleted.

        Raises:
            RequestLogError: `user_id` is empty, or rows were hashed with a key this
                process does not have (then nothing is deleted: erasure is whole or not at all).
        """
        if not user_id:
            raise RequestLogError("forget needs a user id")
        self.flush()
        keys = self._keyring()
        with self._db.write() as conn:
            used = [row[0] for row in conn.execute(
                "SELECT DISTINCT key_id FROM requests WHERE user_key IS NOT NULL").fetchall()]  # fmt: skip
            missing = [key_id for key_id in used if key_id not in keys.live]
            if missing:
                raise RequestLogError(
                    f"cannot erase by user id: rows of the request log at {self.path} were hashed with "
                    f"key(s) {', '.join(i or '(no id: older than key ids)' for i in missing)}, which this process does not have",
                    hint=keys.missing_hint(missing),
                )
            deleted = sum(
                conn.execute(
                    "DELETE FROM requests WHERE key_id = ? AND user_key = ?", (key_id, keys.live[key_id].user_key(user_id))
                ).rowcount
                for key_id in used
            )
        self._db.compact(("requests",))  # erased text must not linger in the WAL / dead rows
        return deleted

    def rotate_key(self) -> dict[str, Any]:
        """A new key for new rows; the old ones stay live for `forget` (see `cvml.serve.logkeys`).

        Returns:
            {"key_id": the new key's id, "keys": this log's key ids, oldest first}

        Raises:
            ConfigError: the keys come from CVML_LOG_KEY (rotate them there).
        """
        self.flush()
        result = logkeys.rotate(self._db, str(self.path))
        self._keys = None  # this process hashes with the new key from now on
        return result

    def drop_old_keys(self) -> dict[str, Any]:
        """Delete the old keys that no row uses any more; see `logkeys.drop_old`."""
        self.flush()
        result = logkeys.drop_old(self._db)
        self._keys = None
        return result

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
        """Totals and per-(experiment, variant) figures: requests, errors, users, feedback,
        latency; and the last retention purge.

        Latency percentiles are over successful requests (status < 400) that have the figure.
        Users are counted by user key: after a key rotation, one seen under both keys counts twice.
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
            last = conn.execute("SELECT at, older_than_s, deleted FROM purges ORDER BY at DESC LIMIT 1").fetchone()
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
            "last_purge": None if last is None else dict(zip(("at", "older_than_s", "deleted"), last)),
        }

    # ---------------------------------------------------------------------------- private

    def _write_loop(self) -> None:
        """The writer thread: take what is queued, write it in one transaction, repeat."""
        redactor = PiiRedactor() if self.log_text == "redacted" else None
        stop = False
        while not stop:
            batch, markers = [], []
            item = self._take(block=True)
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                item = None  # no raw entry outlives its batch in this frame
                if stop or len(batch) >= _BATCH:
                    break
                try:
                    item = self._take(block=False)
                except queue.Empty:
                    break
            self._write(batch, redactor)
            batch = None
            for marker in markers:
                marker.set()
        if self._opened is not None:
            self._opened.compact(("requests",))

    def _take(self, block: bool) -> Any:
        if self._held:
            return self._held.popleft()
        return self._queue.get() if block else self._queue.get_nowait()

    def _write(self, batch: list[tuple[LogEntry, str]], redactor: PiiRedactor | None) -> None:
        rows = None
        for wait in (*_RETRIES_S, None):
            try:
                if rows is None:
                    self._db  # noqa: B018 - (re)opens the database and its keys on first use
                    self._keyring()
                    rows = self._rows(batch, redactor)
                    batch.clear()  # the raw entries are not kept while the rows wait to be written
                    if not rows:
                        return
                with self._db.write() as conn:
                    conn.executemany(_INSERT, rows)
                self._recovered()
                return
            except CvmlError as exc:  # the database is unreachable or refused the batch
                self._degrade(exc.message)
                if wait is None:
                    lost = len(batch) if rows is None else len(rows)
                    self.failed_writes += lost
                    _log.error("%d request(s) not logged to %s: %s", lost, self.path, exc.message)
                    return
                if rows is None:
                    batch[:] = [(self._without_text(entry), at) for entry, at in batch]
                self._strip_queued()
                time.sleep(wait)  # a restarting database: the next connection may succeed
            except Exception:  # a row the database refuses (a constraint): write the others one by one
                if rows is None:
                    raise
                self._write_each(rows)
                return

    def _rows(self, batch: list[tuple[LogEntry, str]], redactor: PiiRedactor | None) -> list[tuple[Any, ...]]:
        rows = []
        for entry, at in batch:
            try:
                rows.append(self._row(entry, at, redactor))
            except Exception:  # one bad entry must not cost the batch its rows
                self.failed_writes += 1
                _log.exception("request %s not logged", getattr(entry, "request_id", "?"))
        return rows

    def _write_each(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            try:
                with self._db.write() as conn:
                    conn.execute(_INSERT, row)
            except Exception:
                self.failed_writes += 1
                _log.exception("request %s not logged", row[0])

    def _degrade(self, reason: str) -> None:
        if self._degraded is None:
            _log.error("the request log at %s is degraded: %s; requests are still served, but their text is "
                       "not kept until it can write again", self.path, reason)  # fmt: skip
        self._degraded = reason

    def _recovered(self) -> None:
        if self._degraded is not None:
            self._degraded = None
            _log.warning("the request log at %s writes again", self.path)

    def _without_text(self, entry: LogEntry) -> LogEntry:
        """The entry as a degraded log keeps it: figures only (counted in `text_dropped`)."""
        if entry.input_text is None and entry.output_text is None and entry.error is None and entry.checks is None:
            return entry
        self.text_dropped += 1
        return replace(
            entry, input_text=None, output_text=None, error=None if entry.error is None else "error",
            checks=None if entry.checks is None else _check_figures(entry.checks),
        )  # fmt: skip

    def _strip_queued(self) -> None:
        """Drop the text of every entry queued so far (the writer, before it waits to retry)."""
        with self._lock:  # record() then either queued before this, or sees the log degraded
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
                if isinstance(item, tuple):
                    item = (self._without_text(item[0]), item[1])
                self._held.append(item)

    def _row(self, entry: LogEntry, at: str, redactor: PiiRedactor | None) -> tuple[Any, ...]:
        scope = Placeholders()

        def text(value: str | None) -> str | None:
            if value is None or redactor is None:
                return None
            return redactor.redact(value, scope)[0]

        # The texts first: the names they hold are then found again in the checks' strings.
        input_text, output_text = text(entry.input_text), text(entry.output_text)
        # Errors may quote the input; with log_text "none" only whether it failed is kept.
        error = None if entry.error is None else (text(entry.error) or "error")
        if entry.checks is None:
            checks = None
        elif redactor is None:
            checks = _check_figures(entry.checks)
        else:
            checks = _redact_strings(entry.checks, lambda value: _names_anywhere(text(value), scope))
        key = self._keyring().current if entry.user_id else None
        values = {f.name: getattr(entry, f.name) for f in fields(entry)}
        values.update(
            at=at,
            user_key=key.user_key(entry.user_id) if key else None,
            key_id=key.id if key else None,
            checks=None if checks is None else json.dumps(checks, sort_keys=True, default=str),
            input_text=input_text,
            output_text=output_text,
            error=error,
            accepted=None,
            rating=None,
            feedback_at=None,
            edited_text=None,
        )
        for column in ("pii_leak", "fabrication"):
            values[column] = None if values[column] is None else int(bool(values[column]))
        # Postgres refuses NUL in text (valid JSON may carry one): store the replacement character.
        return tuple(_no_nul(values[column]) for column in _COLUMNS)


async def enforce_retention(log: RequestLog, older_than: timedelta) -> None:
    """Purge what is older than `older_than` now and every RETENTION_EVERY_S, until cancelled.

    Each purge is logged and recorded in `purges`; a purge that fails is logged and tried
    again after an hour (the log may be degraded).
    """
    while True:
        try:
            await asyncio.to_thread(log.purge, older_than)
            wait = RETENTION_EVERY_S
        except CvmlError as exc:
            _log.error("retention: purging the request log at %s failed: %s", log.path, exc.message)
            wait = min(_RETENTION_RETRY_S, RETENTION_EVERY_S)
        await asyncio.sleep(wait)


def _check_figures(checks: Mapping[str, Any]) -> dict[str, Any]:
    """The checks' flags and counts: every string and list is left out, and every field not
    named like one of the checks' own (so no value can hide in a key)."""
    kept: dict[str, Any] = {}
    for key, value in checks.items():
        if not (isinstance(key, str) and _FIGURE_KEY.fullmatch(key)):
            continue
        if isinstance(value, Mapping):
            kept[key] = _check_figures(value)
        elif value is None or isinstance(value, (bool, int, float)):
            kept[key] = value
    return kept


def _redact_strings(value: Any, redact) -> Any:
    """`value` with every string in it (mapping keys too) passed through `redact`."""
    if isinstance(value, Mapping):
        return {redact(str(k)): _redact_strings(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_strings(v, redact) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


def _names_anywhere(text: str, scope: Placeholders) -> str:
    """The names already found in the request, replaced in any case (a claim's normal form
    is lower case, which the name finder leaves alone in running text)."""
    for name in scope.names():
        words = name.split()
        if not words:
            continue
        pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)"
        token = scope.token(PiiSpan("NAME", 0, 0, name))
        text = re.sub(pattern, token, text, flags=re.IGNORECASE)
    return text


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


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
