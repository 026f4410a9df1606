"""Seeded synthetic CV data: the embedded default's training pairs and pre-training text.

Nothing can be downloaded on the machines cvml targets, so cvml writes its own data.
Each synthetic person holds a few facts (achievements with numbers and tools); a source
states them loosely and its target crisply, so a target never holds a number, employer or
school that its source lacks — the fabrication checker is measured against these targets.
Planted problems (PII, duplicates, malformed rows, degenerate targets) are tagged in
meta["planted"], so curation can be scored against ground truth.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any, Callable

from cvml.tiny import vocab

TASK_WEIGHTS = {"rewrite_bullet": 60, "tailor_section": 25, "summary": 15}
# Shares of the generated rows that get each kind of planted problem.
PLANT_RATES = {"pii": 0.10, "malformed": 0.03, "dup:exact": 0.03, "dup:near": 0.03,
               "quality:identical": 0.01, "quality:trivial": 0.01, "quality:fabricated": 0.01,
               "quality:harmful": 0.01}
PII_KINDS = ("name", "email", "phone", "url", "address", "dob")
MALFORMED_KINDS = ("missing_target", "empty_source", "unknown_task", "target_not_string",
                   "tailor_without_jd", "missing_id")
# One-word edits that make a near duplicate without touching any fact.
_WORD_SWAPS = (("about", "around"), ("roughly", "approximately"), ("using", "with"), ("with", "using"),
               ("Helped", "Assisted"), ("years", "yrs"), ("team", "group"))


@dataclass(frozen=True)
class Skill:
    term: str  # how job ads name it
    alias: str  # how CVs name it


@dataclass(frozen=True)
class Fact:
    """One achievement; every rendering states the same number and tool."""

    verb: str
    obj: str
    metric: str | None
    n: str
    skill: Skill
    prep: str

    def strong(self, tool: bool = True, jd_wording: bool = False) -> str:
        """The crisp CV bullet: action verb, object, result, tool."""
        name = self.skill.term if jd_wording else self.skill.alias
        template = vocab.METRICS.get(self.metric, ("{core}{tool}", []))[0]
        return template.format(core=f"{self.verb} {self.obj}", tool=f" {self.prep} {name}" if tool else "", n=self.n)

    def weak(self, rng: Random, tool: bool = True) -> str:
        """The same fact as people first write it: vague opener, loose numbers."""
        opener = rng.choice(vocab.WEAK_OPENERS)
        if rng.random() < 0.3:
            opener = _lower_first(opener)
        text = f"{opener} {self.obj}"
        if tool:
            text += f" {self.prep} {self.skill.alias}"
        loose = vocab.METRICS.get(self.metric, ("", []))[1]
        if loose:
            text += rng.choice((", ", " - ", "; ")) + rng.choice(loose).format(n=self.n)
        else:
            text += " " + rng.choice(vocab.FILLERS)
        return text + rng.choice(("", "."))


@dataclass
class Person:
    """One synthetic person: a role, an employer, and the facts all of their rows draw on."""

    group: str
    role: dict
    first: str
    last: str
    company: str
    years: int
    tenure: str
    school: str
    degree: str
    skills: list[Skill]
    facts: list[Fact]


def generate_records(n_people: int = 400, seed: int = 0) -> list[dict]:
    """Raw rows in the record schema, planted problems included, ids in file order."""
    rng = Random(seed)
    people = [_make_person(rng, i) for i in range(n_people)]
    owned = [(row, person) for person in people for row in _person_rows(rng, person)]
    rows = [row for row, _ in owned]
    _plant_in_place(rng, owned)
    copies = _duplicates(rng, rows)
    for dup, _ in copies:
        rows.insert(rng.randint(0, len(rows)), dup)
    _assign_ids(rows, copies)
    return rows


def write_synthetic_dataset(out_dir: str | Path, n_people: int = 400, seed: int = 0) -> dict:
    """Write `out_dir/cv-raw.jsonl` (malformed rows as they are) and summarise it."""
    rows = generate_records(n_people, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cv-raw.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {
        "path": str(path),
        "rows": len(rows),
        "people": len({row["group"] for row in rows}),
        "by_task": dict(sorted(Counter(str(row.get("task")) for row in rows).items())),
        "planted": dict(sorted(Counter(tag for row in rows for tag in row["meta"]["planted"]).items())),
    }


def pretraining_corpus(n_docs: int = 3000, seed: int = 1) -> list[str]:
    """CV-domain text (CV sections, job ads, profiles, cover letters, tips) without PII,
    for training the tiny tokenizer and base model; drawn independently of the records."""
    rng = Random(seed)
    return [_document(rng) for _ in range(n_docs)]


# --- people and facts -------------------------------------------------------------------

def _skills(role: dict) -> list[Skill]:
    return [Skill(term, alias or term) for term, _, alias in (s.partition("|") for s in role["skills"])]


def _facts(rng: Random, role: dict) -> list[Fact]:
    """One fact per role task, in random order, each with its own number and a fitting tool."""
    by_term = {skill.term: skill for skill in _skills(role)}
    facts = []
    for verbs, obj, metric, tools in rng.sample(role["tasks"], len(role["tasks"])):
        n = _number(rng, metric) if metric else ""
        prep = rng.choice(vocab.PREPOSITIONS.get(verbs, vocab.DEFAULT_PREPOSITIONS))
        facts.append(Fact(rng.choice(verbs), obj.format(n=n), metric, n, by_term[rng.choice(tools)], prep))
    return facts


def _number(rng: Random, metric: str) -> str:
    low, high, step = vocab.METRIC_RANGES[metric]
    value = rng.randrange(low, high + 1, step)
    return f"${value:,}" if metric in ("saving", "revenue") else str(value)


def _make_person(rng: Random, index: int) -> Person:
    role = rng.choice(vocab.ROLES)
    facts = _facts(rng, role)
    years = rng.randint(2, 15)
    end = rng.choice((2022, 2023, 2024, None))
    start = (end or 2025) - rng.randint(1, years)
    return Person(
        group=f"p{index:05d}", role=role, first=rng.choice(vocab.FIRST_NAMES), last=rng.choice(vocab.LAST_NAMES),
        company=rng.choice(vocab.COMPANIES), years=years,
        tenure=f"{start}–{end or 'Present'}", school=rng.choice(vocab.SCHOOLS), degree=rng.choice(vocab.DEGREES),
        skills=list(dict.fromkeys(fact.skill for fact in facts)), facts=facts,
    )


# --- the three tasks ----------------------------------------------------------------------

def _person_rows(rng: Random, person: Person) -> list[dict]:
    """3-6 rows; rewrite rows take distinct facts (a role has six tasks)."""
    tasks = rng.choices(list(TASK_WEIGHTS), weights=list(TASK_WEIGHTS.values()), k=rng.randint(3, 6))
    unused = iter(person.facts)
    rows = []
    for task in tasks:
        if task == "rewrite_bullet":
            fact, tool = next(unused), rng.random() < 0.8
            rows.append(_row(task, fact.weak(rng, tool), fact.strong(tool), person))
        elif task == "tailor_section":
            rows.append(_tailor_row(rng, person))
        else:
            rows.append(_summary_row(rng, person))
    return rows


def _row(task: str, source: str, target: str, person: Person, job: str | None = None, **meta: Any) -> dict:
    return {"id": None, "task": task, "source_text": source, "job_description": job, "target": target,
            "group": person.group, "meta": {"planted": [], "role": person.role["title"], **meta}}


def _tailor_row(rng: Random, person: Person) -> dict:
    """A section and a job ad; the target leads with the ad's keywords the section
    already shows, in the ad's wording, and never claims the ones it lacks."""
    facts = rng.sample(person.facts, rng.randint(2, 4))
    shown = list(dict.fromkeys(fact.skill for fact in facts))
    matched = rng.sample(shown, rng.randint(1, min(3, len(shown))))
    missing = rng.sample([s for s in _skills(person.role) if s not in shown], rng.randint(1, 2))
    keywords = matched + missing
    rng.shuffle(keywords)
    header = f"{person.role['title']} | {person.company} | {person.tenure}"
    source = "\n".join([header] + [f"- {fact.strong()}" for fact in facts])
    ordered = sorted(facts, key=lambda fact: fact.skill not in matched)
    target = "\n".join(
        [header, "Key skills: " + ", ".join(k.term for k in keywords if k in matched)]
        + [f"- {fact.strong(jd_wording=fact.skill in matched)}" for fact in ordered]
    )
    employer = rng.choice([c for c in vocab.COMPANIES if c != person.company])
    job = _job_ad(rng, person.role, keywords, employer)
    return _row("tailor_section", source, target, person, job,
                jd_keywords=[k.term for k in matched], missing_keywords=[k.term for k in missing])


def _job_ad(rng: Random, role: dict, keywords: list[Skill], employer: str) -> str:
    must, nice = (keywords[:-1], keywords[-1:]) if len(keywords) > 2 else (keywords, [])
    parts = [f"{employer} is hiring: {role['title']} ({rng.choice(vocab.CITIES)}, "
             f"{rng.choice(('hybrid', 'remote', 'on-site'))}).",
             f"You will {rng.choice(role['duties'])}.",
             "Must have: " + ", ".join(k.term for k in must) + "."]
    if nice:
        parts.append(f"Nice to have: {nice[0].term}.")
    parts.append(f"{rng.randint(1, 8)}+ years of experience.")
    return " ".join(parts)


def _summary_row(rng: Random, person: Person) -> dict:
    """Facts in a structured or note-like form -> a two-sentence profile."""
    first, second = rng.sample(person.facts, 2)
    skills = [s.alias for s in person.skills[:3]]
    title, employer = person.role["title"], rng.random() < 0.5
    if rng.random() < 0.6:
        lines = [f"Role: {title}", f"Experience: {person.years} years", "Skills: " + ", ".join(skills)]
        lines += [f"Employer: {person.company}"] if employer else []
        lines += [f"Education: {person.degree}, {person.school}"] if rng.random() < 0.5 else []
        source = "\n".join(lines + ["Highlights:", f"- {first.strong()}", f"- {second.strong()}"])
    else:
        notes = [f"{title}, {person.years} yrs experience", "skills: " + ", ".join(skills)]
        notes += [f"currently at {person.company}"] if employer else []
        notes += [f"studied at {person.school}"] if rng.random() < 0.5 else []
        source = "; ".join(notes + [f"wins: {_lower_first(first.strong())}", _lower_first(second.strong())])
    at = f" at {person.company}" if employer else ""
    target = (f"{rng.choice(vocab.SUMMARY_OPENERS)}{title}{at} with {person.years} years of experience in "
              f"{_join(skills)}. {first.strong()} and {_lower_first(second.strong())}.")
    return _row("summary", source, target, person)


# --- planted problems ---------------------------------------------------------------------

def _plant_in_place(rng: Random, owned: list[tuple[dict, Person]]) -> None:
    """Give a share of rows one problem each: a schema break, PII or a degenerate target."""
    rows = [row for row, _ in owned]
    pool = list(range(len(rows)))
    rng.shuffle(pool)
    for i in range(_share("malformed", len(rows))):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        needs_tailor = kind == "tailor_without_jd"
        _break(rng, rows[_draw(pool, lambda j: not needs_tailor or rows[j]["task"] == "tailor_section")], kind)
    for _ in range(_share("pii", len(rows))):
        _plant_pii(rng, *owned[_draw(pool)])
    for tag in ("quality:identical", "quality:trivial", "quality:fabricated", "quality:harmful"):
        for _ in range(_share(tag, len(rows))):
            row = rows[_draw(pool)]
            row["target"] = _degenerate(rng, row, tag)
            row["meta"]["planted"].append(tag)


def _degenerate(rng: Random, row: dict, tag: str) -> str:
    """A target with the planted problem: a copy, a placeholder, a fact the inputs lack
    (the pairs that teach a model to invent), or a protected attribute (age, family)."""
    if tag == "quality:identical":
        return row["source_text"]
    if tag == "quality:trivial":
        return rng.choice(vocab.TRIVIAL_TARGETS)
    inputs = f"{row['source_text']} {row.get('job_description') or ''}"
    addition = rng.choice(vocab.FABRICATED_ADDITIONS if tag == "quality:fabricated" else vocab.HARMFUL_ADDITIONS)
    number = next(n for n in rng.sample(range(13, 98), 85) if str(n) not in inputs)
    return f"{row['target'].rstrip('. ')}, {addition.format(n=number)}."


def _assign_ids(rows: list[dict], copies: list[tuple[dict, dict]]) -> None:
    """Number rows in file order, link copies to their originals, then drop planted ids."""
    for i, row in enumerate(rows):
        row["id"] = f"r{i:06d}"
    for dup, original in copies:
        dup["meta"]["dup_of"] = original["id"]
    for row in rows:
        if "malformed:missing_id" in row["meta"]["planted"]:
            del row["id"]


def _share(kind: str, n_rows: int) -> int:
    return round(PLANT_RATES[kind] * n_rows)


def _draw(pool: list[int], accept: Callable[[int], bool] = lambda _: True) -> int:
    """Take the first row index from the shuffled pool that accept() allows, so each row
    gets at most one planted kind."""
    return pool.pop(next(pos for pos, i in enumerate(pool) if accept(i)))


def _break(rng: Random, row: dict, kind: str) -> None:
    """Make the row fail the schema in one specific way (missing_id: removed after ids)."""
    row["meta"]["planted"].append(f"malformed:{kind}")
    if kind == "missing_target":
        del row["target"]
    elif kind == "empty_source":
        row["source_text"] = rng.choice(("", "   "))
    elif kind == "unknown_task":
        row["task"] = rng.choice(("rewrite", "bullet", "summarize"))
    elif kind == "target_not_string":
        row["target"] = rng.choice((0, 42, [row["target"]]))
    elif kind == "tailor_without_jd":
        row["job_description"] = rng.choice((None, ""))


def _plant_pii(rng: Random, row: dict, person: Person) -> None:
    """Add 1-2 kinds of personal data as a CV header or contact line."""
    kinds = sorted(rng.sample(PII_KINDS, rng.choice((1, 1, 2))), key=PII_KINDS.index)
    values = {kind: _pii_value(rng, kind, person) for kind in kinds}
    header = [values.pop("name")] if "name" in values else []
    contact = " | ".join(values.values())
    top, bottom = (contact, "") if rng.random() < 0.5 else ("", contact)
    row["source_text"] = "\n".join(line for line in [*header, top, row["source_text"], bottom] if line)
    row["meta"]["planted"].extend(f"pii:{kind}" for kind in kinds)


def _pii_value(rng: Random, kind: str, person: Person) -> str:
    first, last = person.first, person.last
    slug = re.sub(r"[^a-z-]", "", f"{first}-{last}".lower())
    if kind == "name":
        return f"{first} {last} — {person.role['title']}"
    if kind == "email":
        given, family = slug.split("-")
        local = rng.choice((f"{given}.{family}", given[0] + family, f"{given}_{family}{rng.randint(1, 99)}"))
        return f"{local}@{rng.choice(vocab.EMAIL_DOMAINS)}"
    if kind == "phone":
        return "".join(str(rng.randint(0, 9)) if c == "#" else c for c in rng.choice(vocab.PHONE_FORMATS))
    if kind == "url":
        return rng.choice((f"linkedin.com/in/{slug}-{rng.randint(100, 9999)}", f"https://www.linkedin.com/in/{slug}",
                           f"github.com/{slug.replace('-', '')}"))
    if kind == "address":
        city, postcode = rng.choice(vocab.CITY_POSTCODES)
        return f"{rng.randint(1, 220)} {rng.choice(vocab.STREETS)}, {city} {postcode}"
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1965, 2002)
    return rng.choice((f"DOB: {day:02d}/{month:02d}/{year}", f"Date of birth: {year}-{month:02d}-{day:02d}"))


def _duplicates(rng: Random, rows: list[dict]) -> list[tuple[dict, dict]]:
    """(copy, original) pairs: exact copies and near copies of clean rows."""
    clean = [row for row in rows if not row["meta"]["planted"]]
    n_exact, n_near = _share("dup:exact", len(rows)), _share("dup:near", len(rows))
    pairs = []
    for i, original in enumerate(rng.sample(clean, n_exact + n_near)):
        dup = copy.deepcopy(original)
        tag = "dup:exact" if i < n_exact else "dup:near"
        if tag == "dup:near":
            dup["source_text"] = _nudge(rng, dup["source_text"])
        dup["meta"]["planted"] = [tag]
        pairs.append((dup, original))
    return pairs


def _nudge(rng: Random, text: str) -> str:
    """A whitespace, punctuation or one-word edit that keeps every fact."""
    kind = rng.choice(("space", "period", "word"))
    if kind == "word":
        swaps = [(a, b) for a, b in _WORD_SWAPS if re.search(rf"\b{a}\b", text)]
        if swaps:
            old, new = rng.choice(swaps)
            return re.sub(rf"\b{old}\b", new, text, count=1)
        kind = "period"
    if kind == "period":
        return text[:-1] if text.endswith(".") else text + "."
    at = rng.choice([i for i, c in enumerate(text) if c == " "])
    return text[:at] + " " + text[at:]


# --- pre-training text --------------------------------------------------------------------

def _document(rng: Random) -> str:
    """One document of 30-150 words about one role; a rare short CV section gets another
    section appended (every section stays under 120 words)."""
    role = rng.choice(vocab.ROLES)
    skills = _skills(role)
    parts = [rng.choice(_DOC_BUILDERS)(rng, role, skills)]
    while len(" ".join(parts).split()) < 30:
        parts.append(rng.choice(_DOC_BUILDERS)(rng, role, skills))
    return "\n\n".join(parts)


def _experience_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    start = rng.randint(2005, 2022)
    end = rng.choice((str(rng.randint(start + 1, 2024)), "Present"))
    style = rng.choice(("strong", "weak", "mixed"))
    bullets = []
    for fact in _facts(rng, role)[: rng.randint(3, 5)]:
        weak = style == "weak" or (style == "mixed" and rng.random() < 0.5)
        bullets.append("- " + (fact.weak(rng) if weak else fact.strong()))
    heading = rng.choice(("EXPERIENCE", "Work Experience", "Professional Experience"))
    job = f"{role['title']} — {rng.choice(vocab.COMPANIES)}, {rng.choice(vocab.CITIES)} ({start}–{end})"
    return "\n".join([heading, job, *bullets])


def _job_ad_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    picks = rng.sample(skills, 4)
    duties = rng.sample(role["duties"], 3)
    return "\n".join([
        f"{role['title']} — {rng.choice(vocab.COMPANIES)} ({rng.choice(vocab.CITIES)})",
        f"About the role: you will {duties[0]}, {duties[1]} and {duties[2]}.",
        "What you bring:",
        f"- {rng.randint(1, 8)}+ years of experience as {_a(role['title'])} {role['title']}",
        f"- Hands-on experience with {picks[0].term} and {picks[1].term}",
        f"- Knowledge of {picks[2].term}",
        f"Nice to have: {picks[3].term}.",
        "We offer " + ", ".join(rng.sample(vocab.BENEFITS, 3)) + ".",
    ])


def _profile_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    first, second = _facts(rng, role)[:2]
    picks = [s.alias for s in rng.sample(skills, 5)]
    return "\n".join([
        rng.choice(("PROFILE", "Summary", "Professional Summary")),
        f"{rng.choice(vocab.SUMMARY_OPENERS)}{role['title']} with {rng.randint(2, 15)} years of experience in "
        f"{picks[0]} and {picks[1]}. {first.strong()} and {_lower_first(second.strong())}.",
        "SKILLS", " · ".join(picks),
        "EDUCATION", f"{rng.choice(vocab.DEGREES)}, {rng.choice(vocab.SCHOOLS)} ({rng.randint(1995, 2022)})",
        "Languages: " + ", ".join(rng.sample(vocab.LANGUAGES, 2)),
    ])


def _cover_letter_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    first, second = _facts(rng, role)[:2]
    picks = rng.sample(skills, 2)
    return "\n".join([
        "Dear Hiring Manager,",
        f"I am writing to apply for the {role['title']} role at {rng.choice(vocab.COMPANIES)}. In my current role I "
        f"{_lower_first(first.strong())} and {_lower_first(second.strong())}. My experience with {picks[0].term} and "
        f"{picks[1].term} would let me {rng.choice(role['duties'])} from day one.",
        "Thank you for considering my application.",
        rng.choice(("Kind regards", "Yours sincerely", "Best regards")),
    ])


def _tips_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    lines = [f"Writing a stronger {role['title']} CV: start each bullet with an action verb, "
             "name the work and show the result with a number."]
    for fact in _facts(rng, role)[: rng.randint(2, 3)]:
        lines += [f"Weak: {fact.weak(rng)}", f"Strong: {fact.strong()}"]
    return "\n".join(lines)


def _role_doc(rng: Random, role: dict, skills: list[Skill]) -> str:
    first, second = _facts(rng, role)[:2]
    picks = rng.sample(skills, 3)
    duties = rng.sample(role["duties"], 3)
    return (f"What does {_a(role['title'])} {role['title']} do? Most {role['title']}s {duties[0]}, {duties[1]} and "
            f"{duties[2]}. Common tools include {picks[0].term}, {picks[1].term} and {picks[2].term}. "
            f"Typical results on a CV: {_lower_first(first.strong())}; {_lower_first(second.strong())}.")


_DOC_BUILDERS = (_experience_doc, _job_ad_doc, _profile_doc, _cover_letter_doc, _tips_doc, _role_doc)


# --- small text helpers ------------------------------------------------------------------

def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _a(title: str) -> str:
    return "an" if title[0] in "AEIOU" or title.startswith("HR") else "a"
