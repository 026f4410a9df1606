"""The request log on Postgres when the database goes away: the writer retries a refused
batch with backoff (`_RETRIES_S`), so a restart inside that window loses nothing; past it,
`failed_writes` counts exactly the rows lost, the caller never sees an error, and writing
resumes once the server is back.

These tests stop and start a PostgreSQL server of their own (scripts/pg_server.py), not the
session's shared one that other tests use.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from pathlib import Path

import pytest

from cvml.cli.main import app
from cvml.serve import requestlog
from cvml.serve.requestlog import LogEntry, RequestLog
from cvml.storage import Database

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pg_server.py"


def _unavailable(reason: str):
    """As conftest's `pg_url`: CI must not skip silently."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"PostgreSQL tests cannot run (CI is set): {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="module")
def own_pg():
    """A throwaway server for this module alone, which the tests stop and start."""
    try:
        import psycopg  # noqa: F401

        spec = importlib.util.spec_from_file_location("cvml_pg_server_faults", _SCRIPT)
        pg_server = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pg_server)
        server = pg_server.start()
    except Exception as e:  # noqa: BLE001 - any failure means "no server"; the reason is reported
        _unavailable(f"could not start a throwaway server ({_SCRIPT.name}): {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def log_url(own_pg, runner):
    """A fresh database on `own_pg`, migrated by `cvml db upgrade`; the server is up at the start."""
    import psycopg

    own_pg.start_server()  # whatever the previous test left
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(own_pg.url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = own_pg.url_for(name)
    upgraded = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert upgraded.exit_code == 0, upgraded.stderr
    try:
        yield url
    finally:
        Database.dispose(url)
        own_pg.start_server()
        with psycopg.connect(own_pg.url_for("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _SleepSpy:
    """Stands in for the `time` module in requestlog: records the writer's backoff waits."""

    def __init__(self):
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def backoff(monkeypatch) -> _SleepSpy:
    spy = _SleepSpy()
    monkeypatch.setattr(requestlog, "time", spy)
    return spy


def _record(log: RequestLog, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    for rid in ids:
        log.record(LogEntry(request_id=rid, endpoint="/v1/cv/rewrite", status=200, variant="a", user_id=f"u-{rid}",
                            input_text="Led a team of five", output_text="Led a five-person team"))
    return ids


def _logged(url: str) -> set[str]:
    """The request ids in the database, read with a connection of its own (not the log's)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM cvml.requests")}


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.02)


def test_a_restart_between_batches_costs_no_retry(own_pg, log_url, backoff):
    """Pooled connections that died with the server are replaced on checkout (pre-ping)."""
    with RequestLog(log_url) as log:
        first = _record(log, "before", 5)
        log.flush()
        own_pg.restart()
        second = _record(log, "after", 5)
        log.flush()
        assert log.failed_writes == 0 and backoff.waits == []
        assert _logged(log_url) == set(first + second)
        assert log.stats()["requests"] == 10


def test_rows_queued_while_the_database_restarts_are_all_written(own_pg, log_url, backoff):
    with RequestLog(log_url) as log:
        before = _record(log, "before", 5)
        log.flush()
        assert _logged(log_url) == set(before)

        own_pg.stop_server()
        started = time.monotonic()
        during = _record(log, "during", 8)
        assert time.monotonic() - started < 0.5  # record() only queues, down or not
        # The writer has failed twice and waits out its second backoff: bring the server back.
        _wait_for(lambda: len(backoff.waits) >= 2, timeout_s=requestlog._RETRIES_S[0] + 2, what="two retries")
        assert sum(requestlog._RETRIES_S[2:]) > 0.5  # the window left is wider than a restart (~0.2 s)
        own_pg.start_server()

        log.flush()
        assert log.failed_writes == 0
        assert backoff.waits[:2] == list(requestlog._RETRIES_S[:2])
        after = _record(log, "after", 3)
        log.flush()
        assert _logged(log_url) == set(before + during + after)
        assert log.failed_writes == 0
        assert log.stats()["requests"] == 16


def test_rows_past_the_retries_are_counted_lost_and_writing_resumes(own_pg, log_url, backoff, caplog):
    caplog.set_level(logging.ERROR, logger="cvml.serve.requestlog")
    log = RequestLog(log_url)
    before = _record(log, "before", 3)
    log.flush()

    own_pg.stop_server()
    started = time.monotonic()
    lost = _record(log, "lost", 6)
    assert time.monotonic() - started < 0.5
    log.flush()  # returns once every batch has used up its retries; raises nothing
    assert time.monotonic() - started >= sum(requestlog._RETRIES_S)
    assert log.failed_writes == len(lost)
    # Each lost batch used every retry before it was dropped.
    assert len(backoff.waits) % len(requestlog._RETRIES_S) == 0 and backoff.waits
    assert "not logged" in caplog.text and "cannot reach the database" in caplog.text
    assert own_pg.password not in caplog.text

    own_pg.start_server()
    resumed = _record(log, "resumed", 4)
    log.flush()
    assert log.failed_writes == len(lost)  # nothing more lost
    assert _logged(log_url) == set(before + resumed)
    rows = log.query()
    assert [row["request_id"] for row in rows] == before + resumed  # ordered by time
    log.close()
    assert log.failed_writes == len(lost)


def test_feedback_and_reads_while_down_raise_a_clear_error_and_recover(own_pg, log_url):
    """Not on the writer's path: feedback/query fail at once with the store's error (the server
    answers 500 to that request), and work again once the database is back."""
    with RequestLog(log_url) as log:
        (rid,) = _record(log, "r", 1)
        log.flush()
        own_pg.stop_server()
        with pytest.raises(requestlog.RequestLogError, match="cannot reach the database") as caught:
            log.feedback(rid, accepted=True)
        assert own_pg.password not in str(caught.value)
        own_pg.start_server()
        assert log.feedback(rid, accepted=True)
        assert log.query()[0]["accepted"] is True
        assert log.failed_writes == 0


# A row the database refuses for what it holds (not because the server is away) must cost
# only itself: "one bad entry must not cost the batch its rows" (`RequestLog._write`).


def test_a_request_text_holding_nul_costs_no_other_row(log_url, monkeypatch):
    monkeypatch.setattr(requestlog, "_RETRIES_S", (0.01,))
    with RequestLog(log_url) as log:
        warm = _record(log, "warm", 1)
        log.flush()
        good = [f"good-{i}" for i in range(10)]
        for rid in good[:5]:
            log.record(LogEntry(request_id=rid, endpoint="/v1/cv/rewrite", status=200, input_text="Led a team"))
        # Valid JSON ("\u0000") that the API accepts in any text field.
        log.record(LogEntry(request_id="nul", endpoint="/v1/cv/rewrite", status=200, input_text="Led a\x00 team"))
        for rid in good[5:]:
            log.record(LogEntry(request_id=rid, endpoint="/v1/cv/rewrite", status=200, input_text="Led a team"))
        log.flush()
        assert set(warm + good + ["nul"]) == _logged(log_url)  # NUL stored as U+FFFD
        assert log.failed_writes == 0


def test_a_row_breaking_a_constraint_does_not_stop_the_writer(log_url):
    with RequestLog(log_url) as log:
        before = _record(log, "before", 2)
        log.record(LogEntry(request_id="bad", endpoint=None, status=200))  # a server bug, say
        log.flush()
        after = _record(log, "after", 2)
        log.flush()
        assert log._writer.is_alive()
        assert _logged(log_url) == set(before + after)
        assert log.failed_writes == 1
