"""Where a store lives: a SQLite file (the default, no setup) or a Postgres URL.

    storage_url(None, default_file=home / "registry.db")   # CVML_DB_URL if set, else the file
    storage_url("postgresql://cvml:pw@db.example.supabase.co:6543/postgres")   # pooled
    url.display    # postgresql://cvml:***@db.example.supabase.co:6543/postgres

The password is kept out of everything cvml prints, logs or records: `display` for people,
`scrub()` for driver messages that might echo the URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cvml.errors import ConfigError

ENV_URL = "CVML_DB_URL"
# Supabase's transaction pooler (Supavisor) listens here; PgBouncer setups often do too.
POOLER_PORT = 6543


@dataclass(frozen=True)
class StorageUrl:
    backend: str  # "sqlite" or "postgresql"
    sqlalchemy_url: str
    display: str
    sqlite_path: str | None = None
    pooled: bool = False  # behind a transaction pooler: no client pool, no session state
    secret: str | None = None

    @property
    def where(self) -> Path | str:
        """The SQLite file, or the URL without its password: what messages name."""
        return Path(self.sqlite_path) if self.sqlite_path else self.display

    def scrub(self, text: str) -> str:
        """`text` with the password (if any) replaced by ***."""
        return text.replace(self.secret, "***") if self.secret else text


def storage_url(location: str | Path | None, *, default_file: Path) -> StorageUrl:
    """The store at `location`: a URL, a SQLite file, a folder (then `default_file`'s name in
    it), or None for CVML_DB_URL or else `default_file`.

    Raises:
        ConfigError: a URL cvml cannot use (another database, or malformed).
    """
    if location is None:
        location = os.environ.get(ENV_URL) or default_file
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / default_file.name
        return StorageUrl("sqlite", f"sqlite:///{path}", str(path), sqlite_path=str(path))
    return parse_url(text)


def parse_url(text: str) -> StorageUrl:
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError("the database URL is malformed", hint="expected postgresql://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = str(Path(url.database or "").expanduser())
        if not url.database:
            raise ConfigError("a sqlite:/// URL needs a file path", hint="e.g. sqlite:///~/.cvml/registry.db")
        return StorageUrl("sqlite", f"sqlite:///{path}", path, sqlite_path=path)
    if backend not in ("postgresql", "postgres"):
        raise ConfigError(f"cvml stores in SQLite or Postgres, not {backend}", hint="use postgresql://… or a file path")
    url = url.set(drivername="postgresql+psycopg")
    secret = url.password if url.password else None
    display = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return StorageUrl(
        "postgresql", url.render_as_string(hide_password=False), display,
        pooled=url.port == POOLER_PORT, secret=str(secret) if secret else None,
    )
