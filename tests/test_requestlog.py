"""The request log: redaction down to the file bytes, retention, erasure, feedback, concurrency."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cvml.errors import ConfigError
from cvml.serve.requestlog import LogEntry, RequestLog, RequestLogError, engine_figures
from cvml.serve.types import RequestStats

EMAIL, PHONE, NAME = "jane.doe@example.com", "+1 415 555 0132", "Jane Doe"
INPUT = f"{NAME} — Data Analyst\nEmail {EMAIL}, phone {PHONE}\nBuilt dashboards for sales."
OUTPUT = f"Built 12 Tableau dashboards used by 40 sales staff. Contact {NAME} at {EMAIL}."


@pytest.fixture
def log_path(tmp_path, store_backend) -> Path | str:
    """A SQLite file, or the Postgres database of this run (each test gets a fresh one)."""
    if store_backend == "postgres":
        return os.environ["CVML_DB_URL"]
    return tmp_path / "logs" / "requests.db"


@pytest.fixture
def log(log_path):
    with RequestLog(log_path) as opened:
        yield opened


def entry(request_id: str, **fields) -> LogEntry:
    return LogEntry(request_id=request_id, endpoint="/v1/cv/rewrite", status=fields.pop("status", 200), **fields)


def db_bytes(path: Path) -> bytes:
    """Every file SQLite keeps for the database: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def ids(log: RequestLog, **filters) -> list[str]:
    return [row["request_id"] for row in log.query(**filters)]


def test_default_location_is_in_cvml_home(cvml_home):
    with RequestLog() as log:
        assert log.path == cvml_home / "requests.db"
    assert log.path.is_file()
    with RequestLog(cvml_home) as in_folder:
        assert in_folder.path == cvml_home / "requests.db"


def test_a_recorded_request_reads_back_with_every_field(log):
    at = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    log.record(
        entry(
            "r1", at=at, experiment="exp-1", variant="b", model_ref="cv@canary", model_version="cv@4",
            user_id="user-7", task="rewrite_bullet", finish_reason="stop", prompt_tokens=31, completion_tokens=17,
            queue_s=0.002, ttft_s=0.05, e2e_s=0.4, itl_mean_s=0.02, pii_leak=False, fabrication=True,
            checks={"fabrication": {"numbers": ["12"]}}, input_text="Built dashboards", output_text="Built 12",
        )
    )  # fmt: skip
    [row] = log.query()
    assert row["at"] == "2025-03-01T10:30:00.000000+00:00"  # stored in UTC
    assert (row["experiment"], row["variant"], row["model_ref"], row["model_version"]) == (
        "exp-1", "b", "cv@canary", "cv@4",
    )  # fmt: skip
    assert (row["prompt_tokens"], row["completion_tokens"], row["e2e_s"], row["itl_mean_s"]) == (31, 17, 0.4, 0.02)
    assert (row["pii_leak"], row["fabrication"]) == (False, True)
    assert row["checks"] == {"fabrication": {"numbers": ["12"]}}
    assert (row["input_text"], row["output_text"], row["error"]) == ("Built dashboards", "Built 12", None)
    assert (row["accepted"], row["rating"], row["feedback_at"]) == (None, None, None)
    assert "user_id" not in row and len(row["user_key"]) == 64 and "user-7" not in row["user_key"]


@pytest.mark.sqlite_only
def test_text_is_stored_redacted_and_no_raw_value_reaches_the_files(log_path):
    with RequestLog(log_path) as log:
        log.record(entry("r1", user_id="raw-user-id-7", input_text=INPUT, output_text=OUTPUT,
                         error=f"could not reach {EMAIL}"))  # fmt: skip
        [row] = log.query()
    # One placeholder scope per request: the output's name and email match the input's.
    assert row["input_text"] == (
        "<NAME_1> — Data Analyst\nEmail <EMAIL_1>, phone <PHONE_1>\nBuilt dashboards for sales."
    )
    assert row["output_text"] == "Built 12 Tableau dashboards used by 40 sales staff. Contact <NAME_1> at <EMAIL_1>."
    assert row["error"] == "could not reach <EMAIL_1>"
    raw = db_bytes(log_path)
    assert b"Tableau dashboards" in raw  # the text is there, only its PII is not
    for value in (EMAIL, PHONE, NAME, "555 0132", "raw-user-id-7"):
        assert value.encode() not in raw, value
    assert not Path(f"{log_path}-wal").exists() or Path(f"{log_path}-wal").stat().st_size == 0


@pytest.mark.sqlite_only
def test_log_text_none_stores_no_text(log_path):
    with RequestLog(log_path, log_text="none") as log:
        log.record(entry("r1", input_text=INPUT, output_text=OUTPUT, error="prompt of Jane Doe too long", status=413))
        [row] = log.query()
    assert (row["input_text"], row["output_text"], row["error"]) == (None, None, "error")
    raw = db_bytes(log_path)
    for value in ("Data Analyst", "Tableau", "Jane", "too long"):
        assert value.encode() not in raw, value


def test_unknown_log_text_mode_is_a_config_error(log_path):
    with pytest.raises(ConfigError, match="unknown log_text 'full'"):
        RequestLog(log_path, log_text="full")


def test_purge_removes_exactly_the_old_rows(log):
    now = datetime.now(timezone.utc)
    for name, age in (("d40", timedelta(days=40)), ("d31", timedelta(days=31)),
                      ("d29", timedelta(days=29)), ("h1", timedelta(hours=1))):  # fmt: skip
        log.record(entry(name, at=now - age))
    assert log.purge(timedelta(days=30)) == 2
    assert ids(log) == ["d29", "h1"]
    assert log.purge(timedelta(days=30)) == 0
    assert log.purge(timedelta(minutes=30)) == 2
    assert ids(log) == []
    with pytest.raises(RequestLogError, match="must be positive"):
        log.purge(timedelta(0))


@pytest.mark.sqlite_only
def test_forget_removes_exactly_one_users_rows(log_path):
    with RequestLog(log_path) as log:
        for i in range(3):
            log.record(entry(f"u1-{i}", user_id="u1", output_text=f"zebracorn answer {i}"))
        for i in range(2):
            log.record(entry(f"u2-{i}", user_id="u2", output_text="kept answer"))
        log.record(entry("anon", output_text="anonymous answer"))
        assert log.forget("u1") == 3
        assert ids(log) == ["u2-0", "u2-1", "anon"]
        assert (log.forget("u1"), log.forget("nobody")) == (0, 0)
        with pytest.raises(RequestLogError, match="needs a user id"):
            log.forget("")
    # The erased rows' text is overwritten, not left in free pages or the WAL.
    raw = db_bytes(log_path)
    assert b"zebracorn" not in raw and b"kept answer" in raw


def test_the_user_key_secret_survives_a_restart(log_path, tmp_path):
    with RequestLog(log_path) as first:
        first.record(entry("before", user_id="u1"))
        first.record(entry("other", user_id="u2"))
    with RequestLog(log_path) as second:
        second.record(entry("after", user_id="u1"))
        keys = {row["request_id"]: row["user_key"] for row in second.query()}
        assert keys["before"] == keys["after"] != keys["other"]
        assert second.forget("u1") == 2
        assert ids(second) == ["other"]
    # Another database has another secret: keys cannot be matched across logs.
    with RequestLog(tmp_path / "elsewhere.db") as elsewhere:
        elsewhere.record(entry("x", user_id="u1"))
        assert elsewhere.query()[0]["user_key"] != keys["before"]


def test_feedback_updates_the_row_and_keeps_what_it_does_not_set(log):
    log.record(entry("r1"))  # no flush: feedback must find a row that is still queued
    assert log.feedback("r1", accepted=True) is True
    [row] = log.query()
    assert (row["accepted"], row["rating"]) == (True, None)
    first_at = row["feedback_at"]
    assert datetime.fromisoformat(first_at) <= datetime.now(timezone.utc)
    assert log.feedback("r1", rating=4.5) is True
    [row] = log.query()
    assert (row["accepted"], row["rating"]) == (True, 4.5) and row["feedback_at"] >= first_at
    assert log.feedback("r1", accepted=False) is True
    assert log.query()[0]["accepted"] is False


def test_feedback_on_an_unknown_request_or_without_a_verdict(log):
    log.record(entry("r1"))
    assert log.feedback("nope", accepted=True) is False
    with pytest.raises(RequestLogError, match="needs accepted or rating"):
        log.feedback("r1")
    with pytest.raises(RequestLogError, match="not a finite number"):
        log.feedback("r1", rating=float("nan"))
    assert log.query()[0]["accepted"] is None


def test_concurrent_recording_keeps_every_row(log):
    threads, per_thread = 8, 250

    def work(t: int) -> None:
        for i in range(per_thread):
            log.record(entry(f"t{t}-{i}", user_id=f"user-{i % 10}", variant="ab"[i % 2], e2e_s=0.1))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    got = ids(log)
    assert len(got) == threads * per_thread
    assert set(got) == {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    stats = log.stats()
    assert (stats["requests"], stats["users"]) == (2000, 10)
    assert [(v["variant"], v["requests"]) for v in stats["variants"]] == [("a", 1000), ("b", 1000)]
    assert log.failed_writes == 0


def test_two_logs_on_one_file_share_it(log_path):
    """Two server processes (here: two RequestLogs, each with its own writer) on one database."""
    first, second = RequestLog(log_path), RequestLog(log_path)

    def work(log: RequestLog, prefix: str) -> None:
        for i in range(300):
            log.record(entry(f"{prefix}-{i}", user_id="shared-user"))

    workers = [threading.Thread(target=work, args=(log, name)) for log, name in ((first, "p1"), (second, "p2"))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    first.close()
    second.close()
    with RequestLog(log_path) as reopened:
        assert len(ids(reopened)) == 600
        assert reopened.stats()["users"] == 1  # one secret, so one key for the user
        assert reopened.forget("shared-user") == 600


def test_a_duplicate_request_id_keeps_the_first_row(log):
    log.record(entry("r1", variant="a"))
    log.record(entry("r1", variant="b"))
    log.record(entry("r2", variant="b"))
    assert [(row["request_id"], row["variant"]) for row in log.query()] == [("r1", "a"), ("r2", "b")]


def test_a_bad_entry_costs_only_its_own_row(log):
    log.record(entry("good-1"))
    log.record(entry("bad", input_text=123))  # not text: the redactor cannot read it
    log.record(entry("good-2"))
    assert ids(log) == ["good-1", "good-2"]
    assert log.failed_writes == 1


@pytest.mark.sqlite_only
def test_close_writes_what_is_queued_and_checkpoints(log_path):
    log = RequestLog(log_path)
    for i in range(300):
        log.record(entry(f"r{i}"))
    log.close()
    log.close()  # idempotent
    wal = Path(f"{log_path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(RequestLogError, match="is closed"):
        log.record(entry("late"))
    assert len(RequestLog(log_path).query()) == 300


def test_times_must_carry_an_offset(log):
    with pytest.raises(RequestLogError, match="has no UTC offset"):
        log.record(entry("r1", at=datetime(2025, 1, 1)))
    with pytest.raises(RequestLogError, match="not an ISO-8601 time"):
        log.record(entry("r1", at="yesterday"))
    log.record(entry("r2", at="2025-01-01T00:00:00-05:00"))
    assert log.query()[0]["at"] == "2025-01-01T05:00:00.000000+00:00"


def test_query_filters_and_orders(log):
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i, (experiment, variant) in enumerate([("e1", "a"), ("e1", "b"), ("e2", "a"), ("e1", "a")]):
        log.record(entry(f"r{i}", at=base + timedelta(hours=i), experiment=experiment, variant=variant))
    assert ids(log, experiment="e1") == ["r0", "r1", "r3"]
    assert ids(log, experiment="e1", variant="a") == ["r0", "r3"]
    assert ids(log, since=base + timedelta(hours=1)) == ["r1", "r2", "r3"]
    assert ids(log, since="2025-01-01T02:00:00+00:00") == ["r2", "r3"]
    assert ids(log, limit=2, newest_first=True) == ["r3", "r2"]


def test_stats_per_variant(log):
    rows = [
        ("a1", "a", 200, 0.1, True, None), ("a2", "a", 200, 0.2, False, 2.0), ("a3", "a", 200, 0.3, None, None),
        ("a4", "a", 500, 9.0, None, None), ("b1", "b", 200, 0.5, True, 5.0),
    ]  # fmt: skip
    for request_id, variant, status, e2e, accepted, rating in rows:
        log.record(entry(request_id, experiment="e", variant=variant, status=status, e2e_s=e2e, ttft_s=e2e / 10,
                         completion_tokens=10, model_version=f"cv@{'34'[variant == 'b']}", user_id=request_id[:2]))
        if accepted is not None or rating is not None:
            assert log.feedback(request_id, accepted=accepted, rating=rating)
    stats = log.stats()
    assert (stats["requests"], stats["with_feedback"], stats["with_text"]) == (5, 3, 0)
    a, b = stats["variants"]
    assert (a["variant"], a["models"], a["requests"], a["errors"], a["users"]) == ("a", ["cv@3"], 4, 1, 4)
    assert (a["feedback"], a["accepted"], a["acceptance_rate"], a["ratings"], a["mean_rating"]) == (2, 1, 0.5, 1, 2.0)
    # Latency over the successful requests only: 0.1, 0.2, 0.3.
    assert a["e2e_p50_s"] == pytest.approx(0.2)
    assert a["e2e_p95_s"] == pytest.approx(0.29)
    assert a["ttft_p50_s"] == pytest.approx(0.02)
    assert a["completion_tokens"] == 30
    assert (b["variant"], b["models"], b["acceptance_rate"], b["mean_rating"]) == ("b", ["cv@4"], 1.0, 5.0)
    assert log.stats(experiment="other")["requests"] == 0


def test_engine_figures_fill_the_timings():
    stats = RequestStats(arrival=10.0, prompt_tokens=20, scheduled_at=10.01, first_token_at=10.1,
                         finished_at=10.4, completion_tokens=4, token_times=[10.1, 10.2, 10.3, 10.4],
                         finish_reason="stop")  # fmt: skip
    figures = engine_figures(stats)
    assert figures["queue_s"] == pytest.approx(0.01)
    assert figures["ttft_s"] == pytest.approx(0.1)
    assert figures["e2e_s"] == pytest.approx(0.4)
    assert figures["itl_mean_s"] == pytest.approx(0.1)
    assert (figures["prompt_tokens"], figures["completion_tokens"], figures["finish_reason"]) == (20, 4, "stop")
    assert engine_figures(RequestStats(arrival=0.0, prompt_tokens=3))["itl_mean_s"] is None


def test_a_file_that_is_not_a_request_log(tmp_path):
    bad = tmp_path / "requests.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RequestLogError, match="cannot use the request log") as info:
        RequestLog(bad)
    assert "move it away" in info.value.hint
