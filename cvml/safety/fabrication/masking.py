"""What is no claim, blanked before any parser reads a text: placeholders, emails, URLs,
phones and addresses, whose digits would otherwise read as quantities. The PII detectors
decide what those are, so the two checks agree.
"""

from __future__ import annotations

import re

from cvml.safety.pii_patterns import find_addresses, find_emails, find_urls
from cvml.safety.pii_phones import find_phones

_PLACEHOLDER = re.compile(r"<[A-Z]+(?:_[A-Z]+)*_\d+>")


def _mask(text: str) -> str:
    """The text with placeholders, emails, URLs, phones and addresses blanked (same
    length), so that their digits are not read as quantities."""
    spans = [m.span() for m in _PLACEHOLDER.finditer(text)]
    spans += [*find_emails(text), *find_urls(text), *find_phones(text), *find_addresses(text)]
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)
