"""A keyed-hash index from PII values to groups, so `cvml forget --match jane@example.com`
can find a person whose email the dataset no longer contains.

Values are stored only as HMAC-SHA256 under a key that never lives in the dataset folder:
either a random key per curation in `$CVML_HOME/keys/pii-index-<id>.key` (0600, made with
O_EXCL), or one derived from the secret in `$CVML_PII_KEY` (shared by the machines that hold
it). The index's first line names its key (id and source), never the key. So a copy of the
folder alone answers nothing, not even to someone brute-forcing phone numbers; the index
answers "which groups had this value?" only where the key is.

Rotation: every `cvml curate` run draws a new key for the folder it writes and deletes the
key of the dataset it replaces (an index cannot be re-keyed without the values it hashes,
which cvml never keeps). Deleting a key file makes that index unreadable for good.

A value is matched exactly and by type (`typed_value`): "jane@example.com" is an EMAIL and
finds only that email, "Jane Doe" is a NAME and finds only that name, never every text that
contains the letters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path

from cvml.errors import DataError
from cvml.safety.pii import PII_TYPES, normalize_value

INDEX_FILE = "pii_index.jsonl"
LEGACY_KEY_FILE = "pii_index.key"  # beside the index, as cvml wrote it before keys moved out
ENV_KEY = "CVML_PII_KEY"
INDEX_VERSION = 2
_KEY_PREFIX = "pii-index-"


def index_form(pii_type: str | None, value: str) -> str:
    """The form curate and forget both hash: the redactor's comparison form, except that
    phones keep only their last 9 digits, so "+44 20 7946 0958" finds "020 7946 0958"."""
    if pii_type == "PHONE":
        return re.sub(r"\D", "", value)[-9:]
    return normalize_value(pii_type or "TEXT", value)


def typed_value(value: str) -> tuple[str, str]:
    """(PII type, value) for what a user typed to name a person.

    `TYPE:value` names the type (`name:Jane Doe`, `address:12 High St`); otherwise an email
    is an EMAIL, a run of 7+ digits with phone punctuation a PHONE, a web address a URL, and
    anything else a NAME.

    Raises:
        DataError: an empty value, or a phone with too few digits.
    """
    from cvml.safety.pii_patterns import find_emails, find_urls

    text = value.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix.strip().upper() in PII_TYPES and rest.strip():
        pii_type, text = prefix.strip().upper(), rest.strip()
    elif _whole(find_emails(text), text):
        pii_type = "EMAIL"
    elif re.fullmatch(r"[+(]?[\d][\d\s().\-/]*", text) and len(re.sub(r"\D", "", text)) >= 7:
        pii_type = "PHONE"
    elif _whole(find_urls(text), text):
        pii_type = "URL"
    else:
        pii_type = "NAME"
    if not index_form(pii_type, text):
        raise DataError(f"{value!r} names nobody", hint="Give an email, a phone number or a full name.")
    return pii_type, text


def contains_value(text: str, pii_type: str, value: str) -> bool:
    """Whether `text` holds exactly `value` as PII of `pii_type`: the detector's spans of that
    type compared in index form ("Jane Doe" is not found in "Jane Doerr", an email is not
    found in a longer one), not a substring test."""
    return bool(find_value(text, pii_type, value))


def find_value(text: str, pii_type: str, value: str) -> list[tuple[int, int]]:
    """Where `text` holds exactly `value` as PII of `pii_type` (see `contains_value`)."""
    if not text:
        return []
    wanted = index_form(pii_type, value)
    if pii_type == "PHONE":
        from cvml.safety.pii_phones import find_phones

        if not wanted or wanted not in re.sub(r"\D", "", text):
            return []
        return [(s, e) for s, e in find_phones(text) if index_form("PHONE", text[s:e]) == wanted]
    if not wanted or wanted not in " ".join(text.casefold().split()):
        return []
    spans = _finder(pii_type, wanted).find(text)
    return [(span.start, span.end) for span in spans if index_form(pii_type, span.text) == wanted]


@lru_cache(maxsize=64)
def _finder(pii_type: str, wanted: str):
    from cvml.safety.pii import PiiRedactor

    # A full name (two words or more) is found wherever it stands as whole words, not only
    # where a CV's layout says "name"; a single word only where the detector sees a name.
    full_name = pii_type == "NAME" and len(wanted.split()) >= 2
    return PiiRedactor(types=[pii_type], names=[wanted] if full_name else ())


def _whole(spans, text: str) -> bool:
    return any(start == 0 and end == len(text) for start, end in spans)


def secret_from_env(purpose: str) -> tuple[bytes, str] | None:
    """(key, check) derived from `$CVML_PII_KEY` for `purpose`, or None when it is not set.
    `check` is a short digest that tells a changed secret from the one a file was made with."""
    secret = os.environ.get(ENV_KEY, "")
    if not secret:
        return None
    key = hmac.new(secret.encode(), f"cvml {purpose}".encode(), hashlib.sha256).digest()
    return key, key_check(key)


def key_check(key: bytes) -> str:
    return hmac.new(key, b"cvml key check", hashlib.sha256).hexdigest()[:16]


def key_file(name: str, *, create: bool = True) -> bytes | None:
    """The 32 random bytes in `$CVML_HOME/keys/<name>.key`, made on first use: created 0600
    from the start (O_CREAT | O_EXCL) and whole, in a 0700 folder; when two processes race,
    the first one's key is the key. None when missing and `create` is False."""
    from cvml.paths import create_private_file, keys_dir, private_dir

    path = keys_dir() / f"{name}.key"
    if not path.is_file():
        if not create:
            return None
        private_dir(keys_dir())
        create_private_file(path, secrets.token_bytes(32))
    return path.read_bytes()


def delete_key_file(name: str) -> bool:
    """Remove `$CVML_HOME/keys/<name>.key`; False when there was none."""
    from cvml.paths import keys_dir

    try:
        (keys_dir() / f"{name}.key").unlink()
    except FileNotFoundError:
        return False
    return True


class PiiIndex:
    """One dataset's index. `create` (curate) writes it; `open` (forget) reads it."""

    def __init__(self, folder: Path, key: bytes, header: dict | None, fh=None):
        self.folder, self.key, self.header = folder, key, header
        self._fh = fh
        self._seen: set[tuple[str, str]] = set()

    @property
    def key_id(self) -> str | None:
        return (self.header or {}).get("key_id")

    @classmethod
    def create(cls, folder: Path) -> PiiIndex:
        """A new, empty index under a new key (from `$CVML_PII_KEY` when set, else a key file)."""
        from cvml.curate.output import open_private

        key_id = secrets.token_hex(8)
        derived = secret_from_env(f"pii index {key_id}")
        if derived is not None:
            key, check = derived
            header = {"pii_index": INDEX_VERSION, "key_id": key_id, "key": "env", "check": check}
        else:
            key = key_file(_KEY_PREFIX + key_id)
            header = {"pii_index": INDEX_VERSION, "key_id": key_id, "key": "file", "check": key_check(key)}
        fh = open_private(folder / INDEX_FILE)
        fh.write(json.dumps(header) + "\n")
        return cls(folder, key, header, fh)

    @classmethod
    def open(cls, folder: Path) -> PiiIndex:
        """The index of a curated folder, with its key.

        Raises:
            DataError: no index, or its key is not here (another CVML_HOME, a deleted key,
                `$CVML_PII_KEY` unset or changed).
        """
        path = folder / INDEX_FILE
        if not path.is_file():
            raise DataError(f"{folder} has no {INDEX_FILE}", hint="Curate the dataset again with this cvml.")
        header = read_header(folder)
        if header is None:  # an index written before keys moved out of the folder
            legacy = folder / LEGACY_KEY_FILE
            if not legacy.is_file():
                raise DataError(f"the PII index of {folder} has no key", hint="Curate the dataset again.")
            return cls(folder, legacy.read_bytes(), None)
        if header.get("key") == "env":
            derived = secret_from_env(f"pii index {header['key_id']}")
            if derived is None or derived[1] != header.get("check"):
                raise DataError(
                    f"the PII index of {folder} is keyed by the secret in {ENV_KEY}, which is "
                    + ("not set here" if derived is None else "not the one it was made with"),
                    hint=f"Set {ENV_KEY} to the secret the dataset was curated with.",
                )
            return cls(folder, derived[0], header)
        key = key_file(_KEY_PREFIX + header["key_id"], create=False)
        if key is None or key_check(key) != header.get("check"):
            raise DataError(
                f"the key of the PII index of {folder} (id {header['key_id']}) is not in this CVML_HOME's keys",
                hint="Run this where the dataset was curated (its CVML_HOME), or curate it again here; "
                "a copied dataset carries no key, by design.",
            )
        return cls(folder, key, header)

    @staticmethod
    def discard_key(folder: Path) -> None:
        """Delete the key file of the index in `folder` (when the dataset is being replaced)."""
        header = read_header(folder)
        if header and header.get("key") == "file" and re.fullmatch(r"[0-9a-f]+", str(header.get("key_id"))):
            delete_key_file(_KEY_PREFIX + header["key_id"])
        (folder / LEGACY_KEY_FILE).unlink(missing_ok=True)

    def digest(self, value: str, pii_type: str | None = None) -> str:
        return hmac.new(self.key, index_form(pii_type, value).encode(), hashlib.sha256).hexdigest()

    def add(self, pii_type: str, value: str, group: str) -> None:
        entry = (self.digest(value, pii_type), group)
        if entry not in self._seen:
            self._seen.add(entry)
            self._fh.write(json.dumps({"hash": entry[0], "type": pii_type, "group": group}) + "\n")

    def groups_for(self, value: str, pii_type: str | None = None) -> set[str]:
        """Groups whose rows held exactly `value` as PII of `pii_type` (default: the type
        `typed_value` gives it)."""
        if pii_type is None:
            pii_type, value = typed_value(value)
        wanted = self.digest(value, pii_type)
        return {e["group"] for e in self.entries() if e["hash"] == wanted and e.get("type") in (pii_type, None)}

    def entries(self) -> list[dict]:
        """The index's entries (hash, type, group), without its header."""
        with (self.folder / INDEX_FILE).open(encoding="utf-8") as fh:
            return [entry for line in fh if "hash" in (entry := json.loads(line))]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_header(folder: Path) -> dict | None:
    """The index's first line when it is a header (key id and source), else None."""
    try:
        with (folder / INDEX_FILE).open(encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "{}")
    except (OSError, json.JSONDecodeError):
        return None
    return first if "pii_index" in first else None
