"""Fabrication check quality: planted fabrications caught, faithful rewrites let through.

Two sets of cases, all offline:
1. dotin (tests/data/cv-dotin-545, CC0): lines of 310 real CVs that hold gold spans
   (Companies worked at, Degree, College Name, Graduation Year, Years of Experience) or
   numbers are the sources. A faithful rewrite applies one to three fact-keeping
   transformations (reordering clauses, an action-verb opener, dropping filler, changing
   case, a template around the same entities, numbers and degrees restated in equivalent
   forms, legal suffixes dropped, a clause omitted, headings and soft-skill phrases around
   it as models write them). A planted rewrite makes one change
   (a number inflated or added, a percentage or year changed, a duration inflated, an
   employer or college swapped for or added from a *different* CV's gold span, a degree
   upgraded or added), then may get an action-verb opener or lose filler words. A planted
   case counts as caught when a flagged claim overlaps the planted text.
2. synthetic (cvml.tiny.synth): the generator's own targets against their sources and
   job ads (its targets are faithful by construction, so every flag is a false one), and
   the same targets with one fact planted.

The table goes to stderr with examples of misses and false flags; the last stdout line
is one JSON object (top level: the dotin figures; "synthetic" beside them).

    python benchmarks/fabrication_dotin.py [--data tests/data/cv-dotin-545] [--cvs N] [--people 300]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from cvml.safety.fabrication import check_fabrication
from cvml.safety.pii_patterns import find_addresses, find_emails, find_urls
from cvml.safety.pii_phones import find_phones
from cvml.tiny import vocab
from cvml.tiny.synth import generate_records

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "cv-dotin-545"
FACT_LABELS = ("Companies worked at", "Degree", "College Name", "Graduation Year", "Years of Experience")
_TAG = re.compile(r'<label type="([^"]+)">|</label>')
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_FRAGMENT = re.compile(r"\S+(?: \S+)*")
MAX_UNIT, MIN_UNIT = 220, 20


# --- the dotin CVs ---------------------------------------------------------------------

@dataclass
class Unit:
    """One source line: its text and its gold spans as (label, start, end)."""

    cv: str
    text: str
    gold: list[tuple[str, int, int]]

    def spans(self, label: str) -> list[tuple[int, int]]:
        return [(s, e) for lab, s, e in self.gold if lab == label]


def text_of(unit: Unit, s: int, e: int) -> str:
    return " ".join(unit.text[s:e].split())


def _clean(piece: str) -> str:
    """Entities unescaped; the literal "\\xe2\\x80\\xa2" byte escapes some CVs hold decoded."""
    piece = html.unescape(piece)
    return _ESCAPED_BYTES.sub(lambda m: bytes.fromhex(m.group().replace("\\x", "")).decode("utf-8", "replace"), piece)


def load_cvs(folder: Path) -> list[tuple[str, str, list[tuple[str, int, int]]]]:
    """(file stem, plain text, gold spans) per CV, tags removed."""
    cvs = []
    for path in sorted(folder.glob("*.xml"), key=lambda p: int(p.stem)):
        raw = path.read_text(encoding="utf-8")
        raw = raw[raw.index("<cv>") + 4:raw.rindex("</cv>")].strip('\n"')
        text, gold, stack, at = "", [], [], 0
        for m in _TAG.finditer(raw):
            text += _clean(raw[at:m.start()])
            at = m.end()
            if m.group(1):
                stack.append((m.group(1), len(text)))
            elif stack:
                label, start = stack.pop()
                gold.append((label, start, len(text)))
        cvs.append((path.stem, text + _clean(raw[at:]), gold))
    return cvs


def units_of(stem: str, text: str, gold: list[tuple[str, int, int]]) -> list[Unit]:
    """A CV's lines; a long line (PDF text on one line) is cut at gaps of two spaces or
    more and its fragments regrouped, " | "-separated, into lines of up to MAX_UNIT
    characters."""
    units = []
    at = 0
    for line in text.split("\n"):
        pieces = [(at + m.start(), at + m.end()) for m in _FRAGMENT.finditer(line)] \
            if len(line) > MAX_UNIT else [(at, at + len(line))]
        at += len(line) + 1
        group: list[tuple[int, int]] = []
        for piece in pieces + [None]:
            size = sum(e - s + 3 for s, e in group)
            if piece is None or (group and size + piece[1] - piece[0] > MAX_UNIT):
                if group:
                    units.append(_unit(stem, text, gold, group))
                group = []
            if piece is not None:
                group.append(piece)
    return [u for u in units if MIN_UNIT <= len(u.text) <= MAX_UNIT + 80]


def _unit(stem: str, text: str, gold, pieces: list[tuple[int, int]]) -> Unit:
    parts, spans, offset = [], [], 0
    for s, e in pieces:
        lead = len(text[s:e]) - len(text[s:e].lstrip(" •\t-*"))
        s += lead
        for label, gs, ge in gold:
            whole_words = not (text[gs - 1:gs + 1].isalnum() or text[ge - 1:ge + 1].isalnum())
            if s <= gs and ge <= e and label in FACT_LABELS and text[gs:ge].strip() and whole_words:
                spans.append((label, offset + gs - s, offset + ge - s))
        parts.append(text[s:e])
        offset += e - s + 3
    return Unit(stem, " | ".join(parts), spans)


def pick_units(cvs, per_cv: int, seed: int) -> list[Unit]:
    """Up to `per_cv` lines per CV, those with gold facts first, then those with numbers."""
    rng = Random(seed)
    chosen = []
    for stem, text, gold in cvs:
        units = units_of(stem, text, gold)
        with_gold = [u for u in units if u.gold]
        with_digits = [u for u in units if not u.gold and re.search(r"\d", u.text)]
        rng.shuffle(with_gold)
        rng.shuffle(with_digits)
        chosen += (with_gold + with_digits)[:per_cv]
    return chosen


def _gold_pool(cvs, label: str) -> list[tuple[str, str]]:
    """(cv, value) for a label across CVs: values a writer would capitalise, 3-45 chars."""
    pool = []
    for stem, text, gold in cvs:
        for lab, s, e in gold:
            value = " ".join(text[s:e].split()).strip(" ,.;:-")
            if lab == label and 3 <= len(value) <= 45 and any(c.isupper() for c in value) \
                    and not re.search(r"\d|,|company|\bxyz\b|\babc\b", value, re.I):
                pool.append((stem, value))
    places = {" ".join(text[s:e].split()).lower() for _, text, gold in cvs for lab, s, e in gold if lab == "Location"}
    return [(stem, value) for stem, value in pool if value.lower() not in places]


# --- faithful rewrites -------------------------------------------------------------------

FILLERS = ("successfully", "various", "also", "very", "really", "effectively", "actively", "basically",
           "different", "several", "overall", "the", "a")
OPENERS = ("Delivered: ", "Key achievement: ", "Worked on: ", "Highlights: ", "Led work — ", "Contributed: ")
LEGAL = r"(?:,?\s(?:Pvt\.?\s)?(?:Ltd|Limited|Inc|LLC|Corp|Corporation|Co|Pvt)\.?)(?=\W|$)"
DEGREE_FORMS = [  # (abbreviation, long form): both directions are faithful
    ("B.Tech", "Bachelor of Technology"), ("B. Tech", "Bachelor of Technology"), ("BTech", "Bachelor of Technology"),
    ("M.Tech", "Master of Technology"), ("B.E.", "Bachelor of Engineering"), ("B.E", "Bachelor of Engineering"),
    ("BE", "Bachelor of Engineering"), ("M.E.", "Master of Engineering"), ("MBA", "Master of Business Administration"),
    ("B.Sc", "Bachelor of Science"), ("BSc", "Bachelor of Science"), ("B.S.", "Bachelor of Science"),
    ("BS", "Bachelor of Science"), ("M.Sc", "Master of Science"), ("MSc", "Master of Science"),
    ("M.S.", "Master of Science"), ("MS", "Master of Science"), ("B.A.", "Bachelor of Arts"),
    ("BA", "Bachelor of Arts"), ("M.A.", "Master of Arts"), ("MA", "Master of Arts"), ("B.Com", "Bachelor of Commerce"),
    ("M.Com", "Master of Commerce"), ("BBA", "Bachelor of Business Administration"),
    ("MCA", "Master of Computer Applications"), ("BCA", "Bachelor of Computer Applications"),
    ("Ph.D.", "PhD"), ("Ph.D", "Doctor of Philosophy"),
]
_WORD_FOR = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
             11: "eleven", 12: "twelve"}


def _sub_once(pattern: str, repl, text: str, rng: Random) -> str | None:
    """`repl(match)` in place of one random match of `pattern`; None when nothing matches."""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    m = rng.choice(matches)
    return text[:m.start()] + repl(m) + text[m.end():]


def reorder(rng: Random, unit: Unit, text: str) -> str | None:
    """The line's clauses shuffled, comma-joined (a legal suffix stays with its name)."""
    parts = [p for p in re.split(r"\s\|\s|,\s(?!(?:Inc|LLC|L\.L\.C|Ltd|Co|Corp)\b)|\s[-–]\s|;\s", text, flags=re.I)
             if p.strip()]
    if len(parts) < 2:
        return None
    rng.shuffle(parts)
    out = ", ".join(parts)
    return out if out != text else None


def action_opener(rng: Random, unit: Unit, text: str) -> str | None:
    """An opener such as "Delivered: " before the line."""
    return rng.choice(OPENERS) + text


def drop_filler(rng: Random, unit: Unit, text: str) -> str | None:
    """Filler words dropped, or else a short remark in brackets."""
    out = re.sub(rf"(?<![\w.])(?:{'|'.join(FILLERS)})\b(?![.\w])\s?", "", text)
    out = re.sub(r" ?\([^()]{0,40}\) ?", " ", out).strip() if out == text else out  # or a remark in brackets
    return out if out != text and out.strip() else None


def change_case(rng: Random, unit: Unit, text: str) -> str | None:
    """All capitals, capitalised words in title case, or the first letter in lower case."""
    kind = rng.choice(("upper", "title_caps", "lower_first"))
    if kind == "upper":
        return text.upper()
    if kind == "title_caps" and re.search(r"\b[A-Z]{3,}\b", text):
        return re.sub(r"\b[A-Z]{3,}\b", lambda m: m.group().title(), text)
    return text[:1].lower() + text[1:] if text[:1].isupper() else None


def template(rng: Random, unit: Unit, text: str) -> str | None:
    """A new sentence around the line's own gold entities."""
    get = {label: [text_of(unit, s, e) for s, e in unit.spans(label)] for label in FACT_LABELS}
    company, degree, college = (get[k][0] if get[k] else None for k in FACT_LABELS[:3])
    year = get["Graduation Year"][0] if get["Graduation Year"] else None
    tenure = get["Years of Experience"][0] if get["Years of Experience"] else None
    if degree and college:
        return f"Earned a {degree} from {college}" + (f" ({year})" if year else "")
    if company:
        return rng.choice((f"Worked at {company}", f"Experience with {company}", f"Contributed at {company}")) + \
            (f", {tenure}" if tenure else "")
    if degree:
        return f"Holds a {degree}" + (f", {year}" if year else "")
    if college:
        return f"Studied at {college}" + (f" until {year}" if year else "")
    if tenure:
        return f"Experience: {tenure}"
    return None


def restate_number(rng: Random, unit: Unit, text: str) -> str | None:
    """One number in an equivalent form."""
    forms = [
        (r"(\d+(?:\.\d+)?)\s?%", lambda m: f"{m.group(1)} percent"),
        (r"(\d+(?:\.\d+)?) per ?cent", lambda m: f"{m.group(1)}%"),
        (r"\b(\d+)\.(\d)\s?%", lambda m: f"~{round(float(m.group(1) + '.' + m.group(2)))}%"),
        (r"(?<![\d.])([2-9]|1[0-2])\+?\s(years?|months)", lambda m: f"{_WORD_FOR[int(m.group(1))]} {m.group(2)}"),
        (r"(?<![\d.])(\d+)\s(years?)", lambda m: f"{m.group(1)} yrs"),
        (r"(?<![\d.])(\d+)\+\s?(years?)", lambda m: f"more than {m.group(1)} {m.group(2)}"),
        (r"\b(\d+)\.(\d)\s?(years?)", lambda m: f"over {m.group(1)} {m.group(3)}"),
        (r"\b((?:19|20)\d\d)\s?[-–]\s?((?:19|20)\d\d)\b", lambda m: f"{m.group(1)} to {m.group(2)}"),
        (r"\b((?:19|20)\d\d)\s+to\s+((?:19|20)\d\d)\b", lambda m: f"{m.group(1)}–{m.group(2)}"),
        (r"\$(\d{1,3}),(\d{3}),(\d{3})\b", lambda m: f"${int(m.group(1)) + int(m.group(2)) / 1000:.1f}M"),
        (r"\$(\d+)M\b", lambda m: f"${m.group(1)} million"),
        (r"\$(\d+)K\b", lambda m: f"${m.group(1)},000"),
        (r"\b(\d+)\s(months)\b", lambda m: f"{m.group(1)} mos"),
    ]
    rng.shuffle(forms)
    for pattern, repl in forms:
        out = _sub_once(pattern, repl, text, rng)
        if out is not None and out != text:
            return out
    return None


def degree_form(rng: Random, unit: Unit, text: str) -> str | None:
    """A gold degree of the line in its other form ("B.Tech" <-> "Bachelor of Technology")."""
    pairs = DEGREE_FORMS[:]
    rng.shuffle(pairs)
    for degree in (text_of(unit, s, e) for s, e in unit.spans("Degree")):
        for short, long in pairs:
            pattern = rf"(?<![\w.-]){re.escape(short)}(?![\w-])"
            new = re.sub(pattern, long, degree, count=1) if re.search(pattern, degree) else degree.replace(long, short)
            if new != degree and degree in text:
                return text.replace(degree, new, 1)
    return None


def legal_suffix(rng: Random, unit: Unit, text: str) -> str | None:
    """Legal suffixes dropped, or else one added to the line's gold company."""
    out = re.sub(LEGAL, "", text)
    if out != text:
        return out
    spans = unit.spans("Companies worked at")
    if spans:
        name = text_of(unit, *spans[0])
        pattern = rf"{re.escape(name)}(?!\w)"
        suffix = rng.choice((" Inc.", " Ltd", ", LLC"))
        return re.sub(pattern, lambda m: m.group() + suffix, text, count=1) if re.search(pattern, text) else None
    return None


# What models wrap a rewrite in: headings, soft skills, capitalised phrases that state no fact.
BOILERPLATE = ("PROFESSIONAL EXPERIENCE\n{text}", "Key Achievements:\n- {text}",
               "{text}\nCore Competencies: Strategic Planning, Stakeholder Management, Team Leadership",
               "Results-Driven Professional | {text}",
               "{text} — demonstrating Strong Communication and Problem Solving",
               "Summary: Detail-oriented Team Player. {text}", "{text}\nSkills: Project Management | Data Analysis",
               "Career Highlights\n• {text}")


def boilerplate(rng: Random, unit: Unit, text: str) -> str | None:
    """The line inside headings and soft-skill phrases, as models write them."""
    return rng.choice(BOILERPLATE).format(text=text)


def omit_clause(rng: Random, unit: Unit, text: str) -> str | None:
    """The last clause left out: omitting a fact invents none."""
    parts = re.split(r"(?<=[,;|])\s", text)
    return " ".join(parts[:-1]).rstrip(",;| ") if len(parts) > 2 else None


FAITHFUL = {f.__name__: f for f in (reorder, action_opener, drop_filler, change_case, template, restate_number,
                                     degree_form, legal_suffix, omit_clause, boilerplate)}
# Transformations after a plant: they must leave the planted words as they are.
AFTER_PLANT = (action_opener, drop_filler)


def faithful_case(rng: Random, unit: Unit) -> tuple[str, list[str]] | None:
    """The line after one to three transformations, and their names."""
    text, done, wanted = unit.text, [], rng.choice((1, 2, 3))
    names = list(FAITHFUL)
    rng.shuffle(names)
    for name in names:
        if len(done) == wanted:
            break
        if name == "template" and done:
            continue  # it writes a new line from the gold spans: it would undo what came before
        out = FAITHFUL[name](rng, unit, text)
        if out and out != text:
            text, done = out, done + [name]
    return (text, done) if done else None


# --- planted fabrications ----------------------------------------------------------------
# Each plant_* takes (rng, unit, pools) and returns one planted rewrite of the line, or None
# when the line has nothing of its kind (no number to inflate, no degree to upgrade).

_NUMBER = r"(?<![\w.,/()+-])(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w/.)-])"
_YEAR = r"(?<!\d)(?:19[6-9]\d|20[0-2]\d)(?!\d)"


@dataclass
class Plant:
    """A planted rewrite: its kind and its text, the planted words between markers."""

    kind: str
    marked: str

    @property
    def text(self) -> str:
        return self.marked.replace(_OPEN, "").replace(_CLOSE, "")

    @property
    def span(self) -> tuple[int, int]:
        start = self.marked.index(_OPEN)
        return start, self.marked.index(_CLOSE) - 1

    @property
    def planted(self) -> str:
        return self.text[slice(*self.span)]


_OPEN, _CLOSE = "\x02", "\x03"


def _mark(words: str) -> str:
    return f"{_OPEN}{words}{_CLOSE}"


def _replace_span(text: str, s: int, e: int, new: str) -> str:
    return text[:s] + new + text[e:]


def _numbers_in(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", text)}


def _bigger(rng: Random, value: float, taken: set[float]) -> str:
    for _ in range(20):
        new = value * rng.uniform(1.4, 3.0) if value >= 5 else value + rng.randint(2, 6)
        new = round(new, 1) if new != int(new) and value != int(value) else round(new)
        if new not in taken:
            return f"{new:,}" if new >= 10000 else f"{new:g}"
    return f"{value + 17:g}"


def _contact_spans(text: str) -> list[tuple[int, int]]:
    """Phones, addresses, emails and links: their digits are no achievement to inflate."""
    return [*find_phones(text), *find_addresses(text), *find_emails(text), *find_urls(text)]


def plant_number_inflated(rng, unit, pools) -> Plant | None:
    contact = _contact_spans(unit.text)
    candidates = [m for m in re.finditer(_NUMBER, unit.text)
                  if not re.fullmatch(_YEAR, m.group()) and not any(s <= m.start() < e for s, e in contact)
                  and not re.match(r"\s?(?:%|percent|years?|yrs|months)", unit.text[m.end():m.end() + 8])]
    if not candidates:
        return None
    m = rng.choice(candidates)
    new = _bigger(rng, float(m.group().replace(",", "")), _numbers_in(unit.text))
    return Plant("number_inflated", _replace_span(unit.text, *m.span(), _mark(new)))


def plant_percent_changed(rng, unit, pools) -> Plant | None:
    candidates = list(re.finditer(r"(\d+(?:\.\d+)?)(?=\s?(?:%|percent))", unit.text))
    if not candidates:
        return None
    m = rng.choice(candidates)
    value = float(m.group(1))
    new = _bigger(rng, value, _numbers_in(unit.text)) if rng.random() < 0.7 or value < 10 else \
        f"{max(1, round(value * rng.uniform(0.3, 0.7))):g}"
    return Plant("percent_changed", _replace_span(unit.text, *m.span(1), _mark(new)))


def plant_year_changed(rng, unit, pools) -> Plant | None:
    candidates = list(re.finditer(_YEAR, unit.text))
    if not candidates:
        return None
    m = rng.choice(candidates)
    taken = {int(y) for y in re.findall(_YEAR, unit.text)}
    new = next(y for y in (int(m.group()) + rng.choice((-1, 1)) * rng.randint(1, 4) for _ in range(50))
               if y not in taken and y not in (int(m.group()),))
    return Plant("year_changed", _replace_span(unit.text, *m.span(), _mark(str(new))))


def plant_duration_inflated(rng, unit, pools) -> Plant | None:
    candidates = list(re.finditer(r"(\d+(?:\.\d+)?)(?=\+?\s?(?:years?|yrs|months))", unit.text))
    if not candidates:
        return None
    m = rng.choice(candidates)
    value = float(m.group(1))
    new = f"{value + rng.randint(2, 6):g}" if value < 10 else f"{round(value * rng.uniform(1.4, 2)):g}"
    return Plant("duration_inflated", _replace_span(unit.text, *m.span(1), _mark(new)))


def plant_number_added(rng, unit, pools) -> Plant | None:
    taken = _numbers_in(unit.text)
    n = next(v for v in (rng.randint(3, 95) for _ in range(50)) if v not in taken)
    phrase, planted = rng.choice([
        (f", improving efficiency by {n}%", f"{n}%"), (f", serving {n} clients", f"{n}"),
        (f" across {n} projects", f"{n}"), (f", saving ${n}K a year", f"${n}K"),
        (f" with a team of {n}", f"{n}"), (f" over {n} months", f"{n} months"),
    ])
    return Plant("number_added", unit.text.rstrip(" .") + phrase.replace(planted, _mark(planted), 1))


def _other(rng: Random, pool: list[tuple[str, str]], unit: Unit) -> str | None:
    """A value from another CV's gold spans that shares no word with the line."""
    line_words = set(re.findall(r"[a-z]{3,}", unit.text.lower()))
    for _ in range(50):
        stem, value = rng.choice(pool)
        if stem != unit.cv and not set(re.findall(r"[a-z]{3,}", value.lower())) & line_words:
            return value
    return None


def plant_employer_swapped(rng, unit, pools) -> Plant | None:
    spans = unit.spans("Companies worked at")
    new = _other(rng, pools["Companies worked at"], unit)
    if not spans or not new:
        return None
    return Plant("employer_swapped", _replace_span(unit.text, *rng.choice(spans), _mark(new)))


def plant_employer_added(rng, unit, pools) -> Plant | None:
    new = _other(rng, pools["Companies worked at"], unit)
    if not new:
        return None
    form = rng.choice(("{text} at {x}", "{text} while at {x}", "{x} | {text}", "Joined {x}; {text}",
                       "{text}, working for {x}"))
    return Plant("employer_added", form.format(text=unit.text.rstrip(" ."), x=_mark(new)))


UPGRADES = [(r"\bB\.?\s?Tech\b", "M.Tech"), (r"\bB\.?\s?E\b\.?", "M.E."), (r"\bB\.?\s?Sc\b\.?", "M.Sc."),
            (r"\bBS\b", "MS"), (r"\bB\.S\.", "M.S."), (r"\bBA\b", "MA"), (r"\bB\.A\.", "M.A."),
            (r"\bB\.?\s?Com\b", "M.Com"), (r"\bBBA\b", "MBA"), (r"\bBCA\b", "MCA"),
            (r"(?i)\bbachelor(?:'s|s)?\b", "Master's"), (r"(?i)\bmaster(?:'s|s)?\b(?:\s(?:of|in)\s\w+)?", "PhD"),
            (r"\bMBA\b", "PhD"), (r"\bM\.?\s?Tech\b", "PhD"), (r"\bM\.?\s?Sc\b\.?", "PhD"), (r"\bMS\b", "PhD"),
            (r"(?i)\bdiploma\b", "Bachelor's degree"), (r"(?i)\bassociate\b", "Bachelor's")]


# A degree of the level an upgrade reaches, already in the line: then the upgrade invents nothing.
LEVEL_IN_TEXT = {"master": r"(?i)\bmaster|\bM\.?\s?(?:Sc|S|A|Tech|E|Com|CA|Ed|Phil)\b|\bMBA\b",
                 "doctor": r"(?i)\bph\.?\s?d|\bdoctor|\bEd\.?\s?D\b",
                 "bachelor": r"(?i)\bbachelor|\bB\.?\s?(?:Sc|S|A|Tech|E|Com|CA|BA|Ed)\b"}


def _level_of(degree: str) -> str:
    return "doctor" if re.match(r"(?i)ph|doctor", degree) else "master" if re.match(r"(?i)m", degree) else "bachelor"


def plant_degree_upgraded(rng, unit, pools) -> Plant | None:
    spans = unit.spans("Degree")
    if not spans:
        return None
    s, e = rng.choice(spans)
    degree = unit.text[s:e]
    m, better = next(((m, b) for pattern, b in UPGRADES if (m := re.search(pattern, degree))), (None, ""))
    if m:
        text = _replace_span(unit.text, s + m.start(), s + m.end(), _mark(better))
    else:
        better = rng.choice(("Master's degree in", "MSc in", "PhD in"))
        text = _replace_span(unit.text, s, e, f"{_mark(better)} {degree}")
    if re.search(LEVEL_IN_TEXT[_level_of(better)], unit.text):
        return None
    return Plant("degree_upgraded", text)


def plant_degree_added(rng, unit, pools) -> Plant | None:
    if unit.spans("Degree") or re.search(r"(?i)\b(?:mba|phd|master|bachelor)", unit.text):
        return None
    degree = rng.choice(("MBA", "PhD", "Master of Science", "B.Tech", "MSc in Computer Science", "Bachelor's degree"))
    form = rng.choice(("{text}; holds an {x}", "{x} | {text}", "{text} ({x})"))
    return Plant("degree_added", form.format(text=unit.text.rstrip(" ."), x=_mark(degree)))


def plant_college_swapped(rng, unit, pools) -> Plant | None:
    spans = unit.spans("College Name")
    new = _other(rng, pools["College Name"], unit)
    if not spans or not new:
        return None
    return Plant("college_swapped", _replace_span(unit.text, *rng.choice(spans), _mark(new)))


def plant_college_added(rng, unit, pools) -> Plant | None:
    new = _other(rng, pools["College Name"], unit)
    if not new:
        return None
    form = rng.choice(("{text}; graduated from {x}", "{text}; studied at {x}", "{text}, {x} alumnus", "{text} ({x})"))
    return Plant("college_added", form.format(text=unit.text.rstrip(" ."), x=_mark(new)))


def plant_year_added(rng, unit, pools) -> Plant | None:
    taken = {int(y) for y in re.findall(_YEAR, unit.text)}
    year = next(y for y in (rng.randint(1995, 2023) for _ in range(50)) if y not in taken)
    form = rng.choice(("{text} ({x})", "{text}, since {x}", "{x}: {text}"))
    return Plant("year_added", form.format(text=unit.text.rstrip(" ."), x=_mark(str(year))))


PLANTS = [plant_number_inflated, plant_percent_changed, plant_year_changed, plant_duration_inflated,
          plant_number_added, plant_employer_swapped, plant_employer_added, plant_degree_upgraded,
          plant_degree_added, plant_college_swapped, plant_college_added, plant_year_added]


def planted_cases(rng: Random, unit: Unit, pools) -> list[Plant]:
    """Every plant that applies to the line, each followed half the time by a transformation
    that leaves the planted words alone."""
    cases = []
    for plant in PLANTS:
        case = plant(rng, unit, pools)
        if case is None:
            continue
        if rng.random() < 0.5:
            after = rng.choice(AFTER_PLANT)(rng, unit, case.marked)
            if after and _OPEN in after and _CLOSE in after:
                case.marked = after
        cases.append(case)
    return cases


# --- scoring -------------------------------------------------------------------------------

def caught(case: Plant, source: str, job: str | None = None) -> bool:
    """Whether a flagged claim overlaps the planted words."""
    start, end = case.span
    return any(c.span[0] < end and start < c.span[1] for c in check_fabrication(case.text, source, job).claims)


@dataclass
class Tally:
    planted: Counter = field(default_factory=Counter)
    caught: Counter = field(default_factory=Counter)
    faithful: Counter = field(default_factory=Counter)
    false_flags: Counter = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)
    false_examples: list[str] = field(default_factory=list)

    def planted_case(self, kind: str, ok: bool, example: str) -> None:
        self.planted[kind] += 1
        self.caught[kind] += ok
        if not ok:
            self.misses.append(f"[{kind}] {example}")

    def faithful_case(self, names: list[str], flagged: bool, example: str) -> None:
        self.faithful["all"] += 1
        self.false_flags["all"] += flagged
        for name in names:
            self.faithful[name] += 1
            self.false_flags[name] += flagged
        if flagged:
            self.false_examples.append(f"[{'+'.join(names)}] {example}")

    def summary(self) -> dict:
        n_planted = sum(self.planted.values())
        return {
            "planted_recall": _ratio(sum(self.caught.values()), n_planted),
            "faithful_false_flag_rate": _ratio(self.false_flags["all"], self.faithful["all"]),
            "n_planted": n_planted, "n_faithful": self.faithful["all"],
            "per_kind_recall": {k: _ratio(self.caught[k], n) for k, n in sorted(self.planted.items())},
            "per_kind_n": dict(sorted(self.planted.items())),
            "per_transform_false_flag_rate": {k: _ratio(self.false_flags[k], n)
                                              for k, n in sorted(self.faithful.items()) if k != "all"},
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _flag_text(output: str, source: str, job: str | None = None) -> tuple[bool, str]:
    result = check_fabrication(output, source, job)
    return result.flagged, ", ".join(f"{c.kind}:{c.text!r}" for c in result.claims)


def score_dotin(cvs, per_cv: int = 6, seed: int = 0) -> Tally:
    rng = Random(seed)
    pools = {label: _gold_pool(cvs, label) for label in ("Companies worked at", "College Name")}
    tally = Tally()
    for unit in pick_units(cvs, per_cv, seed):
        made = faithful_case(rng, unit)
        if made:
            text, names = made
            flagged, why = _flag_text(text, unit.text)
            tally.faithful_case(names, flagged, f"{why}\n      source: {unit.text!r}\n      output: {text!r}")
        for case in planted_cases(rng, unit, pools):
            ok = caught(case, unit.text)
            tally.planted_case(case.kind, ok,
                               f"{case.planted!r}\n      source: {unit.text!r}\n      output: {case.text!r}")
    return tally


# --- synthetic records ---------------------------------------------------------------------

def synthetic_plants(rng: Random, row: dict) -> list[Plant]:
    """One-fact changes to a generator target that its source does not support."""
    target, source = row["target"], row["source_text"] + " " + (row.get("job_description") or "")
    plants = []
    numbers = [m for m in re.finditer(r"(?<![\w$])\$?\d+(?:,\d{3})*(?![\w])", target)
               if not re.fullmatch(_YEAR, m.group())]
    if numbers:
        m = rng.choice(numbers)
        value = float(m.group().lstrip("$").replace(",", ""))
        new = ("$" if m.group().startswith("$") else "") + _bigger(rng, value, _numbers_in(source))
        plants.append(Plant("number_inflated", _replace_span(target, *m.span(), _mark(new))))
    years = list(re.finditer(_YEAR, target))
    if years:
        m = rng.choice(years)
        new = str(int(m.group()) - rng.randint(1, 4))
        if new not in source:
            plants.append(Plant("year_changed", _replace_span(target, *m.span(), _mark(new))))
    companies = [c for c in vocab.COMPANIES if c in target]
    other = rng.choice([c for c in vocab.COMPANIES if c not in source])
    if companies:
        plants.append(Plant("employer_swapped", target.replace(companies[0], _mark(other), 1)))
    else:
        plants.append(Plant("employer_added", target.rstrip(".") + f" at {_mark(other)}"))
    school = rng.choice([s for s in vocab.SCHOOLS if s not in source])
    plants.append(Plant("college_added", target.rstrip(".") + f". Graduate of {_mark(school)}."))
    degree = rng.choice([d for d in vocab.DEGREES if d.split()[0] not in source])
    plants.append(Plant("degree_added", target.rstrip(".") + f". Holds a {_mark(degree)}."))
    return plants


def score_synthetic(rows: list[dict], seed: int = 0) -> tuple[Tally, dict]:
    rng = Random(seed)
    tally = Tally()
    usable = [r for r in rows if isinstance(r.get("target"), str) and isinstance(r.get("source_text"), str)
              and r["source_text"].strip()
              and not any(t.startswith("malformed") or t in ("quality:fabricated", "quality:harmful")
                          for t in r["meta"]["planted"])]
    for row in usable:
        flagged, why = _flag_text(row["target"], row["source_text"], row.get("job_description"))
        tally.faithful_case([row["task"]], flagged, f"{why}\n      source: {row['source_text']!r}\n"
                                                     f"      target: {row['target']!r}")
        for case in synthetic_plants(rng, row):
            ok = caught(case, row["source_text"], row.get("job_description"))
            tally.planted_case(case.kind, ok, f"{case.planted!r}\n      output: {case.text!r}")
    return tally, {"n_targets": len(usable), "targets_flagged": tally.false_flags["all"]}


# --- main ------------------------------------------------------------------------------------

def run(data: Path, n_cvs: int | None = None, per_cv: int = 6, people: int = 300, seed: int = 0) -> tuple[dict, dict]:
    """The JSON summary, and the tallies (for examples) by set."""
    cvs = load_cvs(data)[:n_cvs]
    started = time.perf_counter()
    dotin = score_dotin(cvs, per_cv, seed)
    synthetic, targets = score_synthetic(generate_records(people, seed=seed), seed)
    checks = sum(dotin.planted.values()) + dotin.faithful["all"] + sum(synthetic.planted.values()) \
        + synthetic.faithful["all"]
    seconds = time.perf_counter() - started
    result = {**dotin.summary(), "n_cvs": len(cvs),
              "synthetic": {**synthetic.summary(), "generator_targets": targets},
              "checks_per_s": round(checks / seconds)}
    return result, {"dotin": dotin, "synthetic": synthetic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cvs", type=int, default=None, help="Use the first N CVs only.")
    parser.add_argument("--per-cv", type=int, default=6, help="Source lines per CV.")
    parser.add_argument("--people", type=int, default=300, help="Synthetic people (about 4.8 rows each).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=10, help="Misses and false flags to print per set.")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the dotin CVs live in tests/data/cv-dotin-545 of the repository")
    result, tallies = run(args.data, args.cvs, args.per_cv, args.people, args.seed)
    log = lambda msg="": print(msg, file=sys.stderr)  # noqa: E731
    for name, summary in (("dotin", result), ("synthetic", result["synthetic"])):
        _log(log, name, summary, tallies[name], args.show)
    log(f"\ngenerator targets flagged: {result['synthetic']['generator_targets']['targets_flagged']} of "
        f"{result['synthetic']['generator_targets']['n_targets']}; {result['checks_per_s']:,} checks/s")
    print(json.dumps(result))


def _log(log, name: str, summary: dict, tally: Tally, show: int) -> None:
    log(f"\n{name}: planted recall {summary['planted_recall']:.3f} of {summary['n_planted']}, "
        f"faithful false-flag rate {summary['faithful_false_flag_rate']:.3f} of {summary['n_faithful']}")
    log(f"  {'planted kind':<20}{'n':>6}{'recall':>8}")
    for kind, recall in summary["per_kind_recall"].items():
        log(f"  {kind:<20}{summary['per_kind_n'][kind]:>6}{recall:>8.3f}")
    log(f"  {'faithful transform':<20}{'n':>6}{'flagged':>8}")
    for kind, rate in summary["per_transform_false_flag_rate"].items():
        log(f"  {kind:<20}{tally.faithful[kind]:>6}{rate:>8.3f}")
    for line in tally.misses[:show]:
        log(f"  missed {line}")
    for line in tally.false_examples[:show]:
        log(f"  false flag {line}")


if __name__ == "__main__":
    main()
