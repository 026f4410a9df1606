"""Fabrication check: the facts a rewrite states that its input does not support.

    result = check_fabrication(output, source, job_description)
    result.flagged      # True when a claim of the output is unsupported
    result.claims       # the unsupported claims: kind, text, span (offsets into output)
    result.n_claims     # every quantified or entity claim the output makes

A claim is a quantity or a named entity, the facts a CV is judged by and a model may
invent: counts ("37 services"), percentages, money, years, durations ("5 years"),
employers, schools and degrees. Skills, job titles and wording are not claims: a rewrite
may rephrase them freely. A claim is supported when the input states the same fact in
any written form:

- numbers: "25%" = "25 percent", "$1.2M" = "$1.2 million" = "1,200,000 dollars",
  "five" = "5", "60 months" = "5 years", "2019" inside "2019-2021" or "03/2019";
- entities: case, punctuation, word order and legal suffixes do not matter ("ORACLE
  INDIA PVT LTD" = "Oracle India", "University of Pune" = "Pune University"), nor an
  acronym for its long form ("MIT" = "Massachusetts Institute of Technology");
- degrees: by canonical id ("B.Tech" = "BTech" = "Bachelor of Technology"); a generic
  "bachelor's degree" is supported by any bachelor's and supports any bachelor's.

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

The job description supports every kind of claim except durations: a job ad's "5+ years
of experience" is a requirement, and a rewrite that repeats it as the candidate's
experience is the classic tailoring fabrication.

Employers and schools are found without NER. A run of capitalised words is one when it
holds a school word (University, College, Institute, ...) or a legal suffix (Inc, Ltd,
Bank, Group, ...); ends in an organisation word (Systems, Solutions, Health, ...) after a
word that is not generic ("Cisco Systems", not "Information Systems"); names a known
employer ("Infosys"; "Google" but not "Google Analytics"); follows a cue ("at", "joined",
"graduated from"); or stands alone as a part of a header line ("Engineer | Air Canada |
2019") without a section, job-title, skill or activity word in it. Other capitalised
words (sentence starts, skills, job titles, headings) are not claims. The input is read
leniently: every word, acronym and number in it counts, wherever it stands.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from itertools import pairwise

from cvml.safety.pii_patterns import find_addresses, find_emails, find_urls
from cvml.safety.pii_phones import find_phones
from cvml.safety.textscore import ACTION_VERBS

KINDS = ("number", "percent", "money", "year", "duration", "employer", "school", "degree")
# Relative tolerances of the rounding rule, an approximate hedge and an upper bound.
ROUNDING_TOLERANCE, APPROX_TOLERANCE, UPPER_BOUND_SLACK = 0.05, 0.10, 1 / 3


@dataclass(frozen=True)
class Claim:
    """A fact stated in a text: its kind (one of KINDS), the words, their (start, end)
    offsets, and the normal form it is compared by ("25%", "1200000", "btech")."""

    kind: str
    text: str
    span: tuple[int, int]
    normalized: str


@dataclass(frozen=True)
class FabricationResult:
    """`claims`: the output's unsupported claims; `all_claims`: every claim it makes."""

    claims: tuple[Claim, ...]
    all_claims: tuple[Claim, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.claims)

    @property
    def n_claims(self) -> int:
        return len(self.all_claims)

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "n_claims": self.n_claims, "claims": [asdict(c) for c in self.claims]}


def check_fabrication(output: str, source: str, job_description: str | None = None) -> FabricationResult:
    """The claims of `output` that neither `source` nor `job_description` supports."""
    found = _extract(output)
    if not found:
        return FabricationResult((), ())
    support = _Support(source, job_description or "")
    unsupported = tuple(item.claim for item in found if not support.holds(item))
    return FabricationResult(unsupported, tuple(item.claim for item in found))


def extract_claims(text: str) -> list[Claim]:
    """Every claim `text` makes, in reading order."""
    return [item.claim for item in _extract(text)]


@dataclass(frozen=True)
class _Found:
    """A claim with what its support is decided by."""

    claim: Claim
    value: float = 0.0  # quantities: normalised (money in units, durations in hours)
    raw: float = 0.0  # quantities: the number as written, times its scale
    step: float = 1.0  # quantities: the written precision, in raw units
    unit: float = 1.0  # quantities: value = raw * unit
    bound: str | None = None  # quantities: "approx", "lower" or "upper"
    key: str = ""  # degrees: canonical id
    level: str = ""  # degrees: bachelor, master, ...
    generic: bool = False  # degrees: "bachelor's degree" names no specific degree
    tokens: tuple[str, ...] = ()  # entities: normalised distinctive words
    rest: tuple[str, ...] = ()  # entities at a sentence start: the words after the first, which may be a verb


def _extract(text: str) -> list[_Found]:
    masked = _mask(text)
    degrees = _degrees(masked, lenient=False)
    entities = _entities(masked, text, exclude=[d.claim.span for d in degrees])
    return sorted(_quantities(masked, text) + degrees + entities, key=lambda f: f.claim.span)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _number(x: float) -> str:
    return f"{x:.0f}" if x == int(x) else f"{x:g}"


# --- masking --------------------------------------------------------------------------

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


# --- quantities -----------------------------------------------------------------------

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
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
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


# --- degrees --------------------------------------------------------------------------

# Written forms -> (canonical id, level); "." separates the letter groups that may take a dot.
_DEGREE_FORMS: dict[str, tuple[str, str]] = {
    "Ph.D": ("phd", "doctorate"), "D.Phil": ("phd", "doctorate"), "M.D": ("md", "doctorate"),
    "J.D": ("jd", "doctorate"), "M.B.A": ("mba", "master"), "E.M.B.A": ("mba", "master"),
    "M.Sc": ("msc", "master"), "M.S": ("msc", "master"), "M.Tech": ("mtech", "master"),
    "M.E": ("meng", "master"), "M.Eng": ("meng", "master"), "M.A": ("ma", "master"), "M.C.A": ("mca", "master"),
    "M.Com": ("mcom", "master"), "M.Ed": ("med", "master"), "M.F.A": ("mfa", "master"), "M.P.H": ("mph", "master"),
    "LL.M": ("llm", "master"), "M.Phil": ("mphil", "master"), "M.Pharm": ("mpharm", "master"),
    "M.Arch": ("march", "master"), "P.G.D.M": ("pgdm", "master"), "P.G.D.B.A": ("pgdm", "master"),
    "P.G.C.E": ("pgce", "master"), "M.B.B.S": ("mbbs", "bachelor"), "B.Tech": ("btech", "bachelor"),
    "B.E": ("beng", "bachelor"), "B.Eng": ("beng", "bachelor"), "B.Sc": ("bsc", "bachelor"),
    "B.S": ("bsc", "bachelor"), "B.A": ("ba", "bachelor"), "B.Com": ("bcom", "bachelor"),
    "B.B.A": ("bba", "bachelor"), "B.C.A": ("bca", "bachelor"), "B.Ed": ("bed", "bachelor"),
    "B.F.A": ("bfa", "bachelor"), "LL.B": ("llb", "bachelor"), "B.Pharm": ("bpharm", "bachelor"),
    "B.Arch": ("barch", "bachelor"), "H.N.D": ("hnd", "diploma"), "A.A.S": ("associate", "associate"),
    "A.A": ("associate", "associate"), "A.S": ("associate", "associate"),
}
_DEGREE_BY_KEY = {form.replace(".", "").lower(): value for form, value in _DEGREE_FORMS.items()}
_ABBREVIATION = re.compile(
    r"(?<![\w.'’-])(?i:"
    + "|".join(r"\.?\s?".join(map(re.escape, form.split("."))) + r"\.?"
               for form in sorted(_DEGREE_FORMS, key=len, reverse=True))
    + r")(?![\w'’-])"
)
# Forms that are also words or other abbreviations ("MS Office", "Boston, MA", "BE", "MARCH"):
# without dots they count only in capitals, before a field ("MS in ...", "BA Marketing") or
# right after a school.
_AMBIGUOUS = frozenset({"ms", "ma", "me", "ba", "bs", "be", "md", "jd", "aa", "as", "aas", "med", "bed", "llm",
                        "emba", "march"})
_NOT_A_FIELD = frozenset("""office excel word access powerpoint outlook project visio sql teams dynamics azure
sharepoint windows exchange server paint dos""".split())
_DEGREE_CONTEXT = re.compile(
    r"[ \t]*(?:\((?i:hons?|honou?rs)\)|in\b|of\b|(?i:degree)|[,:-]?[ \t]*(?P<field>[A-Z][a-z]+))"
)
_AFTER_SCHOOL = re.compile(r"(?i)\b(?:university|college|institute|school)[ \t,]{1,3}$")  # "Marietta College BA"
_FIELDS = {
    "bachelor": [("technology", "btech"), ("engineering", "beng"), ("science", "bsc"), ("fine arts", "bfa"),
                 ("arts", "ba"), ("commerce", "bcom"), ("business administration", "bba"),
                 ("computer application", "bca"), ("education", "bed"), ("law", "llb"), ("pharmacy", "bpharm"),
                 ("architecture", "barch")],
    "master": [("technology", "mtech"), ("engineering", "meng"), ("science", "msc"), ("fine arts", "mfa"),
               ("arts", "ma"), ("commerce", "mcom"), ("business administration", "mba"),
               ("computer application", "mca"), ("education", "med"), ("law", "llm"), ("public health", "mph"),
               ("philosophy", "mphil"), ("pharmacy", "mpharm"), ("architecture", "march")],
    "doctor": [("philosophy", "phd"), ("medicine", "md"), ("jurisprudence", "jd")],
    "associate": [("applied science", "associate"), ("science", "associate"), ("arts", "associate")],
}
_LONG_DEGREE = re.compile(
    r"(?i)\b(?P<level>bachelor|master|doctor|associate)(?P<s>'s|’s|s)?(?P<degree>[ \t]+degree)?"
    r"(?:[ \t]+(?P<prep>of|in)[ \t]+(?P<field>[a-z][a-z&]*(?:[ \t]+[a-z&]+){0,3}))?"
)
_GENERIC_DEGREE = re.compile(
    r"(?i)\b(?:(?P<doctorate>doctorate|doctoral\s+degree)|(?P<pgdip>post[- ]?graduate\s+diploma|pg\s+diploma)"
    r"|(?P<diploma>diploma)|(?P<bachelor>undergraduate\s+degree)|(?P<master>post[- ]?graduate\s+degree))\b"
)
_GENERIC_LEVEL = {"doctorate": "doctorate", "pgdip": "master", "diploma": "diploma", "bachelor": "bachelor",
                  "master": "master"}


def _degrees(masked: str, lenient: bool) -> list[_Found]:
    """Degrees by canonical id; `lenient` (for inputs) takes ambiguous forms without the
    context ("BE in", "MS Computer Science") they otherwise need, and any case."""
    found = [d for m in _ABBREVIATION.finditer(masked) if (d := _abbreviation(masked, m, lenient))]
    for m in _LONG_DEGREE.finditer(masked):
        d = _long_degree(m)
        if d and not any(_overlap(d.claim.span, f.claim.span) for f in found):
            found.append(d)
    for m in _GENERIC_DEGREE.finditer(masked):
        if not any(_overlap(m.span(), f.claim.span) for f in found):
            name = m.lastgroup
            found.append(_degree(m, name, _GENERIC_LEVEL[name], generic=name != "pgdip"))
    return found


def _abbreviation(masked: str, m: re.Match, lenient: bool) -> _Found | None:
    written = m.group()
    key = re.sub(r"[.\s]", "", written).lower()
    if key not in _DEGREE_BY_KEY or not (lenient or written[0].isupper()):
        return None
    if key in _AMBIGUOUS and "." not in written.rstrip("."):  # "Ms." is no M.S.
        context = _DEGREE_CONTEXT.match(masked, m.end())
        if not written.isupper() or (context and (context.group("field") or "").lower() in _NOT_A_FIELD):
            return None
        if not (context or lenient or _AFTER_SCHOOL.search(masked, 0, m.start())):
            return None
    return _degree(m, *_DEGREE_BY_KEY[key], generic=False)


def _long_degree(m: re.Match) -> _Found | None:
    level_word = m.group("level").lower()
    field = (m.group("field") or "").lower()
    prefix, key = next(((p, k) for p, k in _FIELDS[level_word] if field.startswith(p)), ("", None))
    if key:
        level = "doctorate" if level_word == "doctor" else level_word
        return _degree(m, key, level, generic=False, end=m.start("field") + len(prefix))
    if level_word in ("doctor", "associate") and not m.group("degree"):
        return None  # "Doctor" is a job, "Associate Engineer" a title
    if level_word == "master" and not (m.group("s") or m.group("degree") or m.group("prep")):
        return None  # "Scrum Master", "master data"
    end = max(m.end(g) for g in ("level", "s", "degree") if m.group(g))
    return _degree(m, level_word, level_word, generic=True, end=end)


def _degree(m: re.Match, key: str, level: str, generic: bool, end: int | None = None) -> _Found:
    end = m.end() if end is None else end
    return _Found(Claim("degree", m.string[m.start():end], (m.start(), end), key), key=key, level=level,
                  generic=generic)


def _degree_supported(d: _Found, inputs: list[_Found]) -> bool:
    if d.generic:
        return any(i.level == d.level for i in inputs)
    return any(i.key == d.key or (i.generic and i.level == d.level) for i in inputs)


# --- employers and schools ------------------------------------------------------------

@lru_cache(maxsize=65536)
def _norm_token(token: str) -> str:
    """How entity words are compared: case, accents, dots, possessives and plurals dropped."""
    token = unicodedata.normalize("NFKD", token.casefold())
    token = "".join(c for c in token if not unicodedata.combining(c))
    token = _POSSESSIVE.sub("", token).translate(_DROP)
    if token == "&":
        return "and"
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    return token[:-1] if token.endswith("s") and len(token) > 3 and not token.endswith(("ss", "us", "is")) else token


_POSSESSIVE = re.compile(r"['’]s$")
_DROP = str.maketrans("", "", ".'’")


def _lexicon(words: str) -> frozenset[str]:
    return frozenset(_norm_token(w) for w in words.split())


_RUN_TOKEN = re.compile(r"&|[^\W_](?:[\w'’&]|[.-](?=[^\W_]))*\.?")
_CONNECTORS = frozenset({"of", "and", "the", "for", "de", "du", "la", "le", "y", "&", "da", "del", "von", "van"})
_LEGAL = _lexicon("inc incorporated ltd limited llc llp lp plc corp corporation co company pvt private gmbh ag sa "
                  "bv nv oy ab as spa srl sarl pte pty")
_STRONG = _LEGAL | _lexicon("bank group holdings bancorp enterprises industries")
_COMMA_SUFFIXES = _lexicon("inc llc llp lp ltd plc corp co gmbh ag sa pvt")  # "Children Toys, Inc."
_SCHOOL = _lexicon("university college institute school academy polytechnic univ universidad universität université "
                   "universiteit conservatory seminary elementary iit nit iim iiit bits")
# Organisation words, compared as written: "Systems" ends a firm's name, "System" a thing.
_WEAK = frozenset("""technologies solutions systems services software labs laboratories consulting consultants
consultancy partners ventures associates analytics studios media retail insurance health healthcare hospital clinic
foods motors telecom telecommunications freight logistics energy airlines airways pharmaceuticals pharma networks
capital manufacturing travel housing cloud digital infotech infosystems interactive entertainment brands stores
markets resources engineering construction communications electronics automotive biotech therapeutics financial
securities investments trust foundation trading publishing shipping printing staffing catering centre center""".split())
_SUFFIXES = _STRONG | _SCHOOL | _lexicon(" ".join(_WEAK))
# Words that make a suffixed run a field rather than a firm ("Information Systems").
_GENERIC = _lexicon("""information financial finance business customer client data web hardware it technical
professional managed human support quality security network enterprise management marketing sales design creative
global national international public social mobile computer research education medical legal field user shared core
embedded integrated distributed internal external general legacy new key strategic operational operations product
project program programme content banking investment wealth asset risk credit tax audit accounting payroll hr team
staff home office family patient student community emergency clinical computing application infrastructure platform
payment commercial corporate wholesale present current""") | _lexicon(" ".join(_WEAK))
_MONTHS = _lexicon("""january february march april may june july august september october november december jan feb
mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday""")
# Words a capitalised run may start with that are no part of a name (compared in lower case).
_LEAD = ACTION_VERBS | _CONNECTORS | frozenset("""a an our my his her their at in for with from as also worked working
work joined join joining currently previously formerly then now served serving employed intern internship experience
experienced key proven former current responsible hired used using helped assisted did was were is am are have has
had became gained earned received awarded graduated studied attended pursued pursuing holds holding completed
achieved this that these those while during after before since when where graduate alumnus alumna""".split())
# Words that end a run even in capitals ("DEGREE FROM DAYSTAR UNIVERSITY", "ACME FOR SIX MONTHS").
_BREAKERS = frozenset("""from at in with to by on as until since while into via during after before within through
is was were are or per than year years month months week weeks day days hour hours""".split()) | set(_SMALL + _TENS)
# Words no organisation's name holds: CV sections, job titles, self-descriptions.
_NOT_ORG = _lexicon("""summary profile experience skills skill education competencies achievements highlights history
objective qualifications certifications certificate projects project references languages interests contact details
information overview expertise responsibilities duties accomplishments awards publications training volunteer
employment career engineer developer manager analyst consultant director lead head specialist officer assistant
associate executive intern architect administrator coordinator designer scientist president vp supervisor
representative technician teacher nurse accountant programmer tester trainee member owner founder partner senior
junior principal chief professional leader player expert enthusiast achiever communicator individual person candidate
graduate student thinker""")
# Tools and skills CVs write in capitals: no employer's name on their own.
_TOOLS = _lexicon("""python java javascript typescript sql mysql postgresql postgres mongodb excel powerpoint outlook
tableau power bi looker hubspot jira confluence git github gitlab docker kubernetes aws azure gcp linux unix windows
react angular vue node django flask spark hadoop kafka airflow terraform ansible jenkins selenium cypress figma
photoshop illustrator indesign canva quickbooks xero workday bamboohr zendesk epic matlab solidworks autocad tensorflow
pytorch pandas numpy php ruby golang rust swift kotlin html css seo sem ppc crm erp api rest graphql agile scrum kanban
lean sigma itil etl ux ui qa devops""")
# Endings of skills and activities ("Machine Learning", "Stakeholder Management").
_ACTIVITY = re.compile(r"(?:ing|ment|ion|ics|ity|ness|ship|ance|ence|ology|sis)$")
_ORG_NOUNS = _lexicon("corporation foundation association federation organisation organization commission institution "
                      "union coalition")
# Employers known by one word; those that are also products count only outside a tool phrase.
_BRANDS = _lexicon("""infosys wipro accenture deloitte kpmg pwc capgemini cognizant genpact mindtree mphasis hcl tcs
mckinsey barclays hsbc citibank citigroup jpmorgan walmart flipkart unilever nestle pepsico facebook netflix uber
airbnb tesla boeing siemens samsung ericsson nokia vodafone verizon honeywell schlumberger halliburton philips huawei
lenovo paypal ebay twitter spotify novartis pfizer""")
_PRODUCT_BRANDS = _lexicon("google microsoft amazon oracle sap salesforce adobe ibm cisco apple intel dell meta vmware")
# What follows a product brand when the words name the firm ("Microsoft India", "Cisco Systems")
# rather than a product ("Google Analytics", "Amazon Web Services").
_FIRM_AFTER_BRAND = _lexicon("india usa us uk europe emea apac asia america canada australia germany china japan "
                             "singapore ireland africa labs research systems technologies solutions networks "
                             "consulting")
_SCHOOL_ACRONYMS = _lexicon("mit ucla nyu usc ucl lse eth epfl cmu kaist nus ntu iisc insead")
_TOOL_CUE = re.compile(r"(?i)\b(?:using|use|with|in|on|via|through|into|of|and)\s+$")
_SCHOOL_CUE = re.compile(r"(?i)(?:\bgraduated from|\bgraduate of|\bstudied at|\bdegree from|\balumn(?:us|a|i) of)"
                         r"[ \t]+(?:the[ \t]+)?$")
_SCHOOL_CUE_AFTER = re.compile(r"[ \t]+(?i:alumn(?:us|a|i)|graduate)\b")
_EMPLOYER_CUE = re.compile(r"(?i)(?:\bat|\bjoined|\bjoining|\bemployed by|\bworked for|\bworking for|\bwork for"
                           r"|\b(?:company|employer|organi[sz]ation|firm)[ \t]?:)[ \t]+(?:the[ \t]+)?$")
# Where a sentence or bullet begins: its first word is capitalised whatever it is.
_SENTENCE_START = re.compile(r"(?:^|[\n.!?:;|•·▪●*>-])[\s\"'(]*$")
# What separates the parts of a header line ("Engineer | Acme Corp | 2019", "Acme — Engineer");
# in a line that holds a year or a job title, commas too ("Teacher, Oak Hill School, Leeds").
_DELIMITER = re.compile(r"[|•·▪●():]|\s[-–—]\s?|[-–—]\s")
_DELIMITER_OR_COMMA = re.compile(r"[|•·▪●():,;]|\s[-–—]\s?|[-–—]\s")
_TITLES = ("engineer|developer|manager|analyst|consultant|director|officer|assistant|specialist|executive|intern"
           "|architect|administrator|coordinator|designer|scientist|president|supervisor|representative|technician"
           "|teacher|nurse|accountant|programmer|lecturer|professor|tutor|lawyer|paralegal|instructor|producer|editor"
           "|writer|clerk|cashier|associate|principal|head|lead|founder|trainee")
_TITLE_WORD = re.compile(rf"(?i:\b(?:{_TITLES})s?\b)")
_HEADER_HINT = re.compile(rf"(?<!\d)(?:19|20)\d\d(?!\d)|(?i:\b(?:present|current|{_TITLES})s?\b)")
_ACRONYM = re.compile(r"\b[A-Z]{2,6}\b")

Token = tuple[int, int, str]  # (start, end, word)


def _runs(masked: str) -> list[list[Token]]:
    """Runs of capitalised words with connectors inside ("Bank of America"); a comma
    joins a run only to an abbreviated legal suffix ("Children Toys, Inc.")."""
    runs: list[list[Token]] = []
    current: list[Token] = []
    for m in _RUN_TOKEN.finditer(masked):
        word, end = m.group(), m.end()
        if word.endswith(".") and "." not in word[:-1] and len(word) > 2 and _norm_token(word) not in _LEGAL:
            word, end = word[:-1], end - 1  # a full stop, not an abbreviation's dot
        gap = masked[current[-1][1]:m.start()] if current else ""
        joined = gap in (" ", "\u00a0") or (gap == ", " and _norm_token(word) in _COMMA_SUFFIXES)
        if word.lower() in _BREAKERS:
            runs.append(current)
            current = []
        elif word[0].isupper() or word == "&" or (joined and current and _connects(word, current)):
            if current and not joined:
                runs.append(current)
                current = []
            current.append((m.start(), end, word))
        elif current:
            runs.append(current)
            current = []
    runs.append(current)
    return [run for run in map(_trim, runs) if run]


def _connects(word: str, run: list[Token]) -> bool:
    """Whether a lower-case word continues a run: "of", "the", a school's keyword ("Clive
    school of Nursing"); "and" only after an "of" ("Institute of Science and Technology"),
    since it mostly joins lists of skills."""
    if word == "and":
        return any(w.lower() == "of" for _, _, w in run)
    return word in _CONNECTORS or _norm_token(word) in _SCHOOL


def _trim(run: list[Token]) -> list[Token]:
    """The run without connectors at its ends and leading words such as "Led" or "Joined"."""
    while run and run[-1][2].lower() in _CONNECTORS:
        run = run[:-1]
    while run and run[0][2].lower() in _LEAD:
        run = run[1:]
    return run


def _entities(masked: str, text: str, exclude: list[tuple[int, int]]) -> list[_Found]:
    """Employers and schools: the runs (cut around degrees) that look like organisations."""
    found = []
    for run in _runs(masked):
        for part in _split_at(run, exclude):
            kind = _entity_kind(masked, part)
            if kind:
                start, end = part[0][0], part[-1][1]
                tokens = _distinctive([word for _, _, word in part])
                rest = _distinctive([word for _, _, word in part[1:]]) if _SENTENCE_START.search(masked, 0, start) \
                    else ()
                found.append(_Found(Claim(kind, text[start:end], (start, end), " ".join(tokens)), tokens=tokens,
                                    rest=() if all(t in _SUFFIXES for t in rest) else rest))
    return found


def _split_at(run: list[Token], exclude: list[tuple[int, int]]) -> list[list[Token]]:
    """The pieces of a run outside the excluded spans."""
    parts: list[list[Token]] = [[]]
    for token in run:
        if any(_overlap(token[:2], span) for span in exclude):
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in map(_trim, parts) if part]


def _entity_kind(masked: str, run: list[Token]) -> str | None:
    """"school", "employer" or None (no organisation) for a run of capitalised words."""
    words = [_norm_token(word) for _, _, word in run]
    content = [w for w in words if w not in _CONNECTORS]
    if all(w in _LEGAL for w in content):
        return None  # "LLC" on its own names no one
    before = masked[max(0, run[0][0] - 24):run[0][0]]
    if (any(w in _SCHOOL for w in words) or (run[0][2] == "TU" and len(run) > 1) or _SCHOOL_CUE.search(before)
            or _SCHOOL_CUE_AFTER.match(masked, run[-1][1]) or (len(words) == 1 and words[0] in _SCHOOL_ACRONYMS)):
        return "school"
    if len(content) > 1 and any(w in _STRONG for w in content):
        return "employer"
    if content[0] in _PRODUCT_BRANDS and len(content) > 1 and content[1] not in _FIRM_AFTER_BRAND:
        return "employer" if _EMPLOYER_CUE.search(before) else None  # "Google Analytics" is a tool
    if len(content) > 1 and run[-1][2].lower() in _WEAK and not all(w in _GENERIC for w in content):
        return "employer"
    if _is_brand(words, before):
        return "employer"
    if _EMPLOYER_CUE.search(before) and len(content) <= 5 and not all(
            w in _GENERIC or w in _MONTHS or w in _NOT_ORG for w in content):
        return "employer"
    segment = _segment_before(masked, run[0][0], run[-1][1])
    if segment is not None and _looks_like_a_name(content, run[-1][2], after_title=bool(_TITLE_WORD.search(segment))):
        return "employer"
    return None


def _is_brand(words: list[str], before: str) -> bool:
    """A one-word employer: "Infosys" anywhere; "Google" unless it names a tool ("using
    Google", "Google Analytics"), though "Microsoft India" is the firm."""
    if words[0] in _BRANDS:
        return True
    if words[0] not in _PRODUCT_BRANDS:
        return False
    if _EMPLOYER_CUE.search(before):
        return True
    return not _TOOL_CUE.search(before) and (len(words) == 1 or words[1] in _FIRM_AFTER_BRAND)


def _segment_before(masked: str, start: int, end: int) -> str | None:
    """If masked[start:end] is a whole part of its line (parts are split by _DELIMITER),
    the part before it ("" at the line's start); otherwise None."""
    line_start = masked.rfind("\n", 0, start) + 1
    line_end = masked.find("\n", end) % (len(masked) + 1)
    line = masked[line_start:line_end]
    pattern = _DELIMITER_OR_COMMA if _HEADER_HINT.search(line) else _DELIMITER
    cuts = [(m.start() + line_start, m.end() + line_start) for m in pattern.finditer(line)]
    before = [cut for cut in cuts if cut[1] <= start]
    after = [cut for cut in cuts if cut[0] >= end]
    lead = masked[before[-1][1] if before else line_start:start].strip()
    if lead.lower() not in ("", "the") or masked[end:after[0][0] if after else line_end].strip():
        return None
    if not before:
        return ""
    return masked[before[-2][1] if len(before) > 1 else line_start:before[-1][0]]


def _looks_like_a_name(content: list[str], last: str, after_title: bool) -> bool:
    """Whether a header part names an organisation: two words or more, or one right after
    a job title ("Marketing Assistant, FLASHSTARTS"), none of them a section, title or
    skill word, not ending in an activity ("Data Management"), not all generic."""
    if len(content) == 1 and not (after_title and len(content[0]) > 2):
        return False
    return (content[0] not in _PRODUCT_BRANDS and not any(w in _NOT_ORG or w in _MONTHS or w in _TOOLS for w in content)
            and not (_ACTIVITY.search(last.lower()) and content[-1] not in _ORG_NOUNS)
            and not all(w in _GENERIC for w in content))


def _distinctive(words: list[str]) -> tuple[str, ...]:
    """The words an entity is matched by: normalised, without connectors and legal suffixes."""
    tokens = [_norm_token(w) for w in words]
    kept = [t for t in tokens if t not in _CONNECTORS and t not in _LEGAL]
    return tuple(kept or [t for t in tokens if t not in _CONNECTORS])


class _EntityIndex:
    """What an input offers to support entities: its words, short joins of them ("J.P.
    Morgan" -> "jpmorgan"), its acronyms and the initials of its capitalised runs
    ("Tata Consultancy Services Ltd" -> "tcs")."""

    def __init__(self, text: str):
        tokens = [_norm_token(m.group()) for m in _RUN_TOKEN.finditer(text)]
        self.words = set(tokens) | {part for t in tokens if "-" in t for part in t.split("-")}
        self.joined = {"".join(tokens[i:i + n]).replace("-", "") for n in (2, 3, 4) for i in range(len(tokens))}
        self.acronyms = {m.group().lower() for m in _ACRONYM.finditer(text)}
        self.initials = {"".join(t[:1] for t in _distinctive([w for _, _, w in run])) for run in _runs(text)}

    def supports(self, tokens: tuple[str, ...]) -> bool:
        if all(t in self.words for t in tokens):
            return True
        compact = "".join(tokens).replace("-", "")
        if len(compact) >= 4 and (compact in self.words or compact in self.joined):
            return True
        if len(tokens) == 1 and tokens[0] in self.initials:
            return True
        return len(tokens) > 1 and "".join(t[:1] for t in tokens) in self.acronyms


# --- support --------------------------------------------------------------------------

class _Support:
    """What the input (source and job description) supports, each part built when first
    needed: most outputs make claims of only some kinds."""

    def __init__(self, source: str, job_description: str):
        self.source, self.job = source, job_description

    @cached_property
    def _masked(self) -> tuple[str, str]:
        return _mask(self.source), _mask(self.job)

    @cached_property
    def quantities(self) -> list[_Found]:
        """All the input's quantities but the job ad's durations, plus as plain numbers the
        digit runs that are years or no quantity, masked or not ("FY2019", a house
        number, the "63" of "1960-63")."""
        items = []
        for is_job, text, masked in zip((False, True), (self.source, self.job), self._masked):
            parsed = _quantities(masked, text, keep_parts=True)
            covered = [item.claim.span for item in parsed if item.claim.kind != "year"]
            items += [q for q in parsed if not (is_job and q.claim.kind == "duration")]
            items += [_Found(Claim("number", m.group(), m.span(), m.group()), float(m.group()), float(m.group()))
                      for m in _BARE_NUMBER.finditer(text) if not any(s <= m.start() < e for s, e in covered)]
        return items

    @cached_property
    def range_years(self) -> set[int]:
        """Lengths in years of the source's spelled ranges ("2015-2022", "2015 to 2022")."""
        masked = self._masked[0]
        years = [q for q in _quantities(masked, self.source) if q.claim.kind == "year"]
        return {int(b.raw - a.raw) for a, b in pairwise(years)
                if 0 < b.raw - a.raw < 60 and masked[a.claim.span[1]:b.claim.span[0]].strip() in (*_RANGE_JOINS, "/")}

    @cached_property
    def degrees(self) -> list[_Found]:
        return [d for masked in self._masked for d in _degrees(masked, lenient=True)]

    @cached_property
    def entities(self) -> _EntityIndex:
        return _EntityIndex(self.source + "\n" + self.job)

    def holds(self, item: _Found) -> bool:
        kind = item.claim.kind
        if kind == "degree":
            return _degree_supported(item, self.degrees)
        if kind in ("employer", "school"):
            return self.entities.supports(item.tokens) or bool(item.rest) and self.entities.supports(item.rest)
        if kind == "duration" and self._spans_a_range(item):
            return True
        return any(_quantity_supported(item, u) for u in self.quantities)

    def _spans_a_range(self, item: _Found) -> bool:
        if item.unit < _HOURS["month"]:
            return False  # "20 hours" is no length of employment
        years = item.value / _HOURS["year"]
        return any(abs(years - d) <= 1 or (item.bound == "lower" and d >= years) for d in self.range_years)
