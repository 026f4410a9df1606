"""Where cvml keeps its own state (registry, request log, keys): `$CVML_HOME`, else `~/.cvml`.

What cvml creates there is private to its user: folders 0700, database and key files
0600, each made with that mode (never made wider and chmod-ed afterwards).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def cvml_home() -> Path:
    """The cvml state folder: `$CVML_HOME` if set and non-empty, else `~/.cvml`.

    Read at call time (not import time) so tests and users can switch homes per process.
    The folder is not created here; whoever writes into it does that.
    """
    home = os.environ.get("CVML_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cvml"


def keys_dir() -> Path:
    """`$CVML_HOME/keys`: the keys cvml makes (the request log's user-id keys); not created here."""
    return cvml_home() / "keys"


def request_log_key_path(key_id: str) -> Path:
    """The file of one request-log key: `$CVML_HOME/keys/request-log-<key id>.key` (hex inside)."""
    return keys_dir() / f"request-log-{key_id}.key"


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parent as 0700 folders (existing ones are left as they are).

    Raises:
        OSError: a part of the path cannot be created (e.g. it is a file).
    """
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return path


def create_private_file(path: Path, data: bytes = b"") -> bool:
    """Create `path` with mode 0600 from the start: `os.open(..., O_CREAT | O_EXCL, 0o600)`.

    With `data`, the file appears whole or not at all (written beside it, then linked into
    place), so a reader never sees it half written. An existing file is never touched.

    Returns:
        False when the file already existed.

    Raises:
        OSError: the folder is missing or not writable.
    """
    if not data:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        except FileExistsError:
            return False
        return True
    staging = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.link(staging, path)  # fails if `path` exists: the first writer wins
    except FileExistsError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        staging.unlink(missing_ok=True)
    return True
