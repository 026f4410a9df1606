"""The keys that turn user ids into the request log's user keys, HMAC-SHA256(key, user_id),
kept outside the database they protect.

    ring = open_keyring(db, url)            # CVML_LOG_KEY, else key files in $CVML_HOME/keys
    ring.current.user_key("u-42")           # what a new row stores, with ring.current.id
    ring.live[row_key_id].user_key("u-42")  # what `forget` looks for in older rows

Where the keys come from:
- `CVML_LOG_KEY`: a hex key (16 bytes at least; 32 recommended), or several separated by
  commas: the first hashes new rows, the others stay live for `forget`. A Postgres log that
  `cvml serve` writes needs it: every replica must hash a user alike, so each gets the same
  value from the environment or a secret manager (a key file per host would give each
  replica its own hashes, and `forget` on one would miss the others' rows).
- otherwise one file per key, `$CVML_HOME/keys/request-log-<id>.key` (mode 0600, folder
  0700), made when a log first needs a key.

The database holds no key: only the ids of a log's file keys (meta `user_key_ids`, the
current one last) and, in every row, the id of the key that hashed it (`key_id`). So `cvml db
copy` or a dump carries no key, and a copy opened elsewhere says which key it lacks. An
older cvml kept its secret in meta (`user_key_secret`): on first open it is moved to a key
file (or, with CVML_LOG_KEY, deleted once the variable holds it) and its rows get its id.

Rotation: an HMAC cannot be recomputed under a new key, so a new key hashes new rows and
the old one stays live, so that `forget` still finds the rows it hashed (stats then count a
user seen under both keys twice). Once retention has purged those rows, the old key is
dropped (`cvml logs rotate-key --drop-old`), which refuses while a row still uses it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from cvml.errors import ConfigError
from cvml.paths import create_private_file, keys_dir, private_dir, request_log_key_path
from cvml.storage import Database

ENV_KEY = "CVML_LOG_KEY"
LEGACY_SECRET = "user_key_secret"  # where an older cvml kept the key: in the database
KEY_IDS = "user_key_ids"  # meta: this log's file keys by id, the current one last
_MIN_BYTES = 16
_log = logging.getLogger("cvml.serve.requestlog")
GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class LogKey:
    """One HMAC key and its id (a hash of the key: naming it reveals nothing of it)."""

    id: str
    secret: bytes = field(repr=False)

    @classmethod
    def of(cls, secret: bytes) -> LogKey:
        return cls(hashlib.sha256(b"cvml request-log key\x00" + secret).hexdigest()[:16], secret)

    def user_key(self, user_id: str) -> str:
        return hmac.new(self.secret, user_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keyring:
    """The key that hashes new rows, and every key `forget` may use, by id."""

    current: LogKey
    live: dict[str, LogKey]
    source: str  # ENV_KEY or the keys folder

    def missing_hint(self, ids: list[str | None]) -> str:
        files = ", ".join(str(request_log_key_path(i)) for i in ids if i)
        return (f"restore the key file(s) ({files}) or add those keys to {ENV_KEY} after the current one "
                f"({ENV_KEY}=CURRENT,OLD); without them those rows can only be purged by age")


def env_keys() -> list[LogKey] | None:
    """The keys of CVML_LOG_KEY (the first hashes new rows), or None when it is not set.

    Raises:
        ConfigError: a key is not hex or shorter than 16 bytes.
    """
    value = os.environ.get(ENV_KEY, "").strip()
    if not value:
        return None
    keys = []
    for part in value.split(","):
        try:
            secret = bytes.fromhex(part.strip())
        except ValueError:
            secret = b""
        if len(secret) < _MIN_BYTES:
            raise ConfigError(
                f"{ENV_KEY} must hold hex keys of {_MIN_BYTES} bytes or more, separated by commas",
                hint=f"generate one with: {GENERATE}",
            )
        keys.append(LogKey.of(secret))
    return keys


def require_env_keys(where: str) -> None:
    """For a log that replicas share: refuse to go on without CVML_LOG_KEY.

    Raises:
        ConfigError: CVML_LOG_KEY is not set (or malformed).
    """
    if env_keys() is None:
        raise ConfigError(
            f"the request log at {where} is shared (Postgres) and {ENV_KEY} is not set",
            hint=f"set {ENV_KEY} to one hex key, the same on every replica (from your environment or secret "
            f"manager; generate it with: {GENERATE}); a key file per host would hash a user differently on each",
        )


def read_key_file(key_id: str) -> LogKey | None:
    """The key of `$CVML_HOME/keys/request-log-<key_id>.key`, or None when there is none."""
    try:
        text = request_log_key_path(key_id).read_text().strip()
        key = LogKey.of(bytes.fromhex(text))
    except (OSError, ValueError):
        return None
    return key if key.id == key_id else None


def save_key_file(secret: bytes) -> LogKey:
    """Write a key to its file (created 0600 in a 0700 folder; an existing one is kept)."""
    key = LogKey.of(secret)
    private_dir(keys_dir())
    create_private_file(request_log_key_path(key.id), (secret.hex() + "\n").encode())
    return key


def open_keyring(db: Database, where: str) -> Keyring:
    """The keys of the log in `db`: CVML_LOG_KEY's, else its key files (one is made if it has none).

    Moves a legacy secret out of the database (see the module docstring). Reads only,
    unless something has to change; then decides again under the log's write lock, so
    that processes opening a new log at once agree on one key.

    Raises:
        ConfigError: CVML_LOG_KEY is malformed, or the database holds a legacy secret that
            CVML_LOG_KEY lacks.
        OSError: a key file cannot be written.
    """
    env = env_keys()
    with db.read() as tx:
        ring, _ = _ring(tx, env, where, write=False)
    if ring is not None:
        return ring
    with db.write() as tx:
        ring, moved = _ring(tx, env, where, write=True)
    if moved:
        db.compact(("meta",))  # the deleted secret must not linger in the WAL or dead rows
    return ring


def rotate(db: Database, where: str) -> dict[str, Any]:
    """Make a new key file and hash new rows with it; the older keys stay live for `forget`.

    Returns:
        {"key_id": new id, "keys": this log's key ids, oldest first}

    Raises:
        ConfigError: the keys come (or, for Postgres, must come) from CVML_LOG_KEY: rotate them there.
    """
    if env_keys() is not None:
        raise ConfigError(
            f"the request log's keys come from {ENV_KEY}; rotate them there",
            hint=f"generate a key ({GENERATE}), set {ENV_KEY}=NEW,OLD on every replica and restart them; "
            f"remove OLD once `cvml logs rotate-key --drop-old` says no row uses it",
        )
    if db.backend == "postgresql":
        require_env_keys(db.url.display)  # replicas share a Postgres log: its keys are CVML_LOG_KEY's
    open_keyring(db, where)  # a legacy secret first becomes a key file
    key = save_key_file(secrets.token_bytes(32))
    with db.write() as tx:
        ids = [*_ids(tx), key.id]
        _set_ids(tx, ids)
    return {"key_id": key.id, "keys": ids}


def drop_old(db: Database) -> dict[str, Any]:
    """Delete the old keys no row uses any more (retention purged their rows).

    Returns:
        {"current": id, "dropped": [ids deleted], "kept": {id: rows still hashed with it}};
        with CVML_LOG_KEY nothing is deleted and "unused" lists the old keys it may lose.
    """
    env = env_keys()
    with db.write() as tx:
        used = {row[0]: row[1] for row in tx.execute(
            "SELECT key_id, COUNT(*) FROM requests WHERE user_key IS NOT NULL GROUP BY key_id").fetchall()}  # fmt: skip
        if env is not None:
            old = [key.id for key in env[1:]]
            return {"current": env[0].id, "dropped": [], "kept": {i: used[i] for i in old if used.get(i)},
                    "unused": [i for i in old if not used.get(i)], "source": ENV_KEY}  # fmt: skip
        ids = _ids(tx)
        dropped = [i for i in ids[:-1] if not used.get(i)]
        kept = {i: used[i] for i in ids[:-1] if used.get(i)}
        _set_ids(tx, [i for i in ids if i not in dropped])
    for key_id in dropped:
        request_log_key_path(key_id).unlink(missing_ok=True)
    return {"current": ids[-1] if ids else None, "dropped": dropped, "kept": kept, "source": str(keys_dir())}


# ---------------------------------------------------------------------------- private


def _ring(tx, env: list[LogKey] | None, where: str, *, write: bool) -> tuple[Keyring | None, bool]:
    """The keyring from the log's meta (None when it needs a change and `write` is False),
    and whether a legacy secret was moved out."""
    meta = {row[0]: row[1] for row in tx.execute(
        "SELECT key, value FROM meta WHERE key IN (?, ?)", (LEGACY_SECRET, KEY_IDS)).fetchall()}  # fmt: skip
    ids = [i for i in (meta.get(KEY_IDS) or "").split(",") if i]
    legacy = _legacy_key(meta.get(LEGACY_SECRET), where)
    if legacy is not None and not write:
        return None, False
    if env is not None:
        live = {key.id: key for key in env}
        if legacy is not None and legacy.id not in live:
            raise ConfigError(
                f"the request log at {where} still holds the user-id key an older cvml kept in it, "
                f"and {ENV_KEY} lacks it",
                hint=f"add it to {ENV_KEY} after the current key ({ENV_KEY}=CURRENT,IT), or use it alone; read it "
                f"with SELECT value FROM meta WHERE key = '{LEGACY_SECRET}'. cvml then deletes it from the database",
            )
        current = env[0]
    else:
        if legacy is not None:
            save_key_file(legacy.secret)
            ids = [legacy.id, *(i for i in ids if i != legacy.id)]
        live = {i: key for i in ids if (key := read_key_file(i)) is not None}
        current_id = next((i for i in reversed(ids) if i in live), None)
        if current_id is None:
            if not write:
                return None, False
            current = save_key_file(secrets.token_bytes(32))
            ids.append(current.id)
            live[current.id] = current
        else:
            current = live[current_id]
        if write and ",".join(ids) != meta.get(KEY_IDS):
            _set_ids(tx, ids)
    for key_id in ids:  # file keys of this log stay usable beside CVML_LOG_KEY's
        if key_id not in live and (key := read_key_file(key_id)) is not None:
            live[key_id] = key
    for key_id in (i for i in ids if i not in live):
        _log.warning("key %s of the request log at %s is missing (%s): forget cannot find the rows it hashed",
                     key_id, where, request_log_key_path(key_id))  # fmt: skip
    if legacy is not None:
        tx.execute("UPDATE requests SET key_id = ? WHERE key_id IS NULL AND user_key IS NOT NULL", (legacy.id,))
        tx.execute("DELETE FROM meta WHERE key = ?", (LEGACY_SECRET,))
        _log.warning("moved the user-id key out of the request log at %s (%s)", where,
                     ENV_KEY if env is not None else request_log_key_path(legacy.id))  # fmt: skip
    return Keyring(current, live, ENV_KEY if env is not None else str(keys_dir())), legacy is not None


def _legacy_key(value: str | None, where: str) -> LogKey | None:
    if not value:
        return None
    try:
        return LogKey.of(bytes.fromhex(value))
    except ValueError:
        raise ConfigError(f"the request log at {where} holds a malformed {LEGACY_SECRET}",
                          hint="restore it from a backup, or delete that meta row (user keys then stop matching)") from None


def _ids(tx) -> list[str]:
    row = tx.execute("SELECT value FROM meta WHERE key = ?", (KEY_IDS,)).fetchone()
    return [i for i in (row[0] if row else "").split(",") if i]


def _set_ids(tx, ids: list[str]) -> None:
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (KEY_IDS, ",".join(ids)),
    )
