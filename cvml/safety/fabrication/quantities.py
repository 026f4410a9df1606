"""Quantities: counts, percentages, money, years and durations, in digits or in words.

They are read in one pass because they share the number syntax: a range shares its units
("10-15%", "$10-15M", "2019-21"), a compound duration is one claim ("2 years 10 months"),
and a date's year is a year but its other digits are no claim ("03/2019", "24/7"). A
quantity is supported when the input states the same fact in any written form: "25%" =
"25 percent", "$1.2M" = "$1.2 million" = "1,200,000 dollars", "five" = "5", "60 months" =
"5 years", "2019" inside "2019-2021" or "03/2019".

Rounding tolerance. An output quantity is supported by an input quantity when:
- the input, rounded to the precision the output is written in, gives the output, and
  they differ by at most 5% ("24.6%" -> "25%", "1,234" -> "1,200"; not "47%" -> "50%");
- the output is hedged as approximate ("about", "around", "roughly", "~", "nearly",
  "almost") and they differ by at most 10% ("47%" -> "about 50%");
- the output is a lower bound ("over", "more than", "at least", "5+") the input meets
  ("6 years" -> "5+ years"), or an upper bound ("up to", "under", "less than") at most
  a third above the input ("90 minutes" -> "under 2 hours"; not "1 hour" -> "under 2 hours");
- a duration in years is within a year of a range the input spells ("2015-2022" -> "7 years").
Years get no tolerance: "2019" is supported by 2019 only.
"""

from __future__ import annotations

import re
from itertools import pairwise

from cvml.safety.fabrication.claims import _SMALL, _TENS, Claim, _Found

# Relative tolerances of the rounding rule, an approximate hedge and an upper bound.
ROUNDING_TOLERANCE, APPROX_TOLERANCE, UPPER_BOUND_SLACK = 0.05, 0.10, 1 / 3


def _number(x: float) -> str:
    return f"{x:.0f}" if x == int(x) else f"{x:g}"


_HOURS = {"decade": 87660.0, "year": 8766.0, "month": 730.5, "week": 168.0, "day": 24.0, "hour": 1.0,
          "minute": 1 / 60}
_UNIT_PREFIXES = (("dec", "decade"), ("y", "year"), ("mi", "minute"), ("mo", "month"), ("w", "week"),
                  ("d", "day"), ("h", "hour"))
_DURATION_UNIT = r"(?:years?|yrs?|months?|mos|weeks?|wks?|days?|hours?|hrs?|minutes?|mins?|decades?)"
_MONEY_WORDS = ("dollars", "euro", "euros", "pounds", "rupees")
_SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9,
           "billion": 1e9, "lakh": 1e5, "lakhs": 1e5, "lac": 1e5, "lacs": 1e5, "crore": 1e7, "crores": 1e7,
           "cr": 1e7, "hundred": 1e2}
# Dates with slashes or dots: their years are claims, their other digits are not ("24/7" neither).
_DATE = re.compile(r"(?<![\w.])(?:\d{1,4}/\d{1,4}(?:/\d{1,4})?|\d{1,2}\.\d{1,2}\.\d{2,4}|\d{4}-\d{1,2}-\d{1,2})"
                   r"(?![\w/])")
_YEAR_IN_DATE = re.compile(r"(?<!\d)(?:19[5-9]\d|20[0-3]\d)(?!\d)")
# A number not glued to letters ("EC2", "B2B", "COVID-19") nor part of a time ("9:30").
_NUMBER = re.compile(
    r"(?<![\w.,/])(?<![A-Za-z]-)(?<!\d:)"
    r"(?P<cur>[$£€₹]\s?|(?:US\$|USD|INR|EUR|GBP|AUD|CAD|Rs\.?)\s?)?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<scale>\s?(?i:thousand|million|billion|lakhs?|lacs?|crores?)\b|(?:k|K|M|m|mn|MM|bn|Bn|B|cr)(?!\w))?"
    r"(?P<plus>\+)?"
    rf"(?P<unit>\s?(?:%|(?i:percent|per\s?cent|pct)\b)|\s?[x×](?!\w)|\s?(?i:{_DURATION_UNIT})\b\.?"
    rf"|\s(?i:{'|'.join(_MONEY_WORDS)})\b)?"
    r"(?![\w/]|:\d)"
)
_WORD_NUMBER = re.compile(
    rf"(?i)\b(?:(?P<tens>{'|'.join(_TENS)})(?:[- ](?P<ones>{'|'.join(_SMALL[1:10])}))?|(?P<small>{'|'.join(_SMALL)})"
    rf"|(?P<a>an?))(?P<scale>\s(?:hundred|thousand|million|billion|dozen))?(?P<plus>\+)?"
    rf"(?P<unit>\s(?:{_DURATION_UNIT}|percent)\b)?(?![\w-])"
)
_BOUND_BEFORE = re.compile(
    r"(?i)(?:(?P<approx>~|≈|\babout|\baround|\bapprox(?:imately|\.)?|\broughly|\bcirca|\bestimated|\bnearly"
    r"|\balmost|\bclose to|\bsome)|(?P<lower>\bover|\bmore than|\babove|\bupwards of|\bat least|\bin excess of"
    r"|\bexceeding)|(?P<upper>\bup to|\bunder|\bless than|\bbelow|\bfewer than|\bwithin))\s*$"
)
_RANGE_JOINS = ("-", "–", "—", "to")
_MONTH_YEAR = re.compile(r"\s?/\s?\d")  # "2007 - 09 / 2008": the 09 is a month
_COMPOUND_JOIN = re.compile(r"\s*(?i:and|,)?\s*")
_BARE_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")


def _quantities(masked: str, text: str, keep_parts: bool = False) -> list[_Found]:
    """Numbers written in digits or words, classified; ranges share their units and
    compound durations are merged (an input keeps the parts too: "2 years 4 months"
    supports "2 years")."""
    found: list[tuple[int, int, dict]] = []
    dates = list(_DATE.finditer(masked))
    for date in dates:
        found += [(date.start() + y.start(), date.start() + y.end(), {"year": int(y.group())})
                  for y in _YEAR_IN_DATE.finditer(date.group())]
    for m in _NUMBER.finditer(masked):
        if not any(d.start() <= m.start() < d.end() for d in dates) and (parts := _digit_parts(m)):
            found.append((m.start(), m.end(), parts))
    for m in _WORD_NUMBER.finditer(masked):
        if parts := _word_parts(m):
            found.append((m.start(), m.end(), parts))
    found.sort(key=lambda f: f[:2])
    _share_range_units(masked, found)
    items = [_quantity(text, masked, *f) for f in found]
    merged = _merge_compound_durations(masked, text, items)
    return merged + [item for item in items if item not in merged] if keep_parts else merged


def _digit_parts(m: re.Match) -> dict | None:
    num, scale = m.group("num"), (m.group("scale") or "").strip()
    if scale in ("m", "B") and not m.group("cur"):
        return None  # "5m" is metres, "5B" a grade or a building
    digits = num.replace(",", "")
    decimals = len(digits.partition(".")[2])
    trailing_zeros = 0 if decimals else len(digits) - len(digits.rstrip("0"))
    return {"n": float(digits), "step": 10.0 ** (trailing_zeros - decimals), "cur": bool(m.group("cur")),
            "year_like": len(digits) == 4 and num.isdigit(), "scale": scale, "plus": bool(m.group("plus")),
            "unit": (m.group("unit") or "").strip().lower()}


def _word_parts(m: re.Match) -> dict | None:
    scale, unit = (m.group("scale") or "").strip().lower(), (m.group("unit") or "").strip().lower()
    if m.group("a"):
        if scale != "dozen" and not unit.startswith("decade"):
            return None  # "a year" in "saving $5k a year" is a rate, not a duration
        n = 1.0
    elif m.group("small"):
        n = float(_SMALL.index(m.group("small").lower()))
        if n <= 1 and not (unit or scale):
            return None  # "one of", "zero downtime": too common to be claims
    else:
        ones = _SMALL.index(m.group("ones").lower()) if m.group("ones") else 0
        n = 10.0 * (_TENS.index(m.group("tens").lower()) + 2) + ones
    if scale == "dozen":
        n, scale = n * 12, ""
    return {"n": n, "step": 1.0, "cur": False, "year_like": False, "scale": scale, "plus": bool(m.group("plus")),
            "unit": unit}


def _share_range_units(masked: str, found: list[tuple[int, int, dict]]) -> None:
    """The ends of a range share what one of them spells out: "10-15%", "5 to 7 years",
    "$10-15M"; "2019-21" ends in 2021."""
    for (_, a_end, a), (b_start, b_end, b) in pairwise(found):
        if masked[a_end:b_start].strip() not in _RANGE_JOINS or "year" in a or "year" in b:
            continue
        if (_is_year(a) and not b["unit"] and b["step"] == 1 and a["n"] % 100 < b["n"] < 100
                and b_start - a_end <= 3 and not _MONTH_YEAR.match(masked, b_end)):
            b["year"] = int(a["n"]) // 100 * 100 + int(b["n"])
            continue
        a["unit"], a["scale"] = a["unit"] or b["unit"], a["scale"] or b["scale"]
        b["cur"] = b["cur"] or a["cur"]


def _is_year(parts: dict) -> bool:
    return parts["year_like"] and 1950 <= parts["n"] <= 2039 and not (parts["scale"] or parts["unit"] or parts["plus"])


def _quantity(text: str, masked: str, start: int, end: int, parts: dict) -> _Found:
    while end > start and text[end - 1].isspace():
        end -= 1
    if "year" in parts or _is_year(parts):
        year = float(parts["year"] if "year" in parts else parts["n"])
        return _Found(Claim("year", text[start:end], (start, end), _number(year)), year, year)
    raw = parts["n"] * _SCALES.get(parts["scale"].lower(), 1.0)
    step = parts["step"] * _SCALES.get(parts["scale"].lower(), 1.0)
    unit, factor = parts["unit"], 1.0
    if unit in ("%", "pct") or unit.startswith("per"):
        kind, norm = "percent", f"{_number(raw)}%"
    elif parts["cur"] or unit in _MONEY_WORDS:
        kind, norm = "money", _number(raw)
    elif unit and unit not in ("x", "×"):
        kind, factor = "duration", _HOURS[next(name for prefix, name in _UNIT_PREFIXES if unit.startswith(prefix))]
        norm = _duration_norm(raw * factor)
    else:
        kind, norm = "number", _number(raw) + ("x" if unit else "")
    bound = "lower" if parts["plus"] else _bound(masked[max(0, start - 24):start])
    return _Found(Claim(kind, text[start:end], (start, end), norm), raw * factor, raw, step, factor, bound)


def _duration_norm(hours: float) -> str:
    return f"{_number(round(hours / _HOURS['month'], 2))} months" if hours >= _HOURS["day"] else \
        f"{_number(round(hours, 2))} hours"


def _bound(before: str) -> str | None:
    m = _BOUND_BEFORE.search(before)
    return next((name for name in ("approx", "lower", "upper") if m.group(name)), None) if m else None


def _merge_compound_durations(masked: str, text: str, items: list[_Found]) -> list[_Found]:
    """"2 years 10 months" is one duration of 34 months."""
    merged: list[_Found] = []
    for item in items:
        prev = merged[-1] if merged else None
        if (prev is not None and prev.claim.kind == item.claim.kind == "duration" and prev.unit > item.unit
                and _COMPOUND_JOIN.fullmatch(masked, prev.claim.span[1], item.claim.span[0])):
            start, end, value = prev.claim.span[0], item.claim.span[1], prev.value + item.value
            merged[-1] = _Found(Claim("duration", text[start:end], (start, end), _duration_norm(value)),
                                value, value, item.step * item.unit, 1.0, prev.bound)
        else:
            merged.append(item)
    return merged


_COMPATIBLE = {"year": {"year", "number"}, "percent": {"percent", "number"}, "money": {"money", "number"},
               "duration": {"duration", "number"}, "number": {"number", "percent", "money", "duration"}}


def _quantity_supported(q: _Found, u: _Found) -> bool:
    """Whether input quantity u supports output quantity q (see the module docstring).
    Quantities of the same kind compare by value with the tolerances; a plain number
    and another kind only by the number as written, exactly ("25" -> "25%")."""
    if u.claim.kind not in _COMPATIBLE[q.claim.kind]:
        return False
    if q.claim.kind == "year" or u.claim.kind != q.claim.kind:
        return u.raw == q.raw
    v, w, step = q.value, u.value, q.step * q.unit
    diff = abs(v - w)
    if diff <= step / 2 + 1e-9 * abs(v) and diff <= ROUNDING_TOLERANCE * abs(w) + 1e-9:
        return True
    if q.bound == "approx" and diff <= APPROX_TOLERANCE * abs(w):
        return True
    if q.bound == "lower":
        return w >= v
    return q.bound == "upper" and v / (1 + UPPER_BOUND_SLACK) <= w <= v
