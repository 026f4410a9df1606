"""PII detection quality and speed: cvml.safety.pii against labelled data.

Three measurements, all offline:
1. dotin (tests/data/cv-dotin-545, CC0): 310 real CVs with inline gold labels. NAME is
   scored against gold Name and EMAIL against gold Email Address, span level (a span counts
   if it overlaps one on the other side) and character level. The gold labels only the
   CV owner's name and email, so the names of referees and the emails of others count
   against precision there; "checked" precision also accepts what a reader can check by
   rule: a NAME right after a title or a "Name:"/"Reference:" label or before post-
   nominals, an email-shaped EMAIL. Location is gold for places, mostly bare cities, which
   are not PII here: ADDRESS recall against it shows that, it is no target. Phones, URLs,
   addresses, birth dates and IDs are unlabelled: a PHONE is checked if phonenumbers calls
   it valid, a phone label precedes it, or it has the US (ddd) ddd-dddd shape; a URL if it
   has a scheme, "www." or a path; ADDRESS, DOB and NATIONAL_ID count as checked unless
   they overlap a gold non-PII label (company, degree, skill, year, ...), which makes any
   span wrong. Spans that are not checked are printed, and --list TYPE prints all of a type.
   The CVs are split once, by numeric file id: even ids (155 files) are the development
   part, which the name finder was tuned on; odd ids (155 files) are the report part, held
   out and scored once for the figures in the report. `--part` picks one (default: dev).
2. synthetic (cvml.tiny.synth): recall on the rows with planted PII (a span of the planted
   type in the source), planted values still visible after redaction, and false positives
   in every text without that kind planted.
3. speed: records per second, redacting source, job description and target of each
   synthetic record with one Placeholders scope, on one core; and the CPU time per
   request-log row (input and output text of a served request, about 100 characters each,
   one scope, as cvml.serve.requestlog redacts them in its writer thread), in total and
   for the NAME finder alone.

It also checks that redacting twice changes nothing. The table goes to stderr; the last
stdout line is one JSON object.

    python benchmarks/pii_dotin.py [--part dev|report|all] [--data tests/data/cv-dotin-545] [--people 2000] [--show 40]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import phonenumbers

from cvml.safety.pii import PII_TYPES, PiiRedactor, PiiSpan, Placeholders
from cvml.tiny import vocab
from cvml.tiny.synth import generate_records

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "cv-dotin-545"
GOLD_FOR = {"NAME": "Name", "EMAIL": "Email Address"}
NOT_PII_LABELS = {"Companies worked at", "Designation", "Degree", "College Name", "Graduation Year",
                  "Years of Experience", "Job Specific Skills", "Soft Skills", "Tech Tools"}
PHONE_REGIONS = ("US", "GB", "IN", "DE", "AU", "FR", "IE", "ZA", "NO", "KE", "AE")
_TAG = re.compile(r'<label type="([^"]+)">|</label>')
_PHONE_LABEL = re.compile(r"(?i)\b(?:phone|ph|tel|telephone|mobile|mob|cell|contact|fax|home|work|office|[mthp])\b"
                          r"(?:\W{0,4}\(?[A-Za-z]{0,10}\)?)?\W{0,6}$")
_US_SHAPE = re.compile(r"(?:\+1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}")
_URL_CHECKED = re.compile(r"(?i)^(?:https?://|ftp://|www\.)|/")
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_NAME_CUE_BEFORE = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Professor)\.?"
                              r"|(?i:name|reference|referee|resume of)\s*:?)\s*$")
_NAME_CUE_AFTER = re.compile(r",?\s(?:M\.D\.|Ph\.?\s?D|Psy\.D|Ed\.D|M\.A\.|MBA|PMP)")
_PLANTED = {"pii:email": "EMAIL", "pii:phone": "PHONE", "pii:url": "URL", "pii:name": "NAME",
            "pii:address": "ADDRESS", "pii:dob": "DOB"}
# What of a planted value would still show in a redacted source.
_LEAK = {"EMAIL": re.compile("@"), "PHONE": re.compile(r"\+\d"), "URL": re.compile(r"linkedin\.com|github\.com"),
         "ADDRESS": re.compile("|".join(vocab.STREETS)), "DOB": re.compile(r"(?:DOB|Date of birth): \d"),
         "NAME": re.compile(r"^(?!<NAME_)")}


PARTS = ("dev", "report", "all")


def part_of(stem: str) -> str:
    """The fixed split: even file ids are the development part, odd ids the report part."""
    return "dev" if int(stem) % 2 == 0 else "report"


def load_dotin(folder: Path, part: str = "all") -> list[tuple[str, str, list[tuple[str, int, int]]]]:
    """(file stem, plain text, gold spans as (label, start, end)) per CV of `part` (one of
    PARTS), tags stripped."""
    docs = []
    for path in sorted(folder.glob("*.xml"), key=lambda p: int(p.stem)):
        if part != "all" and part_of(path.stem) != part:
            continue
        raw = path.read_text(encoding="utf-8")
        raw = raw[raw.index("<cv>") + len("<cv>"):raw.rindex("</cv>")].strip("\n")
        parts, gold, open_labels, at, length = [], [], [], 0, 0
        for m in _TAG.finditer(raw):
            piece = html.unescape(raw[at:m.start()])
            parts.append(piece)
            length += len(piece)
            at = m.end()
            if m.group(1):
                open_labels.append((m.group(1), length))
            else:
                label, start = open_labels.pop()
                gold.append((label, start, length))
        parts.append(html.unescape(raw[at:]))
        docs.append((path.stem, "".join(parts), gold))
    return docs


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _chars(spans) -> set[int]:
    return {i for s, e in spans for i in range(s, e)}


def score_dotin(redactor: PiiRedactor, docs) -> tuple[dict, dict[str, list[str]], list[str]]:
    """Counts per type, the spans no rule checks (by type), and every span (for --list)."""
    stats: dict[str, Counter] = defaultdict(Counter)
    unchecked: dict[str, list[str]] = defaultdict(list)
    listing = []
    for stem, text, gold in docs:
        spans = redactor.find(text)
        by_label = defaultdict(list)
        for label, s, e in gold:
            by_label[label].append((s, e))
        not_pii = [(s, e) for label, s, e in gold if label in NOT_PII_LABELS]
        for pii_type, label in GOLD_FOR.items():
            pred = [(s.start, s.end) for s in spans if s.type == pii_type]
            _count_gold(stats[pii_type], pred, by_label[label])
        address = [(s.start, s.end) for s in spans if s.type == "ADDRESS"]
        _count_gold(stats["ADDRESS"], address, by_label["Location"], chars=False)
        for span in spans:
            status, why = _check(span, text, by_label, not_pii)
            stats[span.type]["pred"] += 1
            stats[span.type]["span_" + status] += 1
            line = f"{stem}: {span.text!r} in {_context(text, span)!r}"
            listing.append(f"{span.type} {line}")
            if status not in ("gold", "checked"):
                unchecked[span.type].append(f"{status} ({why}) {line}")
    return stats, unchecked, listing


def _count_gold(st: Counter, pred, gold, chars: bool = True) -> None:
    st["gold"] += len(gold)
    st["gold_found"] += sum(any(_overlaps(g, p) for p in pred) for g in gold)
    if chars:
        pc, gc = _chars(pred), _chars(gold)
        st["pred_chars"] += len(pc)
        st["gold_chars"] += len(gc)
        st["both_chars"] += len(pc & gc)


def _check(span: PiiSpan, text: str, by_label, not_pii) -> tuple[str, str]:
    """("gold" | "checked" | "wrong" | "unchecked", why) for one predicted span."""
    where = (span.start, span.end)
    if span.type in GOLD_FOR and any(_overlaps(where, g) for g in by_label[GOLD_FOR[span.type]]):
        return "gold", ""
    if span.type not in ("EMAIL", "URL") and any(_overlaps(where, g) for g in not_pii):
        return "wrong", "overlaps a non-PII label"
    before, after = text[max(0, span.start - 40):span.start], text[span.end:span.end + 12]
    if span.type == "NAME":
        ok = bool(_NAME_CUE_BEFORE.search(before) or _NAME_CUE_AFTER.match(after))
        return ("checked", "") if ok else ("unchecked", "no gold Name, no title or label")
    if span.type == "EMAIL":
        return ("checked", "") if _EMAIL_SHAPE.fullmatch(span.text) else ("unchecked", "not email-shaped")
    if span.type == "PHONE":
        ok = _valid_phone(span.text) or _PHONE_LABEL.search(before) or _US_SHAPE.fullmatch(span.text)
        return ("checked", "") if ok else ("unchecked", "not a valid number, no label, not US-shaped")
    if span.type == "URL":
        return ("checked", "") if _URL_CHECKED.search(span.text) else ("unchecked", "bare domain")
    return "checked", ""


def _valid_phone(value: str) -> bool:
    for region in [None] if value.startswith("+") else PHONE_REGIONS:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
                return True
        except phonenumbers.NumberParseException:
            pass
    return False


def _context(text: str, span: PiiSpan, width: int = 30) -> str:
    return text[max(0, span.start - width):span.end + width].replace("\n", " ")


def score_synthetic(redactor: PiiRedactor, rows: list[dict]) -> tuple[dict, list[str]]:
    """Per type: planted rows found and leaked, and false positives in all other texts."""
    found, expected, leaked, false_pos = Counter(), Counter(), Counter(), Counter()
    examples = []
    for row in rows:
        planted = {_PLANTED[t] for t in row["meta"]["planted"] if t in _PLANTED}
        for field in ("source_text", "job_description", "target"):
            text = row.get(field)
            if not isinstance(text, str) or not text:
                continue
            redacted, spans = redactor.redact(text)
            for span in spans:
                if field != "source_text" or span.type not in planted:
                    false_pos[span.type] += 1
                    examples.append(f"{row.get('id')}/{field}: {span.type} {span.text!r}")
            if field == "source_text":
                for t in planted:
                    expected[t] += 1
                    found[t] += any(span.type == t for span in spans)
                    leaked[t] += bool(_LEAK[t].search(redacted))
    return {t: {"found": found[t], "expected": expected[t], "leaked": leaked[t], "false_positives": false_pos[t]}
            for t in PII_TYPES}, examples


def count_not_idempotent(redactor: PiiRedactor, texts: list[str]) -> int:
    return sum(redactor.redact(once)[0] != once for once in (redactor.redact(t)[0] for t in texts))


def measure_speed(redactor: PiiRedactor, rows: list[dict], min_seconds: float = 3.0) -> dict:
    """Records per second: all three text fields of a record, one Placeholders per record."""
    texts = [[r[f] for f in ("source_text", "job_description", "target") if isinstance(r.get(f), str) and r[f]]
             for r in rows]
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        for fields in texts:
            scope = Placeholders()
            for text in fields:
                redactor.redact(text, scope)
        n += len(texts)
    seconds = time.perf_counter() - started
    words = sum(len(t.split()) for fields in texts for t in fields) / len(texts)
    return {"records_per_s": round(n / seconds), "words_per_record": round(words, 1)}


LOG_FIRST = ("Jane", "Omar", "Li", "Priya", "Carlos", "Anna", "Kwame", "Sofia", "Mateo", "Yuki")
LOG_LAST = ("Doe", "Haddad", "Wei", "Sharma", "Ruiz", "Novak", "Mensah", "Rossi", "Garcia", "Tanaka")
LOG_ROLES = ("Data Analyst", "HR Specialist", "Backend Engineer", "Product Manager", "Nurse")
LOG_INPUT = "{name} — {role}\nEmail {email}, phone {phone}\nBuilt dashboards for the sales team of {n} people."
LOG_OUTPUT = "Built {k} Tableau dashboards used by {n} sales staff. Contact {name} at {email}."


def log_rows(n: int = 1000) -> list[tuple[str, str]]:
    """(input, output) texts shaped like benchmarks/store_throughput.py's request-log rows."""
    rows = []
    for i in range(n):
        first, last = LOG_FIRST[i % len(LOG_FIRST)], LOG_LAST[(i // len(LOG_FIRST)) % len(LOG_LAST)]
        name, email = f"{first} {last}", f"{first.lower()}.{last.lower()}{i % 97}@example.com"
        people = 10 + i % 40
        rows.append((LOG_INPUT.format(name=name, role=LOG_ROLES[i % len(LOG_ROLES)], email=email,
                                      phone=f"+1 415 555 {i % 10_000:04d}", n=people),
                     LOG_OUTPUT.format(k=2 + i % 11, n=people, name=name, email=email)))
    return rows


def measure_log_row(redactor: PiiRedactor, rows: list[tuple[str, str]], min_seconds: float = 2.0) -> dict:
    """CPU microseconds per request-log row (two texts, one scope), for the whole redactor
    and for its NAME finder alone; the best of several rounds (the machine may be busy)."""
    names = PiiRedactor(types=["NAME"])

    def per_row(red: PiiRedactor) -> float:
        best, spent = float("inf"), 0.0
        while spent < min_seconds:
            started = time.thread_time()
            for pair in rows:
                scope = Placeholders()
                for text in pair:
                    red.redact(text, scope)
            took = time.thread_time() - started
            best, spent = min(best, took), spent + took
        return best / len(rows) * 1e6

    return {"row_us": round(per_row(redactor), 1), "name_us": round(per_row(names), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--part", choices=PARTS, default="dev",
                        help="dotin CVs to score: even ids (dev), odd ids (report, held out) or all.")
    parser.add_argument("--people", type=int, default=2000, help="Synthetic people (about 4.8 rows each).")
    parser.add_argument("--show", type=int, default=40, help="Unchecked dotin spans to print per type.")
    parser.add_argument("--list", choices=PII_TYPES, action="append", default=[],
                        help="Print every dotin span of this type (repeatable).")
    args = parser.parse_args()
    log = lambda msg="": print(msg, file=sys.stderr)  # noqa: E731

    redactor = PiiRedactor()
    rows = generate_records(args.people, seed=0)
    synthetic, synthetic_fp = score_synthetic(redactor, rows)
    texts = [r[f] for r in rows for f in ("source_text", "job_description", "target") if isinstance(r.get(f), str)]
    result: dict = {"synthetic": synthetic}
    _log_synthetic(log, synthetic, synthetic_fp, args.show)

    if args.data.is_dir():
        docs = load_dotin(args.data, args.part)
        stats, unchecked, listing = score_dotin(redactor, docs)
        result["dotin"] = _dotin_summary(stats, len(docs)) | {"part": args.part}
        _log_dotin(log, result["dotin"], unchecked, args.show)
        for line in listing:
            if line.split(" ", 1)[0] in args.list:
                log(f"  {line}")
        texts += [text for _, text, _ in docs]
    else:
        log(f"\n{args.data} not found: dotin skipped")
    result["not_idempotent"] = count_not_idempotent(redactor, texts)
    result["speed"] = measure_speed(redactor, rows) | measure_log_row(redactor, log_rows())
    log(f"\nredact(redact(x)) != redact(x) for {result['not_idempotent']} of {len(texts)} texts")
    log(f"speed: {result['speed']['records_per_s']:,} records/s on one core "
        f"({result['speed']['words_per_record']} words per record, 3 fields); "
        f"request-log row: {result['speed']['row_us']} µs CPU, NAME finder alone {result['speed']['name_us']} µs")
    print(json.dumps(result))


def _log_synthetic(log, synthetic: dict, false_positives: list[str], show: int) -> None:
    log("synthetic planted PII: rows found / rows planted, planted values left after redaction, "
        "false positives in all other texts")
    log(f"{'type':<12}{'found/planted':>15}{'recall':>8}{'leaked':>8}{'false pos':>11}")
    for t, s in synthetic.items():
        if s["expected"] or s["false_positives"]:
            log(f"{t:<12}{s['found']:>7}/{s['expected']:<7}{s['found'] / max(s['expected'], 1):>8.3f}"
                f"{s['leaked']:>8}{s['false_positives']:>11}")
    for line in false_positives[:show]:
        log(f"  false positive {line}")


def _dotin_summary(stats: dict, n_docs: int) -> dict:
    out: dict = {"docs": n_docs, "types": {}}
    predicted = checked = 0
    for t in PII_TYPES:
        st = stats.get(t, Counter())
        ok = st["span_gold"] + st["span_checked"]
        row = {"predicted": st["pred"], "checked_precision": _ratio(ok, st["pred"])}
        if t in GOLD_FOR:
            row["precision_vs_gold"] = _ratio(st["span_gold"], st["pred"])
        if st["gold"]:
            row.update(gold=st["gold"], gold_found=st["gold_found"], recall=_ratio(st["gold_found"], st["gold"]))
        if st["gold_chars"]:
            row.update(char_precision=_ratio(st["both_chars"], st["pred_chars"]),
                       char_recall=_ratio(st["both_chars"], st["gold_chars"]))
        out["types"][t] = row
        predicted += st["pred"]
        checked += ok
    out["overall_checked_precision"] = _ratio(checked, predicted)
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _log_dotin(log, summary: dict, unchecked: dict, show: int) -> None:
    log(f"\ndotin ({summary['part']} part): {summary['docs']} CVs. P gold: precision against the gold label "
        "(NAME: Name, EMAIL: Email Address); P checked: gold or checked by rule; recall against gold "
        "(ADDRESS: against Location)")
    log(f"{'type':<12}{'pred':>6}{'P gold':>8}{'P checked':>10}{'gold':>6}{'found':>6}{'recall':>8}"
        f"{'char P':>8}{'char R':>8}")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for t, r in summary["types"].items():
        log(f"{t:<12}{r['predicted']:>6}{fmt(r.get('precision_vs_gold')):>8}{fmt(r['checked_precision']):>10}"
            f"{r.get('gold', '-'):>6}{r.get('gold_found', '-'):>6}{fmt(r.get('recall')):>8}"
            f"{fmt(r.get('char_precision')):>8}{fmt(r.get('char_recall')):>8}")
    log(f"overall checked precision: {fmt(summary['overall_checked_precision'])}")
    for t, lines in unchecked.items():
        log(f"\nnot checked {t} ({len(lines)}):")
        for line in lines[:show]:
            log(f"  {line}")


if __name__ == "__main__":
    main()
