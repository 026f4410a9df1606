"""The registry's schema: numbered migrations for versions, datasets, aliases, events and
experiments, run by `cvml.storage` on SQLite and Postgres alike."""

from __future__ import annotations

from cvml.errors import RegistryError
from cvml.storage import Schema

# One entry per schema version, applied in order; append, never edit a released entry.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
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
        """CREATE TABLE events (
            id {identity},
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
    ),
    # 2: online A/B experiments (cvml abtest start/stop, cvml serve --experiment). Registries
    # written before this migration may already hold the table, created on first use by an
    # earlier cvml: IF NOT EXISTS adopts it unchanged (same columns).
    (
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
    ),
    # 3: the content hash of each version's model, recorded at registration and checked at
    # load (`cvml.registry.integrity`). Rows registered before it keep NULL: unverified.
    ("ALTER TABLE model_versions ADD COLUMN sha256 TEXT",),
    # 4: versions trained on data a person was later erased from (`cvml forget`,
    # `cvml.registry.erasure`): one row per version and erasure, kept with the audit event.
    (
        """CREATE TABLE erasure_marks (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            erasure_id TEXT NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            dataset_path TEXT,
            dataset_sha256 TEXT,
            via TEXT,
            reason TEXT,
            PRIMARY KEY (name, version, erasure_id),
            FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        )""",
    ),
)

REGISTRY = Schema(name="registry", version_table="schema_version", migrations=_MIGRATIONS, error=RegistryError)
