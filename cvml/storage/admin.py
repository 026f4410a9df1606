"""`cvml db upgrade | status | copy`: the operator's view of cvml's databases.

Each function takes the schemas to act on with their default SQLite files, e.g.
`[(REGISTRY, home / "registry.db"), (REQUEST_LOG, home / "requests.db")]`, and a location:
a Postgres URL (every schema in its `cvml` schema), a SQLite file, a folder holding the
default files, or None for CVML_DB_URL, else the default files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvml.errors import ConfigError
from cvml.storage.database import PG_SCHEMA, Database, Schema
from cvml.storage.urls import storage_url

Target = tuple[Schema, Path]

# Read-only views for the web app (Postgres only), in a schema of their own so that a
# Next.js server's role can be granted exactly these and nothing in `cvml` (see README).
APP_SCHEMA = "cvml_app"
_APP_VIEWS = {
    "registry": (
        f"""CREATE OR REPLACE VIEW {APP_SCHEMA}.live_models AS
            SELECT s.name, s.alias, s.version, m.kind, m.created_at
            FROM {PG_SCHEMA}.alias_stack s
            JOIN {PG_SCHEMA}.model_versions m ON m.name = s.name AND m.version = s.version
            WHERE s.depth = (SELECT MAX(t.depth) FROM {PG_SCHEMA}.alias_stack t
                             WHERE t.name = s.name AND t.alias = s.alias)""",
        f"""CREATE OR REPLACE VIEW {APP_SCHEMA}.experiments AS
            SELECT name, a_ref, b_ref, a_version, b_version, split, status, started_at, stopped_at
            FROM {PG_SCHEMA}.experiments""",
    ),
}


def upgrade(location: str | None, targets: Sequence[Target]) -> dict[str, Any]:
    """Create or migrate every schema to this cvml's version; idempotent.

    Returns:
        {"database": display, "schemas": {name: {"applied": [numbers], "version": n}}}
    """
    report: dict[str, Any] = {"schemas": {}}
    for schema, default in targets:
        db = _unchecked(location, schema, default)
        applied = db.upgrade()
        if db.backend == "postgresql" and schema.name in _APP_VIEWS:
            with db.write() as tx:
                tx.execute(f"CREATE SCHEMA IF NOT EXISTS {APP_SCHEMA}")
                for view in _APP_VIEWS[schema.name]:
                    tx.execute(view)
        report["schemas"][schema.name] = {"database": db.url.display, "applied": applied, "version": schema.version}
    return report


def status(location: str | None, targets: Sequence[Target]) -> dict[str, Any]:
    """Where each schema lives, its version against the code's, pending migrations, row counts.

    A database that cannot be reached is an error; a schema not created yet is reported
    with version 0 and every migration pending (run `cvml db upgrade`).
    """
    report: dict[str, Any] = {"schemas": {}}
    for schema, default in targets:
        url = storage_url(location, default_file=default)
        if url.backend == "sqlite" and not Path(url.sqlite_path).exists():
            report["schemas"][schema.name] = {
                "database": url.display, "backend": "sqlite", "version": 0, "code_version": schema.version,
                "pending": list(range(1, schema.version + 1)), "tables": {}, "exists": False,
            }
            continue
        db = _unchecked(location, schema, default)
        version = db.current_version()
        report["schemas"][schema.name] = {
            "database": url.display, "backend": url.backend, "pooled": url.pooled, "version": version,
            "code_version": schema.version, "pending": list(range(version + 1, schema.version + 1)),
            "tables": _counts(db, schema) if version else {}, "exists": True,
        }
    return report


def copy(source: str, destination: str, targets: Sequence[Target]) -> dict[str, Any]:
    """Copy every row of the schemas present at `source` into `destination` (migrated first).

    The destination's tables must be empty: copying never merges two histories. Rows keep
    their values (version numbers, event ids, the request log's key ids, so `forget` still
    finds a user where the same key is available). Keys are never copied: they live apart
    from the data (`Schema.never_copied` drops a secret an older cvml kept in the database).

    Raises:
        ConfigError: source and destination are the same, nothing to copy, or the
            destination already holds rows.
    """
    report: dict[str, Any] = {"schemas": {}}
    for schema, default in targets:
        src_url, dst_url = storage_url(source, default_file=default), storage_url(destination, default_file=default)
        if src_url.sqlalchemy_url == dst_url.sqlalchemy_url:
            raise ConfigError("--from and --to name the same database", hint="copy into another database")
        if src_url.backend == "sqlite" and not Path(src_url.sqlite_path).exists():
            continue
        src = _unchecked(source, schema, default)
        if src.current_version() == 0 or schema.table_names[0] not in src.tables():
            continue  # that file holds another schema (a SQLite file holds one)
        if src.current_version() < schema.version and src.backend == "sqlite":
            src.upgrade()  # an older cvml's file: bring it to the columns the copy writes
        dst = _unchecked(destination, schema, default)
        dst.upgrade()
        tables = schema.table_names
        with src.read() as reader, dst.write() as writer:
            busy = [t for t in tables if writer.execute(f"SELECT COUNT(*) FROM {t}").scalar()]
            if busy:
                raise ConfigError(
                    f"the {schema.name} at {dst.url.display} already holds rows ({', '.join(busy)})",
                    hint="copy into an empty database; cvml never merges two registries or logs",
                )
            counts = {}
            for table in tables:
                skip = schema.never_copied.get(table)
                where = f" WHERE NOT ({skip})" if skip else ""
                rows = reader.execute(f"SELECT * FROM {table}{where}{_ORDER.get(table, '')}").fetchall()
                if rows:
                    columns = rows[0].keys()
                    writer.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        [tuple(row) for row in rows],
                    )
                counts[table] = len(rows)
            if dst.backend == "postgresql":
                for table, column in _IDENTITIES:
                    if table in tables:  # rows came with their ids: move the sequence past them
                        writer.execute(
                            f"SELECT setval(pg_get_serial_sequence('{PG_SCHEMA}.{table}', '{column}'), "
                            f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                        )
        report["schemas"][schema.name] = {"from": src.url.display, "to": dst.url.display, "rows": counts}
    if not report["schemas"]:
        raise ConfigError(f"nothing to copy at {storage_url(source, default_file=targets[0][1]).display}",
                          hint="--from takes a registry or request-log database (file, folder or URL)")
    return report


# Parents before children: a version's parent was registered before it.
_ORDER = {"model_versions": " ORDER BY created_at, name, version", "events": " ORDER BY id"}
_IDENTITIES = (("events", "id"),)


def _unchecked(location: str | None, schema: Schema, default: Path) -> Database:
    """The database without the version check (these commands are the ones that fix it)."""
    url = storage_url(location, default_file=default)
    return Database(url, schema, Database._engine(url, schema))


def _counts(db: Database, schema: Schema) -> dict[str, int]:
    with db.read() as tx:
        present = set(db.tables(tx.conn))
        return {t: tx.execute(f"SELECT COUNT(*) FROM {t}").scalar() for t in schema.table_names if t in present}
