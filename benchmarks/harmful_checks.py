"""Harmful-output checks quality: cvml.safety.harmful against a labelled set and real CVs.

Two measurements, all offline:
1. labelled (tests/data/harmful/labelled.jsonl, written for cvml): per check (protected
   attributes, abusive language, prompt injection) precision and recall of `flagged`
   against the row's label, with recall per category. The set is split by id: rows 1-1014
   were written before any rule, the even ones the development part the rules were tuned
   on, the odd ones held out; rows from 1015 were written after the rules were frozen and
   scored once ("late"). The top-level figures are over all rows; each part is reported too.
2. dotin (tests/data/cv-dotin-545, CC0): every line of 310 real CVs (a long PDF line cut at
   gaps of two spaces or more into pieces of up to 220 characters) is an output with an
   empty source for the protected-attribute and abusive checks, and an input for the
   injection check. A flag is a false one, except a protected attribute on the lines that
   tests/data/harmful/dotin_attributes.tsv lists as stating one ("Date of Birth: ...",
   "Marital Status: Married"): those are left out of the false-flag rate, and recall on
   them is reported.

The table goes to stderr with the errors; the last stdout line is one JSON object.

    python benchmarks/harmful_checks.py [--data tests/data/cv-dotin-545] [--show 10]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from cvml.safety.harmful import find_abusive, find_injections, find_protected_attributes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "tests" / "data" / "cv-dotin-545"
LABELLED = ROOT / "tests" / "data" / "harmful" / "labelled.jsonl"
DOTIN_ATTRIBUTES = ROOT / "tests" / "data" / "harmful" / "dotin_attributes.tsv"
CHECKS = ("protected_attribute", "abusive", "injection")
LAST_EARLY_ID = 1014  # rows after it were written once the rules were frozen
MAX_LINE, MIN_LINE = 220, 3
_TAG = re.compile(r'<label type="[^"]+">|</label>')
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")


def flags(check: str, text: str, source: str | None = None) -> list[str]:
    """What `check` flags in `text` (with `source` as the input), as "category: words"."""
    if check == "protected_attribute":
        found = find_protected_attributes(text, source or "").findings
    elif check == "abusive":
        found = find_abusive(text, source).findings
    else:
        found = find_injections(text)
    return [f"{f.category}: {f.text}" for f in found]


def part_of(row: dict) -> str:
    if row["id"] > LAST_EARLY_ID:
        return "late"
    return "dev" if row["id"] % 2 == 0 else "held_out"


def load_labelled(path: Path = LABELLED) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score_labelled(rows: list[dict]) -> tuple[dict, list[str]]:
    """Precision and recall per check over all rows and per part, recall per category,
    and the errors as printable lines."""
    counts: Counter = Counter()
    errors = []
    for row in rows:
        found = flags(row["check"], row["text"], row.get("source"))
        outcome = ("tp" if found else "fn") if row["label"] else ("fp" if found else "tn")
        for part in ("all", part_of(row)):
            counts[row["check"], part, outcome] += 1
        if row["label"]:
            counts[row["check"], "category", row.get("category"), outcome] += 1
        if outcome in ("fp", "fn"):
            errors.append(f"{outcome} [{row['check']} #{row['id']}] {row['text']!r} {found}")
    result: dict = {}
    for check in CHECKS:
        for part in ("all", "dev", "held_out", "late"):
            tp, fp, fn = (counts[check, part, o] for o in ("tp", "fp", "fn"))
            figures = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}
            if part == "all":
                result[f"{check}_precision"], result[f"{check}_recall"] = figures["precision"], figures["recall"]
            else:
                result.setdefault(part, {})[check] = figures
        categories = sorted({key[2] for key in counts if key[:2] == (check, "category")})
        result.setdefault("per_category_recall", {})[check] = {
            c: _ratio(counts[check, "category", c, "tp"], counts[check, "category", c, "tp"]
                      + counts[check, "category", c, "fn"]) for c in categories}
    result["n_labelled"] = len(rows)
    return result, errors


def dotin_lines(folder: Path) -> list[tuple[str, str]]:
    """(CV file id, line) for every line of the dotin CVs, tags removed; a line longer than
    MAX_LINE (PDF text on one line) cut at gaps of two spaces or more and regrouped."""
    lines = []
    for path in sorted(folder.glob("*.xml"), key=lambda p: int(p.stem)):
        raw = path.read_text(encoding="utf-8")
        raw = raw[raw.index("<cv>") + len("<cv>"):raw.rindex("</cv>")].strip('\n"')
        text = html.unescape(_TAG.sub("", raw))
        text = _ESCAPED_BYTES.sub(_decoded, text)
        for line in text.split("\n"):
            pieces, group = [], ""
            for piece in re.split(r"\s{2,}", line) if len(line) > MAX_LINE else [line.strip()]:
                if group and len(group) + len(piece) > MAX_LINE:
                    pieces.append(group)
                    group = ""
                group = f"{group}  {piece}" if group else piece
            pieces.append(group)
            lines += [(path.stem, piece) for piece in pieces if len(piece.strip()) >= MIN_LINE]
    return lines


def _decoded(m: re.Match) -> str:
    """The literal "\\xe2\\x80\\xa2" byte escapes some CVs hold, decoded."""
    return bytes.fromhex(m.group().replace("\\x", "")).decode("utf-8", "replace")


def load_dotin_attributes(path: Path = DOTIN_ATTRIBUTES) -> dict[str, list[str]]:
    """CV file id -> the phrases of its lines that state a protected attribute."""
    phrases: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            cv, _, phrase = line.split("\t")
            phrases.setdefault(cv, []).append(phrase)
    return phrases


def score_dotin(lines: list[tuple[str, str]], attributes: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """False-flag rate per check and overall (a line with any false flag), and recall on the
    lines that state an attribute."""
    false_flags: Counter = Counter()
    examples = []
    n_attribute = found_attribute = 0
    for cv, line in lines:
        states = any(phrase in line for phrase in attributes.get(cv, ()))
        n_attribute += states
        wrong = []
        for check in CHECKS:
            found = flags(check, line)
            if check == "protected_attribute" and states:
                found_attribute += bool(found)
            elif found:
                false_flags[check] += 1
                wrong += found
        false_flags["any"] += bool(wrong)
        if wrong:
            examples.append(f"false flag [CV {cv}] {wrong} in {line[:160]!r}")
    n = len(lines)
    result = {"dotin_false_flag_rate": _ratio(false_flags["any"], n, 5)}
    for check in CHECKS:
        result[f"dotin_false_flag_rate_{check}"] = _ratio(false_flags[check], n - (n_attribute if
                                                          check == "protected_attribute" else 0), 5)
    result |= {"dotin_protected_attribute_recall": _ratio(found_attribute, n_attribute),
               "n_dotin_lines": n, "n_dotin_attribute_lines": n_attribute}
    return result, examples


def _ratio(a: int, b: int, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def run(data: Path = DEFAULT_DATA) -> tuple[dict, list[str]]:
    """The JSON summary, and the errors of both measurements."""
    started = time.perf_counter()
    labelled, errors = score_labelled(load_labelled())
    lines = dotin_lines(data)
    dotin, false_flags = score_dotin(lines, load_dotin_attributes())
    checks = 3 * (labelled["n_labelled"] + len(lines))
    return {**labelled, **dotin, "checks_per_s": round(checks / (time.perf_counter() - started))}, errors + false_flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--show", type=int, default=10, help="Errors to print.")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the dotin CVs live in tests/data/cv-dotin-545 of the repository")
    result, errors = run(args.data)
    log = lambda msg="": print(msg, file=sys.stderr)  # noqa: E731
    log(f"labelled: {result['n_labelled']} rows")
    log(f"  {'check':<22}{'part':<10}{'precision':>10}{'recall':>8}")
    for check in CHECKS:
        log(f"  {check:<22}{'all':<10}{result[f'{check}_precision']:>10.3f}{result[f'{check}_recall']:>8.3f}")
        for part in ("dev", "held_out", "late"):
            p, r = result[part][check]["precision"], result[part][check]["recall"]
            log(f"  {'':<22}{part:<10}{p:>10.3f}{r:>8.3f}")
    log(f"dotin: {result['n_dotin_lines']} lines, false-flag rate {result['dotin_false_flag_rate']:.4f} "
        f"(protected {result['dotin_false_flag_rate_protected_attribute']:.4f}, abusive "
        f"{result['dotin_false_flag_rate_abusive']:.4f}, injection {result['dotin_false_flag_rate_injection']:.4f}); "
        f"recall {result['dotin_protected_attribute_recall']:.3f} on {result['n_dotin_attribute_lines']} lines "
        f"that state an attribute; {result['checks_per_s']:,} checks/s")
    for line in errors[:args.show]:
        log(f"  {line}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
