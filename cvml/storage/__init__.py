"""The storage layer of the registry, the experiments and the request log: SQLite files by
default, one Postgres database (Supabase) by URL; see `cvml.storage.database`."""

from cvml.storage.database import PG_SCHEMA, Database, Schema, StorageError, utc_now
from cvml.storage.urls import ENV_URL, StorageUrl, storage_url

__all__ = ["ENV_URL", "PG_SCHEMA", "Database", "Schema", "StorageError", "StorageUrl", "storage_url", "utc_now"]
