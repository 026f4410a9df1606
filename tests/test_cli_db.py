"""`cvml db upgrade | status | copy` and the storage layer's contract on both backends: migrations,
version checks, Supabase's rules (cvml schema, RLS, views), copying SQLite into Postgres, and
one-line errors that never show the password."""

from __future__ import annotations

import json
import os

import pytest

from cvml.cli.main import app
from cvml.registry import Registry
from cvml.registry.db import REGISTRY
from cvml.serve.requestlog import REQUEST_LOG, LogEntry, RequestLog
from cvml.storage import storage_url
from cvml.storage.database import _create_engine


def _db(runner, *args, code=0):
    result = runner.invoke(app, ["db", *map(str, args)])
    assert result.exit_code == code, result.output
    return result


def _model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_upgrade_is_idempotent_and_status_counts_rows(runner, store_backend, tmp_path):
    url = os.environ.get("CVML_DB_URL")  # None: the SQLite files under CVML_HOME
    first = json.loads(_db(runner, "upgrade", "--json").stdout)["schemas"]
    # The Postgres fixture migrated already; SQLite files are created here.
    assert {name: item["version"] for name, item in first.items()} == {
        "registry": REGISTRY.version, "request log": REQUEST_LOG.version
    }
    again = json.loads(_db(runner, "upgrade", "--json").stdout)["schemas"]
    assert all(item["applied"] == [] for item in again.values())
    Registry().register(_model(tmp_path), "cv", "base")
    status = json.loads(_db(runner, "status", "--json").stdout)["schemas"]
    assert status["registry"]["tables"]["model_versions"] == 1 and status["registry"]["pending"] == []
    assert status["request log"]["tables"] == {"meta": 0, "requests": 0, "purges": 0}  # never a key in meta
    if url:
        assert status["registry"]["database"].startswith("postgresql://cvml:***@127.0.0.1:")


def test_a_fresh_postgres_is_refused_until_upgraded(runner, pg_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CVML_DB_URL", pg_db_url)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"is at version 0, this cvml needs {REGISTRY.version}" in result.stderr and "cvml db upgrade" in result.stderr
    status = _db(runner, "status", code=1)
    assert "1, 2" in status.stdout and "cvml db upgrade" in status.stderr
    _db(runner, "upgrade")
    assert runner.invoke(app, ["models", "list"]).exit_code == 0


def test_postgres_tables_live_in_the_cvml_schema_with_rls_and_the_app_views(pg_db_url, runner):
    from sqlalchemy import text

    _db(runner, "upgrade", "--url", pg_db_url)
    url = storage_url(pg_db_url, default_file=None)
    engine = _create_engine(url, None)
    with engine.connect() as conn:
        tables = dict(conn.execute(text(
            "SELECT tablename, rowsecurity FROM pg_tables WHERE schemaname = 'cvml'"
        )).all())
        public = conn.execute(text("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
        views = set(conn.execute(text("SELECT viewname FROM pg_views WHERE schemaname = 'cvml_app'")).scalars())
        policies = conn.execute(text("SELECT COUNT(*) FROM pg_policies WHERE schemaname = 'cvml'")).scalar()
    engine.dispose()
    assert set(tables) >= {"model_versions", "alias_stack", "events", "experiments", "requests", "meta"}
    assert all(tables.values()) and policies == 0  # RLS on, no policy: server-side access only
    assert public == 0 and views == {"live_models", "experiments"}


def test_copy_moves_a_sqlite_registry_and_log_into_postgres(runner, pg_db_url, tmp_path, cvml_home):
    reg = Registry()
    reg.register(_model(tmp_path), "cv", "base")
    reg.register(_model(tmp_path), "cv", "finetune", parent="cv@1")
    reg.promote("cv@2", "prod")
    with RequestLog() as log:
        log.record(LogEntry(request_id="r1", endpoint="/v1/cv/rewrite", status=200, user_id="u1", input_text="hi"))
    report = json.loads(_db(runner, "copy", "--from", cvml_home, "--to", pg_db_url, "--json").stdout)["schemas"]
    assert report["registry"]["rows"]["model_versions"] == 2 and report["request log"]["rows"]["requests"] == 1
    copied = Registry(pg_db_url)
    assert copied.resolve("cv@prod").version == 2 and copied.lineage("cv@2").ancestors[0].ref == "cv@1"
    # Event ids came along and the identity moved past them: the next event is numbered after.
    event = copied.promote("cv@1", "canary")
    assert event.id == max(e.id for e in reg.events()) + 1
    # Key ids came along (the key itself stays in this host's key file): forget finds the copied row.
    with RequestLog(pg_db_url) as log:
        assert log.forget("u1") == 1
    again = _db(runner, "copy", "--from", cvml_home, "--to", pg_db_url, code=2)
    assert "already holds rows" in again.stderr


def test_bad_urls_are_one_line_errors_without_the_password(runner, pg_url):
    port = pg_url.rsplit(":", 1)[1].split("/")[0]
    for url, message in (
        (f"postgresql://cvml:wrong-secret@127.0.0.1:{port}/cvml_test", "refused the credentials"),
        ("postgresql://cvml:wrong-secret@127.0.0.1:1/cvml", "cannot reach the database"),
        (f"postgresql://cvml:wrong-secret@127.0.0.1:{port}/no_such_db", "refused the credentials"),  # auth comes first
        ("mysql://u:wrong-secret@h/db", "not mysql"),
    ):
        result = runner.invoke(app, ["db", "status", "--url", url])
        assert result.exit_code in (1, 2) and message in result.stderr, result.output
        assert "wrong-secret" not in result.output and "Traceback" not in result.output


def test_a_schema_newer_than_the_code_is_refused(store_backend, tmp_path):
    from cvml.errors import RegistryError
    from cvml.registry.db import REGISTRY
    from cvml.storage import Database

    reg = Registry()
    reg.register(_model(tmp_path), "cv", "base")
    db = Database.open(reg.url, REGISTRY)
    with db.write() as tx:
        tx.execute(f"INSERT INTO {db.version_table} (version, applied_at) VALUES (?, ?)", (REGISTRY.version + 1, "later"))
    with pytest.raises(RegistryError, match="newer than this cvml") as info:
        Registry().names()
    assert "upgrade cvml" in info.value.hint


def test_the_transaction_pooler_port_gets_no_client_pool_and_no_prepared_statements():
    from sqlalchemy.pool import NullPool

    pooled = storage_url("postgresql://cvml:pw@db.example.supabase.co:6543/postgres", default_file=None)
    direct = storage_url("postgres://cvml:pw@db.example.supabase.co:5432/postgres", default_file=None)
    assert pooled.pooled and not direct.pooled
    assert pooled.display == "postgresql://cvml:***@db.example.supabase.co:6543/postgres"
    engine = _create_engine(pooled, None)
    assert isinstance(engine.pool, NullPool)
    assert pooled.sqlalchemy_url.startswith("postgresql+psycopg://")
