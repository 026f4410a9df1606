"""Find and redact personal data (PII) in CV text with typed, consistent placeholders.

    redactor = PiiRedactor()
    scope = Placeholders()                      # one per record (or per person)
    source, _ = redactor.redact("Jane Doe — jane@x.io", scope)   # "<NAME_1> — <EMAIL_1>"
    target, _ = redactor.redact("Contact jane@x.io", scope)      # "Contact <EMAIL_1>"

Placeholders keep the text learnable: a model trained on redacted pairs sees that the
email in the target is the one in the source, without ever seeing the email. What is not
PII stays: employment dates, companies, schools, degrees, skills, cities, metrics.
Text that already holds placeholders is left as it is, so redacting twice changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cvml.errors import ConfigError
from cvml.safety.pii_names import NameFinder, find_again
from cvml.safety.pii_patterns import find_addresses, find_dobs, find_emails, find_national_ids, find_urls
from cvml.safety.pii_phones import find_phones, phone_digits

PII_TYPES = ("EMAIL", "PHONE", "URL", "ADDRESS", "DOB", "NATIONAL_ID", "NAME")
# On overlap the longer span wins; at equal length, the type listed first (the more specific).
_PRIORITY = {t: i for i, t in enumerate(("EMAIL", "URL", "NATIONAL_ID", "PHONE", "DOB", "ADDRESS", "NAME"))}
_PATTERN_FINDERS: dict[str, Callable[[str], Iterable[tuple[int, int]]]] = {
    "EMAIL": find_emails, "PHONE": find_phones, "URL": find_urls, "ADDRESS": find_addresses,
    "DOB": find_dobs, "NATIONAL_ID": find_national_ids,
}
_PLACEHOLDER = re.compile(rf"<(?:{'|'.join(PII_TYPES)})_\d+>")


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data: its type and where it is in the text it was found in."""

    type: str
    start: int
    end: int
    text: str


class Placeholders:
    """Numbers values within one scope: the same type and value always get the same token.

    Share one instance across the texts of a record (source, job description, target) so
    that a value repeated in them is replaced by the same placeholder in each.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def names(self) -> list[str]:
        """The (normalised) names given a token so far, to be found in the scope's other texts."""
        return [value for pii_type, value in self._tokens if pii_type == "NAME"]

    def token(self, span: PiiSpan) -> str:
        """`<TYPE_n>` for the span's value: n counts distinct values of that type, from 1."""
        key = (span.type, normalize_value(span.type, span.text))
        if key not in self._tokens:
            self._counts[span.type] = self._counts.get(span.type, 0) + 1
            self._tokens[key] = f"<{span.type}_{self._counts[span.type]}>"
        return self._tokens[key]


def normalize_value(pii_type: str, value: str) -> str:
    """The form values are compared by: phones by digits, the rest case- and space-folded."""
    if pii_type == "PHONE":
        return phone_digits(value)
    return " ".join(value.casefold().split())


class PiiRedactor:
    """Finds PII of the chosen types; build one and reuse it (it compiles the names).

    Args:
        types: which of PII_TYPES to find.
        names: names known to belong to the person (e.g. from their account), found
            case-insensitively as whole words, in addition to the names the detector finds.

    Raises:
        ConfigError: a type is not one of PII_TYPES.
    """

    def __init__(self, types: Iterable[str] = PII_TYPES, names: Iterable[str] = ()):
        self.types = tuple(dict.fromkeys(types))
        unknown = [t for t in self.types if t not in PII_TYPES]
        if unknown:
            raise ConfigError(f"unknown PII type(s): {', '.join(unknown)}",
                              hint=f"valid types are: {', '.join(PII_TYPES)}")
        self._finders = [(t, _PATTERN_FINDERS[t]) for t in self.types if t in _PATTERN_FINDERS]
        if "NAME" in self.types:
            self._finders.append(("NAME", NameFinder(names).find))

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping spans sorted by position; on overlap the longer span wins."""
        return self._find(text, known_names=())

    def redact(self, text: str, placeholders: Placeholders | None = None) -> tuple[str, list[PiiSpan]]:
        """The text with each span replaced by its placeholder, and the spans (offsets into
        the original text). Names already met in the scope are found again here, so the name
        of a source's header is also redacted in its target. Without `placeholders`,
        numbering starts afresh for this text."""
        known = placeholders.names() if placeholders is not None and "NAME" in self.types else ()
        spans = self._find(text, known)
        if not spans:
            return text, spans
        scope = placeholders if placeholders is not None else Placeholders()
        parts, at = [], 0
        for span in spans:
            parts += [text[at:span.start], scope.token(span)]
            at = span.end
        parts.append(text[at:])
        return "".join(parts), spans

    def _find(self, text: str, known_names: Iterable[str]) -> list[PiiSpan]:
        candidates = [(s, e, t) for t, finder in self._finders for s, e in finder(text) if e > s]
        candidates += [(s, e, "NAME") for s, e in find_again(text, known_names)]
        if not candidates:
            return []
        if "<" in text:
            placeholders = [m.span() for m in _PLACEHOLDER.finditer(text)]
            candidates = [c for c in candidates if not any(c[0] < e and s < c[1] for s, e in placeholders)]
        return [PiiSpan(t, s, e, text[s:e]) for s, e, t in _resolve(candidates)]


def _resolve(candidates: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Keep the longest (then most specific) of overlapping spans, in text order."""
    kept: list[tuple[int, int, str]] = []
    for s, e, t in sorted(candidates, key=lambda c: (c[0] - c[1], _PRIORITY[c[2]], c[0])):
        if all(e <= ks or s >= ke for ks, ke, _ in kept):
            kept.append((s, e, t))
    return sorted(kept)
