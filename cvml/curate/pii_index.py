"""A keyed-hash index from PII values to groups, so `cvml curate forget --match
jane@example.com` can find a person whose email the dataset no longer contains.

Values are stored only as HMAC-SHA256 under a random per-dataset key (pii_index.key,
readable by its owner only): the index answers "which groups had this value?" for
someone who already knows the value, and reveals nothing to someone who does not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from cvml.safety.pii import normalize_value

KEY_FILE = "pii_index.key"
INDEX_FILE = "pii_index.jsonl"


def index_form(pii_type: str | None, value: str) -> str:
    """The form curate and forget both hash: the redactor's comparison form, except that
    phones keep only their last 9 digits, so "+44 20 7946 0958" finds "020 7946 0958"."""
    if pii_type == "PHONE":
        return re.sub(r"\D", "", value)[-9:]
    return normalize_value(pii_type or "TEXT", value)


class PiiIndex:
    def __init__(self, folder: Path, key: bytes, mode: str):
        self.folder, self.key = folder, key
        self._fh = (folder / INDEX_FILE).open(mode, encoding="utf-8") if mode != "r" else None
        self._seen: set[tuple[str, str]] = set()

    @classmethod
    def create(cls, folder: Path) -> "PiiIndex":
        key = secrets.token_bytes(32)
        path = folder / KEY_FILE
        path.write_bytes(key)
        os.chmod(path, 0o600)
        return cls(folder, key, "w")

    @classmethod
    def open(cls, folder: Path) -> "PiiIndex":
        return cls(folder, (folder / KEY_FILE).read_bytes(), "r")

    def digest(self, value: str, pii_type: str | None = None) -> str:
        return hmac.new(self.key, index_form(pii_type, value).encode(), hashlib.sha256).hexdigest()

    def add(self, pii_type: str, value: str, group: str) -> None:
        entry = (self.digest(value, pii_type), group)
        if entry not in self._seen:
            self._seen.add(entry)
            self._fh.write(json.dumps({"hash": entry[0], "type": pii_type, "group": group}) + "\n")

    def groups_for(self, value: str) -> set[str]:
        """Groups whose rows held `value` (tried as a phone and as text)."""
        wanted = {self.digest(value, "PHONE"), self.digest(value)}
        groups = set()
        with (self.folder / INDEX_FILE).open(encoding="utf-8") as fh:
            for line in fh:
                entry = json.loads(line)
                if entry["hash"] in wanted:
                    groups.add(entry["group"])
        return groups

    def drop_groups(self, groups: set[str]) -> int:
        path = self.folder / INDEX_FILE
        lines = path.read_text(encoding="utf-8").splitlines()
        keep = [line for line in lines if json.loads(line)["group"] not in groups]
        path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        return len(lines) - len(keep)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
