"""Phone numbers in any country's format.

A regex finds digit groups a phone could be written as (+44 20 7946 0958, (415) 555-0132,
0049 30 123456, 07700 900123); shapes that are dates, year ranges, thousands or IP
addresses are dropped; then the evidence asked for grows as the shape gets weaker. A label
("Phone:", "Mobile", "Tel") is enough. Otherwise an international prefix must give a
possible number for its country; a national format needs nine digits or more (with its
area code) and a possible number in one of the fallback regions; a bare run of digits must
be a valid number there (number ranges, not only length), since IDs and amounts are bare
runs too. `phonenumbers` (libphonenumber's metadata, offline) answers those questions.
Its own PhoneNumberMatcher is not used to find candidates: with lenient matching it takes
year ranges ("2019-2023") for numbers, with strict matching it misses the placeholder
numbers CV templates are full of ("(123) 345-7890"), and it needs one region per scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers

# National formats are tried as numbers of these countries, most common in our CVs first.
FALLBACK_REGIONS = ("US", "GB", "IN", "DE", "AU", "FR", "IE", "ZA")
_MIN_DIGITS, _MAX_DIGITS, _MIN_NATIONAL_DIGITS = 7, 15, 9

# Seven characters of digits and separators: what every phone has, found in one fast scan.
_HINT = re.compile(r"[\d+(][\d \u00a0()./\-–]{5,}\d")
_GROUP = r"\(?\d{1,5}\)?"
_SEP = r"(?:[ \u00a0]?[-–.][ \u00a0]?|[ \u00a0/])"
_CANDIDATE = re.compile(rf"(?<![\w+@/.$£€₹-])(?:\+[ \u00a0]?)?{_GROUP}(?:{_SEP}?{_GROUP}){{1,7}}(?![\w@%])")
_NOT_A_PHONE = re.compile(
    r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2}"  # a date
    r"|(?:\d{1,2}[./])?(?:19|20)\d\d\s?[-–/]\s?(?:\d{1,2}[./])?(?:(?:19|20)\d\d|\d\d)"  # a year or month range
    r"|\d{1,2}[./]\d{2}\s?[-–]\s?\d{1,2}[./]\d{2}"  # "08/06-06/07": months of two-digit years
    r"|(?:(?:19|20)\d\d[ ,/]*)+"  # a list of years
    r"|[1-9]\d{0,2}([ .,])\d{3}(?:\1\d{3})+"  # thousands
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IP address
)
# Inside a candidate: a year in brackets ("Vol. 106 (2011)") or a bracket glued to digits
# ("10(2) 40-47"); "(0)" as in "+44 (0)20" is the one bracket a phone has there.
_NOT_IN_A_PHONE = re.compile(r"\((?:19|20)\d\d\)|\d\((?!0\))")
# Without a label, a slash only follows an area code with its trunk zero ("030/123456");
# otherwise it separates dates, versions or model numbers.
_AREA_SLASH = re.compile(r"\(?0\d{1,5}\)?/\d[\d -]+")
_LABEL_WINDOW = 24
_LABEL = re.compile(
    r"(?i:\b(?:phone|ph|tel|telephone|mobile|mob|cell|cellphone|contact|fax|whatsapp|home|work|office|landline)\b"
    r"|\b[mthp]\b)[\s.:#|()-]{0,4}(?:\(?\w{1,4}\)?[\s:.-]{1,3})?$"
)
_NOT_A_PHONE_LABEL = re.compile(r"(?i)\b(?:isbn|issn|doi)\b\W*$")
_NON_DIGIT = re.compile(r"\D")


def find_phones(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the phone numbers in `text`."""
    hint = _HINT.search(text)
    if hint is None:
        return
    for m in _CANDIDATE.finditer(text, hint.start()):
        if _is_phone(m.group(), text[max(0, m.start() - _LABEL_WINDOW):m.start()]):
            yield m.span()


def phone_digits(value: str) -> str:
    """The digits a phone number is compared by: "0049 30 1234" and "+49 30 1234" agree."""
    digits = _NON_DIGIT.sub("", value)
    return digits[2:] if digits.startswith("00") else digits


def _is_phone(raw: str, before: str) -> bool:
    """Whether a candidate is a phone number, given the text just before it."""
    digits = _NON_DIGIT.sub("", raw)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS or _NOT_A_PHONE.fullmatch(raw.strip("()")):
        return False
    if _NOT_IN_A_PHONE.search(raw) or _NOT_A_PHONE_LABEL.search(before):
        return False
    if _LABEL.search(before):
        return True
    if "/" in raw and not _AREA_SLASH.fullmatch(raw):
        return False
    if raw.startswith("+") or digits.startswith("00"):
        return _holds("+" + phone_digits(raw), None, phonenumbers.is_possible_number)
    if len(digits) < _MIN_NATIONAL_DIGITS:
        return False
    check = phonenumbers.is_valid_number if raw.isdigit() else phonenumbers.is_possible_number
    return any(_holds(raw, region, check) for region in FALLBACK_REGIONS)


def _holds(raw: str, region: str | None, check) -> bool:
    try:
        return check(phonenumbers.parse(raw, region))
    except phonenumbers.NumberParseException:
        return False
