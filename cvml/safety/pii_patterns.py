"""Detectors for PII with a fixed shape: emails, URLs, street addresses, dates of birth and
national ID numbers.

Each `find_*` takes a text and yields (start, end) spans. Each first makes a cheap test
that every match needs (an "@", a keyword, a digit shape), so a CV bullet without any of
it costs a substring search or one fast scan rather than the full regex: curation runs
these on every row. A fast scan is a regex that starts with a literal or one character
class, so that `re` skips to the positions that can match; an alternation of unlike
branches makes it try every branch at every position instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

Spans = Iterator[tuple[int, int]]

# --- email -------------------------------------------------------------------------------

# The local part allows the apostrophe of names like O'Connell.
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][\w.+'%-]*@[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])"
)


def find_emails(text: str) -> Spans:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.span()


# --- URL -----------------------------------------------------------------------------------

# A bare domain ("github.com/jane") needs one of these top-level domains in lower case, so
# "Node.js" and "ASP.NET" stay skills, and a path or a "Website:" label, so "B.com" (a
# degree) and the employers a CV names ("amazon.com") stay too: a profile link has a path.
_TLDS = ("com|org|net|edu|gov|io|co|me|dev|ai|app|info|biz|name|in|uk|us|ca|au|de|fr|nl|eu|ch|se|no|es|it|"
         "ie|nz|sg|za|jp|page|site|tech")
_URL_CHAR = r"[^\s<>\"'`()\[\]{}|,]"
_URL = re.compile(
    rf"(?<![\w@./-])(?:(?i:https?|ftp)://{_URL_CHAR}+|(?i:www)\.{_URL_CHAR}+"
    rf"|[A-Za-z0-9][\w-]*(?:\.[\w-]+)*\.(?:{_TLDS})(?![\w-])(?P<path>/{_URL_CHAR}*)?)"
)
_TLD_HINT = re.compile(rf"\.(?:{_TLDS})(?![\w-])")
_SITE_LABEL = re.compile(r"(?i)\b(?:website|web|site|portfolio|blog|homepage|url|linkedin|github)\b\W{0,4}$")
_URL_TRAILER = ".,;:!?"


def find_urls(text: str) -> Spans:
    if not (_TLD_HINT.search(text) or "://" in text or "www." in text.lower()):
        return
    for m in _URL.finditer(text):
        start, end = m.span()
        bare = not m.group().lower().startswith(("http", "ftp", "www"))
        if bare and m.group("path") is None and not _SITE_LABEL.search(text[max(0, start - 16):start]):
            continue
        while end > start and text[end - 1] in _URL_TRAILER:
            end -= 1
        yield start, end


# --- street address ----------------------------------------------------------------------

_STREET_NAMES = ("Street|Road|Avenue|Lane|Drive|Court|Close|Crescent|Place|Way|Boulevard|Terrace|Square|Circle|"
                 "Parkway|Highway|Row|Gardens|Grove|Mews|Marg|Nagar|Trail|Plaza")
_STREET_ABBREVIATIONS = "St|Rd|Ave|Ln|Dr|Ct|Cres|Pl|Blvd|Sq|Cir|Pkwy|Hwy"
_STREET_WORDS = f"{_STREET_NAMES}|{_STREET_ABBREVIATIONS}"
_STREET_TYPE = rf"(?:(?:{_STREET_NAMES})\b|(?:{_STREET_ABBREVIATIONS})\b\.?)"
_POSTCODE = (r"(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # UK
             r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # Canada
             r"|[A-Z]\d{2}\s?[A-Z\d]{4}"  # Ireland
             r"|\d{3}\s\d{3}|\d{4,6}(?:-\d{4})?)\b")  # India, US ZIP, DE/FR/AU and the like
_PLACE = r"[A-Z][A-Za-z.'-]+(?:\s[A-Z][A-Za-z.'-]+){0,2}"
_REGION = r"[A-Z]{2,3}\b\.?"
# A house number, up to three words and a street type, then a unit and "City, REGION POSTCODE"
# where they follow: the street type is what tells "12 Elm Street" from "12 new clients".
_STREET = (rf"\b\d{{1,5}}[A-Za-z]?(?:[/-]\d{{1,4}}[A-Za-z]?)?,?\s(?:[NSEW]\.?\s)?[A-Z][\w'.-]*\s(?:[\w'.-]+\s){{0,2}}"
           rf"{_STREET_TYPE}"
           rf"(?:,?\s(?i:apt|apartment|suite|ste|unit|flat|floor)\.?\s?#?\w{{1,6}}|\s#\d{{1,5}})?"
           rf"(?:,?\s{_PLACE}(?:,\s?{_PLACE})?(?:,?\s{_REGION})?,?\s{_POSTCODE})?")
_GERMAN_STREET_END = r"(?:straße|strasse|str\.|weg|allee|platz|gasse)"
_GERMAN_STREET = (rf"\b[A-ZÄÖÜ][\wäöüß-]*{_GERMAN_STREET_END}\s\d{{1,4}}[a-z]?"  # Hauptstraße 12a
                  rf"(?:,?\s\d{{5}}\s[A-ZÄÖÜ][\wäöüß-]+)?")  # , 10115 Berlin
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
              "NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY")
_ADDRESS = re.compile(
    rf"{_STREET}|{_GERMAN_STREET}"
    rf"|\b(?i:p\.?\s?o\.?\s?box|post\s+office\s+box)\s?\d{{1,6}}"
    rf"|\b{_PLACE},\s?(?:{_US_STATES})\.?\s\d{{5}}(?:-\d{{4}})?\b"  # Austin, TX 78701
    rf"|\b(?:GIR\s0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?\s\d[ABD-HJLNP-UW-Z]{{2}})\b"  # a UK postcode alone
    rf"|\b(?i:pin\s?code|pin|postal\s+code|zip(?:\s?code)?)\s?[:\-]?\s?\d{{3}}\s?\d{{3}}\b"
    rf"|\b[A-Z][a-z]+\s?[-–,]\s?[1-8]\d{{5}}\b"  # Pune - 411014
)
# What every form above needs (a street type, five digits or a UK postcode's end, a German
# street, a box or a postcode label), each as a scan that `re` can run fast.
_STREET_HINT = re.compile(rf"(?:{_STREET_WORDS})\b")
_POSTCODE_HINT = re.compile(r"\d(?:\d{4}|[A-Z]{2}\b)")
_LABEL_HINT = re.compile(r"[BbPpZz](?:ox|OX|in|IN|ip|IP|ostal|OSTAL)\b")
_GERMAN_HINT = re.compile(rf"{_GERMAN_STREET_END}\s\d")


@lru_cache(maxsize=8)
def find_addresses(text: str) -> tuple[tuple[int, int], ...]:
    """Address spans; cached for the last texts, since the name finder asks again (a name on
    the line above an address is a name)."""
    if any(hint.search(text) for hint in (_STREET_HINT, _POSTCODE_HINT, _LABEL_HINT, _GERMAN_HINT)):
        return tuple(m.span() for m in _ADDRESS.finditer(text))
    return ()


# --- date of birth -----------------------------------------------------------------------

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (rf"\d{{1,2}}[./-]\d{{1,2}}[./-](?:\d{{4}}|\d{{2}})|\d{{4}}[./-]\d{{1,2}}[./-]\d{{1,2}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?\.?\s(?:of\s)?{_MONTH},?\s\d{{4}}|{_MONTH}\s\d{{1,2}}(?:st|nd|rd|th)?,?\s\d{{4}}"
         rf"|(?:19|20)\d\d")
# Only a date that a label calls a birth date: every other date in a CV is a job's or a degree's.
_DOB = re.compile(
    rf"(?i)\b(?:date\sof\sbirth|birth\s?date|d\.\s?o\.\s?b\b\.?|dob|born(?:\son)?|birthday|birth)\b"
    rf"[\s:.\-–]{{0,6}}({_DATE})(?!\d)"
)
_DOB_HINT = re.compile(r"[BbDd](?:irth|IRTH|orn|ORN|OB|ob\b|\.\s?[Oo]\.)")


def find_dobs(text: str) -> Spans:
    if _DOB_HINT.search(text):
        for m in _DOB.finditer(text):
            yield m.span(1)


# --- national ID -------------------------------------------------------------------------

# Shapes specific enough to trust without a label.
_ID_SHAPES = (
    r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"  # US SSN
    r"|\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b"  # UK National Insurance
    r"|\b[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z]\b"  # Indian PAN
)
# Numbers that only a label tells apart (Aadhaar, passport, ...): the value after it.
_ID_LABEL = (r"(?i:\b(?:aadhaa?r|passport|ssn|social\ssecurity|national\s(?:id|identity|insurance)|nino|"
             r"ni|sin|pan|voter\sid|driving\slicen[cs]e|driver'?s\slicen[cs]e)"
             r"(?:\s(?:card|no|number|num))?\b\.?(?:\s?(?:no|number|#)\b\.?)?)\s?[:#-]?\s?")
_ID_VALUE = r"(\d{4}[ -]?\d{4}[ -]?\d{4}|[A-Z]{0,3}\d[A-Z0-9]{4,11})\b"  # Aadhaar's 12 digits, or letters and digits
_NATIONAL_ID = re.compile(rf"{_ID_SHAPES}|{_ID_LABEL}{_ID_VALUE}")
# What every ID above holds: five letters and digits from a digit on, or its digit groups.
_ID_HINT = re.compile(r"\d(?:[A-Z\d]{4}|\d{3}[ -]\d{4}|\d\d-\d\d-\d{4}|\d \d\d \d\d)")


def find_national_ids(text: str) -> Spans:
    if _ID_HINT.search(text):
        for m in _NATIONAL_ID.finditer(text):
            yield m.span(1) if m.group(1) else m.span()
