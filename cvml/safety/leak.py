"""PII leaks: personal data in a model's output that its input did not hold.

    leaks = pii_leaks(output, source, job_description)   # [PiiSpan(type, start, end, text)]

A rewrite may repeat the email or phone its source gave; personal data the input did
not hold is a leak, whether the model recalled it from training data (someone else's
email) or made it up. What counts as PII is what `cvml.safety.pii.PiiRedactor` finds
(emails, phones, URLs, addresses, birth dates, national IDs, names). A value is in the
input when the redactor found the same value there (compared by `normalize_value`) or
the input's text holds it in any case and spacing, so a name the detector misses in the
input (no header, no label) does not turn into a leak when the output states it.
Phones compare by their last nine digits ("+44 7700 900123" = "07700 900123"); URLs
without scheme, "www." and trailing slash. Placeholders such as `<EMAIL_1>` are no PII:
the redactor skips them on both sides.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cvml.safety.pii import PiiRedactor, PiiSpan, normalize_value
from cvml.safety.pii_phones import phone_digits

# National significant numbers have at most a country code or trunk prefix more than this.
_PHONE_DIGITS_COMPARED = 9
_DIGIT_RUN = re.compile(r"[\d+(][\d \u00a0()./\-–]{5,}\d")
_URL_PREFIX = re.compile(r"^(?:[a-z]+://)?(?:www\.)?")


def pii_leaks(output: str, source: str, job_description: str | None = None, *,
              redactor: PiiRedactor | None = None) -> list[PiiSpan]:
    """The PII spans of `output` (offsets into it) whose values neither `source` nor
    `job_description` holds. Pass a `redactor` to choose the types or to supply the
    person's known names; by default every type is checked."""
    redactor = redactor or _default_redactor()
    found = redactor.find(output)
    if not found:
        return []
    text = "\n".join(t for t in (source, job_description) if t)
    known = _Known(text, redactor.find(text))
    return [span for span in found if not known.holds(span)]


@lru_cache(maxsize=1)
def _default_redactor() -> PiiRedactor:
    return PiiRedactor()


class _Known:
    """The PII values an input holds, in the forms they are compared by."""

    def __init__(self, text: str, spans: list[PiiSpan]):
        self.values = {(s.type, _key(s.type, s.text)) for s in spans}
        self.folded = " ".join(text.casefold().split())
        self.phones = {_key("PHONE", run) for run in _DIGIT_RUN.findall(text)}

    def holds(self, span: PiiSpan) -> bool:
        key = _key(span.type, span.text)
        if (span.type, key) in self.values:
            return True
        if span.type == "PHONE":
            return key in self.phones
        return key in self.folded


def _key(pii_type: str, value: str) -> str:
    if pii_type == "PHONE":
        return phone_digits(value)[-_PHONE_DIGITS_COMPARED:]
    if pii_type == "URL":
        return _url_key(value)
    return normalize_value(pii_type, value)


def _url_key(value: str) -> str:
    return _URL_PREFIX.sub("", value.strip().casefold()).rstrip("/")
