"""Privacy and hardening of the request log: failing closed when it cannot write, nothing
raw with `log_text=none` (checks included), keys outside the database, retention enforced.

The server tests use a fake model (no engine work): probes, metrics and retention need
no generation.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import os
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cvml.cli.main import app
from cvml.errors import ConfigError
from cvml.modelio import ModelRef
from cvml.recipe import ServeSpec
from cvml.serve import requestlog
from cvml.serve.pool import ServedModel
from cvml.serve.requestlog import REQUEST_LOG, LogEntry, RequestLog, RequestLogError
from cvml.serve.server import BackgroundServer, build_context
from cvml.storage import Database, Schema, storage_url

SENTENCE = "My name is Anna Kowalczyk and I worked with Piotr Nowak at Acme"
RAW = ("Anna", "Kowalczyk", "anna", "kowalczyk", "Piotr", "Nowak", "Acme", "acme")
# What a safety check may report about that request: names, an employer, amounts.
CHECKS = {
    "pii_leak": {"flagged": True, "types": ["NAME"], "n_leaks": 1, "values": ["Piotr Nowak"]},
    "fabrication": {
        "flagged": True, "n_claims": 2,
        "claims": [{"kind": "employer", "text": "Acme", "normalized": "acme", "span": [40, 44]},
                   {"kind": "money", "text": "$90,000 at Acme for Anna Kowalczyk", "span": [0, 7]}],
    },
}  # fmt: skip
KEY_A, KEY_B = "a1" * 32, "b2" * 32


def entry(request_id: str, **fields) -> LogEntry:
    return LogEntry(request_id=request_id, endpoint="/v1/cv/rewrite", status=fields.pop("status", 200), **fields)


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


@pytest.fixture
def location(tmp_path, store_backend) -> Path | str:
    if store_backend == "postgres":
        return os.environ["CVML_DB_URL"]
    return tmp_path / "logs" / "requests.db"


def stored(location, log: RequestLog) -> str:
    """Everything the database holds for the log: the SQLite files' bytes, or every value
    of every row of its tables on Postgres."""
    log.flush()
    if isinstance(location, Path):
        log.close()
        return db_bytes(location).decode("latin-1")
    with log._db.read() as tx:
        return json.dumps(
            {t: [list(r) for r in tx.execute(f"SELECT * FROM {t}").fetchall()] for t in REQUEST_LOG.table_names}
        )


# ------------------------------------------------------------------ item 6: nothing raw


def test_log_text_none_stores_nothing_of_the_request_not_even_in_checks(location):
    log = RequestLog(location, log_text="none")
    log.record(entry("r1", user_id="anna-k", input_text=SENTENCE, output_text=f"Led sales at Acme. {SENTENCE}",
                     error=f"failed for {SENTENCE}", checks=CHECKS, pii_leak=True, fabrication=True))  # fmt: skip
    [row] = log.query()
    assert (row["pii_leak"], row["fabrication"]) == (True, True)
    # Only the checks' flags and counts are kept.
    assert row["checks"] == {"pii_leak": {"flagged": True, "n_leaks": 1}, "fabrication": {"flagged": True, "n_claims": 2}}
    everything = stored(location, log)
    for value in RAW:
        assert value not in everything, value


def test_redacted_checks_share_the_requests_placeholders(location):
    text = f"Anna Kowalczyk\n{SENTENCE}. Email anna.k@example.com"
    checks = {"fabrication": {"flagged": True, "claims": [
        {"kind": "school", "text": "Anna Kowalczyk", "normalized": "anna kowalczyk"},
        {"kind": "email", "text": "write to anna.k@example.com", "n": 3},
    ]}, "Anna Kowalczyk": ["anna.k@example.com"]}  # fmt: skip
    log = RequestLog(location)
    log.record(entry("r1", input_text=text, output_text="Contact anna.k@example.com", checks=checks))
    [row] = log.query()
    assert row["input_text"].startswith("<NAME_1>\nMy name is <NAME_1>") and "<EMAIL_1>" in row["input_text"]
    claims = row["checks"]["fabrication"]["claims"]
    assert claims[0] == {"kind": "school", "text": "<NAME_1>", "normalized": "<NAME_1>"}
    assert claims[1] == {"kind": "email", "text": "write to <EMAIL_1>", "n": 3}
    assert row["checks"]["<NAME_1>"] == ["<EMAIL_1>"]
    everything = stored(location, log)
    for value in ("Kowalczyk", "kowalczyk", "anna.k@example.com"):
        assert value not in everything, value


# ------------------------------------------------------ item 3: failing closed, bounded


def _live_raw_entries(marker: str) -> int:
    gc.collect()
    return sum(
        1 for o in gc.get_objects()
        if isinstance(o, LogEntry) and any(marker in (v or "") for v in (o.input_text, o.output_text, o.error))
    )  # fmt: skip


@pytest.mark.integration  # seconds: backoff waits and heap scans
def test_a_log_that_cannot_write_bounds_its_queue_keeps_no_raw_text_and_counts(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(requestlog, "_RETRIES_S", (0.5, 0.5))
    monkeypatch.setattr(requestlog, "_MAX_QUEUED", 40, raising=False)
    log = RequestLog(tmp_path / "requests.db")
    writing, fail, proceed = threading.Event(), threading.Event(), threading.Event()

    class Clock:  # the writer's backoff waits until the test has looked (no race on a slow machine)
        @staticmethod
        def sleep(seconds: float) -> None:
            proceed.wait(10)

    monkeypatch.setattr(requestlog, "time", Clock)

    def refuse(*args, **kwargs):  # the database hangs, then refuses
        writing.set()
        fail.wait(10)
        raise RequestLogError(f"cannot reach the database at {tmp_path}")

    monkeypatch.setattr(log._db, "write", refuse)
    log.record(entry("first", input_text="zebracorn first"))
    assert writing.wait(5)
    for i in range(100):  # queued while the log still looks healthy; the test keeps no reference
        log.record(entry(f"r{i}", user_id="u", input_text=f"zebracorn secret {i}", output_text="zebracorn out"))
    assert log.health()["queued"] == 40 and log.dropped == 60
    assert log.health()["status"] == "ok" and _live_raw_entries("zebracorn") == 40
    fail.set()
    deadline = time.monotonic() + 5
    while log.health()["status"] != "degraded":
        assert time.monotonic() < deadline, "the log never said it is degraded"
        time.sleep(0.01)
    time.sleep(0.1)
    assert log.health()["queued"] == 40  # still waiting to be written...
    assert _live_raw_entries("zebracorn") == 0  # ...but without their raw text
    assert log.text_dropped == 40
    log.record(entry("late", input_text="zebracorn late"))  # the queue is still full
    assert _live_raw_entries("zebracorn") == 0 and log.dropped == 61
    proceed.set()
    log.flush()
    assert log.failed_writes == 1 + 40 and log.health()["status"] == "degraded"
    assert "not logged" in caplog.text and "degraded" in caplog.text
    log.close()


def test_writing_again_ends_the_degraded_state(tmp_path, monkeypatch):
    monkeypatch.setattr(requestlog, "_RETRIES_S", (0.01,))
    log = RequestLog(tmp_path / "requests.db")
    real = log._db.write
    down = threading.Event()
    down.set()

    def flaky(*args, **kwargs):
        if down.is_set():
            raise RequestLogError("cannot reach the database")
        return real(*args, **kwargs)

    monkeypatch.setattr(log._db, "write", flaky)
    log.record(entry("lost", input_text="Led a team"))
    log.flush()
    assert log.health()["status"] == "degraded" and log.failed_writes == 1
    down.clear()
    log.record(entry("kept", input_text="Led a team"))  # still degraded when queued: no text
    log.record(entry("after", input_text="Led a team"))
    log.flush()
    assert log.health()["status"] == "ok"
    rows = {r["request_id"]: r for r in log.query()}
    assert set(rows) == {"kept", "after"} and rows["kept"]["input_text"] is None
    log.record(entry("healthy", input_text="Led a team"))
    assert {r["request_id"]: r["input_text"] for r in log.query()}["healthy"] == "Led a team"
    log.close()


# -------------------------------------------------------------- the server, a fake model


def fake_server(tmp_path: Path, **spec) -> BackgroundServer:
    ref = ModelRef(path=tmp_path, name="fake", version=1, ref="fake@1", kind="full")

    def opener(variant, model_ref):
        engine = SimpleNamespace(num_running=0, num_waiting=0)
        return ServedModel(variant, model_ref, None, engine, 64, release=lambda: None)

    spec.setdefault("log_db", str(tmp_path / "requests.db"))
    return BackgroundServer(ServeSpec(model="fake@1", port=0, **spec), opener=opener, resolver=lambda _: ref)


def metric(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def test_ready_and_metrics_report_a_healthy_log(tmp_path):
    with fake_server(tmp_path) as server:
        ready = httpx.get(f"{server.url}/ready")
        metrics = httpx.get(f"{server.url}/metrics").text
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["request_log"] == "ok"
    assert metric(metrics, "cvml_request_log_degraded") == 0
    assert metric(metrics, "cvml_request_log_failed_writes_total") == 0
    assert metric(metrics, "cvml_request_log_dropped_total") == 0
    assert metric(metrics, "cvml_request_log_queue_depth") == 0


def test_a_server_whose_log_cannot_be_opened_serves_degraded_and_stores_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(requestlog, "_RETRIES_S", (0.01,))
    (tmp_path / "a-file").write_text("not a folder")
    with fake_server(tmp_path, log_db=str(tmp_path / "a-file" / "requests.db")) as server:
        assert "request log" in caplog.text and "degraded" in caplog.text
        ready = httpx.get(f"{server.url}/ready")
        server.ctx.record(entry("r1", input_text="zebracorn raw"))
        server.ctx.request_log.flush()
        metrics = httpx.get(f"{server.url}/metrics").text
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert "cannot" in ready.json()["request_log"]
    assert metric(metrics, "cvml_request_log_degraded") == 1
    assert metric(metrics, "cvml_request_log_failed_writes_total") == 1


# ------------------------------------------------------------ item 7: keys outside data


def _meta(log: RequestLog) -> dict[str, str]:
    with log._db.read() as tx:
        return {r["key"]: r["value"] for r in tx.execute("SELECT key, value FROM meta").fetchall()}


def test_no_user_key_secret_is_kept_in_the_database(location, store_backend, monkeypatch, cvml_home):
    if store_backend == "postgres":
        monkeypatch.setenv("CVML_LOG_KEY", KEY_A)
    with RequestLog(location) as log:
        log.record(entry("r1", user_id="u1"))
        [row] = log.query()
        meta = _meta(log)
    assert "user_key_secret" not in meta
    if store_backend == "postgres":
        assert row["user_key"] == hmac.new(bytes.fromhex(KEY_A), b"u1", hashlib.sha256).hexdigest()
        assert KEY_A not in json.dumps(meta)
        return
    [key_file] = (cvml_home / "keys").iterdir()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((cvml_home / "keys").stat().st_mode) == 0o700
    secret = bytes.fromhex(key_file.read_text().strip())
    assert row["user_key"] == hmac.new(secret, b"u1", hashlib.sha256).hexdigest()
    assert secret.hex().encode() not in db_bytes(location)


@pytest.mark.sqlite_only
def test_a_legacy_secret_in_the_database_is_moved_out_on_first_open(location, store_backend, cvml_home):
    legacy = "c3" * 32
    old_schema = Schema(name=REQUEST_LOG.name, version_table=REQUEST_LOG.version_table,
                        migrations=requestlog._MIGRATIONS[:1], sqlite_pragmas=REQUEST_LOG.sqlite_pragmas)  # fmt: skip
    old = Database.open(storage_url(location, default_file=location), old_schema)
    user_key = hmac.new(bytes.fromhex(legacy), b"u1", hashlib.sha256).hexdigest()
    with old.write() as tx:
        tx.execute("INSERT INTO meta (key, value) VALUES ('user_key_secret', ?)", (legacy,))
        tx.execute("INSERT INTO requests (request_id, at, endpoint, status, user_key) VALUES "
                   "('old', '2025-01-01T00:00:00.000000+00:00', '/v1/cv/rewrite', 200, ?)", (user_key,))  # fmt: skip
    Database.dispose(f"sqlite:///{location}")
    with RequestLog(location) as log:
        assert "user_key_secret" not in _meta(log)
        log.record(entry("new", user_id="u1"))
        assert log.forget("u1") == 2  # the old row (legacy key) and the new one
    assert legacy.encode() not in db_bytes(location)
    assert [p.read_text().strip() for p in (cvml_home / "keys").iterdir()] == [legacy]


def test_rotation_keeps_old_rows_forgettable_and_drops_a_key_once_unused(runner, tmp_path, cvml_home):
    db = tmp_path / "requests.db"
    now = datetime.now(timezone.utc)
    with RequestLog(db) as log:
        log.record(entry("old-u1", user_id="u1", at=now - timedelta(days=40)))
        log.record(entry("old-u2", user_id="u2", at=now - timedelta(days=40)))
    rotated = runner.invoke(app, ["logs", "rotate-key", "--db", str(db), "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert len(list((cvml_home / "keys").iterdir())) == 2
    with RequestLog(db) as log:
        log.record(entry("new-u1", user_id="u1"))
        keys = {r["request_id"]: r["key_id"] for r in log.query()}
        assert keys["old-u1"] == keys["old-u2"] != keys["new-u1"] == json.loads(rotated.stdout)["key_id"]
        assert log.forget("u1") == 2
    kept = runner.invoke(app, ["logs", "rotate-key", "--drop-old", "--db", str(db), "--json"])
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["dropped"] == [] and json.loads(kept.stdout)["kept"] == {keys["old-u2"]: 1}
    assert runner.invoke(app, ["logs", "purge", "--older-than", "30d", "--db", str(db)]).exit_code == 0
    dropped = runner.invoke(app, ["logs", "rotate-key", "--drop-old", "--db", str(db), "--json"])
    assert json.loads(dropped.stdout)["dropped"] == [keys["old-u2"]]
    assert len(list((cvml_home / "keys").iterdir())) == 1


def test_a_missing_key_makes_forget_fail_loudly_not_silently(tmp_path, cvml_home):
    db = tmp_path / "requests.db"
    with RequestLog(db) as log:
        log.record(entry("r1", user_id="u1"))
    for key_file in (cvml_home / "keys").iterdir():
        key_file.unlink()
    with RequestLog(db) as log, pytest.raises(RequestLogError, match="key") as info:
        log.forget("u1")
    assert "CVML_LOG_KEY" in info.value.hint
    assert len(RequestLog(db).query()) == 1


def test_the_environment_key_is_used_and_shared_by_replicas(tmp_path, monkeypatch):
    monkeypatch.setenv("CVML_LOG_KEY", f"{KEY_B},{KEY_A}")
    with RequestLog(tmp_path / "requests.db") as log:
        log.record(entry("r1", user_id="u1"))
        assert log.query()[0]["user_key"] == hmac.new(bytes.fromhex(KEY_B), b"u1", hashlib.sha256).hexdigest()
    assert not (tmp_path / "cvml-home" / "keys").exists()
    monkeypatch.setenv("CVML_LOG_KEY", "not-hex")
    with pytest.raises(ConfigError, match="CVML_LOG_KEY"):
        RequestLog(tmp_path / "requests.db").record(entry("r2", user_id="u1"))


def test_serving_a_postgres_log_without_CVML_LOG_KEY_is_refused(pg_db_url, monkeypatch, tmp_path):
    monkeypatch.delenv("CVML_LOG_KEY", raising=False)
    spec = ServeSpec(model="fake@1", port=0, log_db=pg_db_url)
    with pytest.raises(ConfigError, match="CVML_LOG_KEY") as info:
        build_context(spec, opener=lambda *a: None, resolver=lambda _: None)
    assert "every replica" in info.value.hint


@pytest.mark.sqlite_only
def test_database_files_and_folders_are_private(location, store_backend):
    old = os.umask(0o022)
    try:
        with RequestLog(location) as log:
            log.record(entry("r1"))
            log.flush()
            for path in location.parent.glob(location.name + "*"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)
    assert stat.S_IMODE(location.parent.stat().st_mode) == 0o700


# ------------------------------------------------------------------ item 8: retention


def test_purges_are_audited_and_stats_show_the_last_one(location, runner):
    now = datetime.now(timezone.utc)
    with RequestLog(location) as log:
        log.record(entry("old", at=now - timedelta(days=40)))
        log.record(entry("new", at=now))
        assert log.purge(timedelta(days=30)) == 1
        with log._db.read() as tx:
            [purge] = tx.execute("SELECT at, older_than_s, deleted FROM purges").fetchall()
        assert (purge["older_than_s"], purge["deleted"]) == (30 * 86400, 1)
        stats = log.stats()
    assert stats["last_purge"]["deleted"] == 1 and stats["last_purge"]["at"] == purge["at"]
    text = runner.invoke(app, ["logs", "stats", "--db", str(location)])
    assert "last purge" in text.stdout.lower() and "1 deleted" in text.stdout


def test_the_server_enforces_retention_on_start_and_while_serving(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(requestlog, "RETENTION_EVERY_S", 0.2, raising=False)
    caplog.set_level(logging.INFO, logger="cvml.serve.requestlog")
    db = tmp_path / "requests.db"
    now = datetime.now(timezone.utc)
    with RequestLog(db) as log:
        log.record(entry("ancient", at=now - timedelta(days=9)))
        log.record(entry("recent", at=now - timedelta(days=1)))

    def ids(server) -> set[str]:
        return {r["request_id"] for r in server.ctx.request_log.query()}

    with fake_server(tmp_path, log_retention_days=7) as server:
        deadline = time.monotonic() + 10
        while "ancient" in ids(server):
            assert time.monotonic() < deadline, "retention was not enforced on start"
            time.sleep(0.05)
        server.ctx.record(entry("aged-while-serving", at=now - timedelta(days=8)))
        while "aged-while-serving" in ids(server):
            assert time.monotonic() < deadline, "retention was not enforced while serving"
            time.sleep(0.05)
        assert ids(server) == {"recent"}
    assert "purged" in caplog.text
    with RequestLog(db) as log:
        assert log.stats()["last_purge"]["older_than_s"] == 7 * 86400
