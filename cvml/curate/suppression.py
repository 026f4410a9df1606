"""The suppression list: who was erased, so that no later `cvml curate` brings them back.

`$CVML_HOME/erasure/suppressed.jsonl` (0600, in a 0700 folder, never inside a dataset) holds
one line per erased group id or PII value, as HMAC-SHA256 under cvml's erasure key
(`$CVML_HOME/keys/erasure.key`, or derived from `$CVML_PII_KEY`), never the id or the value:

    {"hash": "9f2c…", "kind": "GROUP" | "EMAIL" | "PHONE" | "NAME" | …, "key": "file", "check": "…",
     "erasure": "<erasure id>", "at": "2025-01-31T10:00:00+00:00"}

Curate checks every row (kept or quarantined) against it: a row of an erased group, or one
holding an erased value, is removed with reason "erased". A list whose key is missing or
changed is an error, never silently skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from cvml.curate.pii_index import index_form, key_check, key_file, secret_from_env
from cvml.errors import DataError

GROUP = "GROUP"
_PURPOSE = "erasure suppression"


def suppression_path() -> Path:
    from cvml.paths import cvml_home

    return cvml_home() / "erasure" / "suppressed.jsonl"


def _key(source: str, *, create: bool) -> tuple[bytes, str] | None:
    if source == "env":
        return secret_from_env(_PURPOSE)
    key = key_file("erasure", create=create)
    return None if key is None else (key, key_check(key))


def _digest(key: bytes, kind: str, value: str) -> str:
    form = value if kind == GROUP else index_form(kind, value)
    return hmac.new(key, f"{kind}\0{form}".encode(), hashlib.sha256).hexdigest()


class SuppressionList:
    """The erased groups and values, as keyed hashes; load once per run."""

    def __init__(self, path: Path, entries: list[dict]):
        self.path = path
        self.entries = entries
        self._keys: dict[str, bytes] = {}
        self._hashes: dict[str, set[str]] = {}
        for entry in entries:
            source = entry.get("key", "file")
            if source not in self._keys:
                found = _key(source, create=False)
                if found is None or found[1] != entry.get("check"):
                    raise DataError(
                        f"the suppression list {path} was written with a key that is not here "
                        f"({'$CVML_PII_KEY' if source == 'env' else '$CVML_HOME/keys/erasure.key'}"
                        f"{' is missing' if found is None else ' has changed'})",
                        hint="Restore that key (or set CVML_PII_KEY as it was): without it erased people "
                        "cannot be kept out of new datasets, so cvml refuses to curate.",
                    )
                self._keys[source] = found[0]
            self._hashes.setdefault(source, set()).add(entry["hash"])
        self.value_types = sorted({e["kind"] for e in entries if e["kind"] != GROUP})

    @classmethod
    def load(cls, path: Path | None = None) -> SuppressionList:
        path = path or suppression_path()
        entries = []
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                entries = [json.loads(line) for line in fh if line.strip()]
        return cls(path, entries)

    def __len__(self) -> int:
        return len(self.entries)

    def matches(self, group: str | None, values: Iterable[tuple[str, str]] = ()) -> bool:
        """Whether a row of `group` holding the (type, value) PII spans is erased."""
        if not self.entries:
            return False
        values = list(values)
        for source, key in self._keys.items():
            hashes = self._hashes[source]
            if group is not None and _digest(key, GROUP, group) in hashes:
                return True
            if any(_digest(key, kind, value) in hashes for kind, value in values if index_form(kind, value)):
                return True
        return False

    def add(self, groups: Iterable[str], values: Iterable[tuple[str, str]], erasure_id: str) -> int:
        """Append the groups and (type, value) pairs not yet listed; returns how many were new.
        Written with O_APPEND and fsync, so a crash loses nothing already added."""
        source = "env" if secret_from_env(_PURPOSE) is not None else "file"
        key, check = _key(source, create=True)
        self._keys.setdefault(source, key)
        known = self._hashes.setdefault(source, set())
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        lines = []
        for kind, value in [(GROUP, g) for g in groups] + list(values):
            digest = _digest(key, kind, value)
            if digest not in known:
                known.add(digest)
                entry = {"hash": digest, "kind": kind, "key": source, "check": check, "erasure": erasure_id, "at": at}
                self.entries.append(entry)
                lines.append(json.dumps(entry) + "\n")
        if lines:
            _append_private(self.path, "".join(lines))
        self.value_types = sorted({e["kind"] for e in self.entries if e["kind"] != GROUP})
        return len(lines)

    def erasure_id(self, groups: Iterable[str], values: Iterable[tuple[str, str]]) -> str:
        """A stable id for erasing exactly these groups and values (the same request twice, or
        its retry after a crash, gets the same id), which reveals neither."""
        source = "env" if secret_from_env(_PURPOSE) is not None else "file"
        key, _ = _key(source, create=True)
        parts = sorted({f"{GROUP}\0{g}" for g in groups} | {f"{k}\0{index_form(k, v)}" for k, v in values})
        return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()[:16]


def _append_private(path: Path, text: str) -> None:
    from cvml.curate.output import fsync_dir, private_dir

    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
