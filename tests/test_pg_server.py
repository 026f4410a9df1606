"""The `pg_url` / `pg_db_url` fixtures give a real PostgreSQL server and a fresh database per test."""

from __future__ import annotations

import pytest

try:
    import psycopg
except ImportError:  # every test here requests pg_db_url, which skips (or fails under CI) without it
    psycopg = None

_seen_databases: list[str] = []


def test_roundtrip_in_fresh_database(pg_db_url):
    with psycopg.connect(pg_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE models (id serial PRIMARY KEY, name text NOT NULL, score real)")
        conn.execute("INSERT INTO models (name, score) VALUES (%s, %s), (%s, %s)", ("tiny-cv", 0.5, "büro", 0.25))
        conn.commit()
    with psycopg.connect(pg_db_url) as conn:
        rows = conn.execute("SELECT name, score FROM models ORDER BY id").fetchall()
    assert rows == [("tiny-cv", 0.5), ("büro", 0.25)]


def test_server_is_postgres_15_or_later(pg_db_url):
    with psycopg.connect(pg_db_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]
    assert int(version.split(".")[0].split()[0]) >= 15, version
    assert encoding == "UTF8"


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(pg_db_url, run):
    with psycopg.connect(pg_db_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        # Fresh: nothing left over from the other run (or any other test).
        assert conn.execute("SELECT to_regclass('public.marker')").fetchone() == (None,)
        conn.execute("CREATE TABLE marker (run int)")
    assert name.startswith("t_")
    assert name not in _seen_databases
    _seen_databases.append(name)


def test_databases_are_dropped_after_use(pg_db_url):
    """The databases of the tests above are gone once they finished."""
    with psycopg.connect(pg_db_url) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        current = conn.execute("SELECT current_database()").fetchone()[0]
    assert current in names
    assert not names & set(_seen_databases)
