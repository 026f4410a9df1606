"""Connections, transactions and schema migrations for the registry database.

Only SQLite is implemented. Everything SQLite-specific lives in this module (connection
pragmas, `BEGIN IMMEDIATE`, the events table's implicit rowid); the queries in `store.py`
are plain standard SQL with `?` placeholders, so a Postgres backend can later be added
behind `connect()` and `write_transaction()` (there: `BEGIN` plus a row or table lock).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cvml.errors import CvmlError, RegistryError

# Writers queue behind each other; 30 s is far longer than any registry transaction.
_BUSY_TIMEOUT_S = 30.0

# One entry per schema version, applied in order; append, never edit a released entry.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE model_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            created_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            parent_name TEXT,
            parent_version INTEGER,
            metadata TEXT NOT NULL,
            PRIMARY KEY (name, version),
            FOREIGN KEY (parent_name, parent_version) REFERENCES model_versions (name, version)
        )""",
        "CREATE INDEX model_versions_parent ON model_versions (parent_name, parent_version)",
        "CREATE INDEX model_versions_path ON model_versions (path)",
        """CREATE TABLE model_datasets (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            position INTEGER NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT,
            role TEXT NOT NULL,
            PRIMARY KEY (name, version, position),
            FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        )""",
        # The top of each (name, alias) stack (highest depth) is the alias's current holder.
        """CREATE TABLE alias_stack (
            name TEXT NOT NULL,
            alias TEXT NOT NULL,
            depth INTEGER NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (name, alias, depth),
            FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        )""",
        # INTEGER PRIMARY KEY numbers rows in SQLite; Postgres would say GENERATED ... AS IDENTITY.
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            name TEXT NOT NULL,
            alias TEXT,
            from_version INTEGER,
            to_version INTEGER,
            reason TEXT
        )""",
        "CREATE INDEX events_name ON events (name)",
    ],
    # 2: online A/B experiments (cvml abtest start/stop, cvml serve --experiment). Registries
    # written before this migration may already hold the table, created on first use by an
    # earlier cvml: IF NOT EXISTS adopts it unchanged (same columns).
    [
        """CREATE TABLE IF NOT EXISTS experiments (
            name TEXT PRIMARY KEY,
            a_ref TEXT NOT NULL,
            b_ref TEXT NOT NULL,
            a_version TEXT NOT NULL,
            b_version TEXT NOT NULL,
            split TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            stopped_at TEXT,
            actor TEXT NOT NULL,
            decision TEXT
        )""",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)


def utc_now() -> str:
    """The current UTC time as ISO 8601, the only time format stored in the registry."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def connect(path: Path) -> sqlite3.Connection:
    """Open the registry at `path` (created with its folder if missing) at the current schema.

    Raises:
        RegistryError: the registry was written by a newer cvml.
        sqlite3.DatabaseError: not a database, or locked past the busy timeout
            (callers turn it into a RegistryError with `as_registry_error`).
    """
    return open_database(path, _MIGRATIONS, what="registry", error=RegistryError, hint_flag="--registry")


def open_database(
    path: Path,
    migrations: list[list[str]],
    *,
    what: str,
    error: type[CvmlError],
    hint_flag: str,
    pragmas: tuple[str, ...] = ("PRAGMA foreign_keys = ON",),
) -> sqlite3.Connection:
    """Open one of cvml's SQLite databases (registry, request log) in WAL mode, migrated to
    `len(migrations)`; shared so that every database migrates and locks the same way.

    Raises:
        error: the file was written by a newer cvml (schema version ahead of `migrations`).
        sqlite3.DatabaseError: not a database, or locked past the busy timeout.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; write_transaction() says when to lock.
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in pragmas:
            conn.execute(pragma)
        _enable_wal(conn)
        found = _schema_version(conn)
        if found < len(migrations):
            _migrate(conn, migrations)
        elif found > len(migrations):
            raise error(
                f"the {what} at {path} has schema version {found}, "
                f"newer than this cvml understands ({len(migrations)})",
                hint=f"upgrade cvml, or point {hint_flag} / CVML_HOME at another {what}",
            )
    except BaseException:
        conn.close()
        raise
    return conn


def as_registry_error(path: Path, exc: sqlite3.DatabaseError) -> RegistryError:
    """A database failure as a RegistryError that says what to do about it."""
    if "locked" in str(exc):
        return RegistryError(
            f"the registry at {path} stayed locked for over {_BUSY_TIMEOUT_S:g} s",
            hint="another process is writing to it; try again",
        )
    return RegistryError(
        f"cannot use the registry at {path}: {exc}",
        hint="check that the file is a cvml registry database (or move it away to start afresh)",
    )


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a read-then-write as one transaction that holds the write lock from its first read.

    `BEGIN IMMEDIATE` takes the lock up front, so two processes can never both read
    "latest is v4" and both write v5; the second waits (busy timeout) and then reads v5.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, so readers (e.g. `cvml serve` resolving prod) and a writer never block each other.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once
    instead of waiting for it; that only happens while processes race to create the same
    new database, so retry until the busy timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def _migrate(conn: sqlite3.Connection, migrations: list[list[str]]) -> None:
    with write_transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        # Re-read under the lock: another process may have migrated since we looked.
        for number in range(_schema_version(conn), len(migrations)):
            for statement in migrations[number]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (number + 1, utc_now()))
