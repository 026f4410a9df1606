"""Model references — `name`, `name@3`, `name@v3`, `name@latest`, `name@prod` — and name rules."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from cvml.errors import RegistryError

# Names never contain "/" so that anything with a path separator is unambiguously a path.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_VERSION_RE = re.compile(r"v?([0-9]+)")
# `name@latest` means the newest version, like a bare `name`; it cannot be promoted to.
LATEST = "latest"


@dataclass(frozen=True)
class Ref:
    """A parsed reference. Neither `version` nor `alias` set means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None


def parse_ref(text: str) -> Ref | None:
    """Parse `name[@N|@vN|@alias]`; None when `text` is not shaped like a reference (e.g. a path)."""
    name, _, selector = text.partition("@")
    if not _NAME_RE.fullmatch(name):
        return None
    if not selector or selector == LATEST:
        return Ref(name)
    version = _VERSION_RE.fullmatch(selector)
    if version:
        return Ref(name, version=int(version.group(1)))
    if _ALIAS_RE.fullmatch(selector):
        return Ref(name, alias=selector)
    return None


def check_name(name: str) -> str:
    """Return `name` if it can name a model, else raise RegistryError."""
    if not _NAME_RE.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. cv-rewriter)",
        )
    return name


def check_alias(alias: str) -> str:
    """Return `alias` if it can be promoted to, else raise RegistryError.

    Aliases that look like versions (`3`, `v3`) or equal `latest` would make references ambiguous.
    """
    if not _ALIAS_RE.fullmatch(alias) or _VERSION_RE.fullmatch(alias) or alias == LATEST:
        raise RegistryError(
            f"invalid alias {alias!r}",
            hint="an alias starts with a letter, uses letters, digits, '_' and '-', "
            f"and is not a version (v3) or {LATEST!r}; e.g. prod, canary",
        )
    return alias


def did_you_mean(word: str, known: list[str], what: str) -> str:
    """A hint naming the closest of `known` (if any is close) and listing all of them."""
    if not known:
        return f"there are no {what} yet"
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    listing = f"{what}: {', '.join(sorted(known))}"
    return f"did you mean {close[0]!r}? {listing}" if close else listing
