"""One person's erasure everywhere cvml keeps a copy: the curated dataset, run folders
(`samples.jsonl`, `quarantine.jsonl`, `result.json`), bench / abtest / quantize report
folders (their samples, pairs and markdown), and the registry (every version trained on
data that held the person is marked). The request log is reached by the CLI
(`cvml forget --user-id`), which composes this with `RequestLog.forget`.

Plan, then execute:

    plan = plan_erasure(match="jane@example.com", dataset="data/cv", folders=["runs", "bench"])
    print(plan.as_dict())      # what would go: dataset rows, files and entries, models to mark
    result = erase(plan, reason="ticket 123")

What counts as the person in an artifact: an entry (a JSONL line, an element of a JSON
list, a markdown line or sample block) that holds the typed value exactly (the email, the
phone, the full name — `cvml.curate.pii_index.contains_value`), names an erased group, or
is one of the erased records by id (and by its text where the entry carries it: run
samples and quantize samples copy the record's source text). Each file is rewritten whole
(a temporary file, fsync, rename), so a crash leaves either the old or the new file; the
whole erasure is idempotent, so re-running the same command after a crash finishes it.
The dataset goes last: until then its index still tells who the person was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.curate.forget import ForgetPlan, ForgetResult, forget, plan_forget
from cvml.curate.output import SPLITS, write_atomic
from cvml.errors import DataError

# Files that carry examples, by name; any other *.jsonl is searched too. Model files
# (weights, configs, tokenizers) are never opened.
SAMPLE_FILES = frozenset({"report.json", "result.json", "quantize_report.json", "report.md", "quantize_report.md"})
_SKIP = frozenset({"manifest.json", "pii_index.jsonl", "erasure-journal.json"})
ERASED = "<ERASED>"


@dataclass
class Subject:
    """Who is being erased, as the artifacts can be searched for them."""

    value: tuple[str, str] | None = None  # (PII type, value)
    groups: set[str] = field(default_factory=set)
    records: dict[str, dict] = field(default_factory=dict)  # id -> {"source_text", "target"}

    def __bool__(self) -> bool:
        return bool(self.value or self.groups or self.records)


@dataclass
class FileHit:
    path: str
    removed: int  # entries (lines, list elements, markdown lines or blocks) removed or masked

    def as_dict(self) -> dict:
        return {"path": self.path, "removed": self.removed}


@dataclass
class ErasurePlan:
    subject: Subject = field(repr=False)
    dataset: ForgetPlan | None
    files: list[FileHit]
    models: list[str]  # registered versions that would be marked
    dataset_sha256s: dict[str, str] = field(default_factory=dict)  # sha256 -> path: the data that held them
    registry: str | None = None
    # The person is on the suppression list: an earlier run of this erasure got this far.
    already_erased: bool = False

    @property
    def empty(self) -> bool:
        return not (self.dataset and (self.dataset.total or self.dataset.recovered)) and not self.files

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.subject.value[0] if self.subject.value else "group",
            "dataset": self.dataset.as_dict() if self.dataset else None,
            "files": [f.as_dict() for f in self.files],
            "models": self.models,
            "already_erased": self.already_erased,
        }


@dataclass
class ErasureResult:
    dataset: ForgetResult | None
    files: list[FileHit]
    models: list[str]  # versions marked now
    erasure_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "dataset": self.dataset.as_dict() if self.dataset else None,
            "files": [f.as_dict() for f in self.files],
            "models": self.models,
        }


def plan_erasure(
    *,
    match: str | None = None,
    groups: Iterable[str] = (),
    dataset: str | Path | None = None,
    folders: Iterable[str | Path] = (),
    registry: str | Path | None = None,
) -> ErasurePlan:
    """Find the person everywhere asked; change nothing (but finish a dataset erasure a
    crash interrupted).

    Args:
        match: a value that identifies them (email, phone, full name, `TYPE:value`).
        groups: their group ids.
        dataset: a curated dataset folder to erase them from.
        folders: run and report folders to search (recursively).
        registry: where the models to mark are registered (default: the usual registry).

    Raises:
        DataError: nothing identifies the person, or a folder does not exist.
    """
    from cvml.curate.pii_index import typed_value

    groups = list(groups)
    if not match and not groups:
        raise DataError("nothing identifies the person to forget", hint="Give --match VALUE or --group ID.")
    subject = Subject(value=typed_value(match) if match else None, groups=set(groups))
    dataset_plan, shas = None, {}
    if dataset is not None:
        dataset_plan = plan_forget(dataset, groups=groups, match=match)
        subject.groups |= {g for g in dataset_plan.groups if not g.startswith("quarantine:")}
        subject.records = {r["id"]: r for r in dataset_plan.records}
        if dataset_plan.total:
            shas = _dataset_versions(Path(dataset_plan.dataset), dataset_plan)
    files = []
    for folder in folders:
        root = Path(folder)
        if not root.exists():
            raise DataError(f"{root} does not exist", hint="Pass run or report folders that exist.")
        files += [FileHit(str(path), n) for path in _candidates(root, dataset) if (n := _scrub(path, subject, write=False))]
    from cvml.curate.suppression import SuppressionList
    from cvml.registry.erasure import affected_versions

    models = [ref for ref, *_ in affected_versions(shas, registry)] if shas else []
    listed = SuppressionList.load()
    already = any(listed.matches(g) for g in subject.groups) or (
        subject.value is not None and listed.matches(None, [subject.value]))
    return ErasurePlan(subject, dataset_plan, files, models, shas, None if registry is None else str(registry), already)


def erase(plan: ErasurePlan, *, reason: str | None = None, actor: str | None = None) -> ErasureResult:
    """Do what `plan` found: scrub the files, mark the models, then erase the dataset rows
    (which also keeps the person out of later curations). Idempotent.

    Raises:
        DataError: the dataset erasure cannot be done (see `cvml.curate.forget`).
    """
    from cvml.curate.suppression import SuppressionList
    from cvml.registry.erasure import mark_trained_on

    subject = plan.subject
    files = [FileHit(hit.path, n) for hit in plan.files if (n := _scrub(Path(hit.path), subject, write=True))]
    erasure_id, listed = None, 0
    if subject.value or subject.groups:
        # The id `forget` gives the dataset's erasure, so marks and manifest name the same one.
        named = plan.dataset.groups if plan.dataset is not None and plan.dataset.total else subject.groups
        people = sorted(g for g in named if not g.startswith("quarantine:"))
        values = [subject.value] if subject.value else []
        suppression = SuppressionList.load()
        erasure_id = suppression.erasure_id(people, values)
        # Kept out of later curations even when no dataset was named (a no-op when listed).
        listed = suppression.add(sorted(g for g in subject.groups if not g.startswith("quarantine:")), values, erasure_id)
    models = []
    if plan.dataset_sha256s and erasure_id:
        models = [m.ref for m in mark_trained_on(plan.dataset_sha256s, erasure_id=erasure_id, reason=reason,
                                                 actor=actor, registry=plan.registry)]
    dataset = None
    if plan.dataset is not None and (plan.dataset.total or plan.dataset.recovered):
        dataset = forget(plan.dataset.dataset, plan=plan.dataset, reason=reason, actor=actor)
    done = dataset is not None or files or models or listed
    return ErasureResult(dataset, files, models, (dataset.erasure_id if dataset else erasure_id) if done else None)


# --- the data that held the person ---------------------------------------------------------

def _dataset_versions(folder: Path, plan: ForgetPlan) -> dict[str, str]:
    """sha256 -> path of every version of the dataset's files that held the person: the
    splits that hold their rows now and before each earlier erasure, and the folder."""
    from cvml.manifest import sha256_tree

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    shas = {}
    held = [s for s in SPLITS if plan.rows.get(s)]
    for split in held:
        shas[manifest["outputs"][split]["sha256"]] = str((folder / f"{split}.parquet").resolve())
        for event in manifest.get("erasures") or []:
            before = (event.get("sha256_before") or {}).get(split)
            if before:
                shas[before] = str((folder / f"{split}.parquet").resolve())
    if held:
        shas[sha256_tree(folder)] = str(folder.resolve())
        for event in manifest.get("erasures") or []:
            if (event.get("sha256_before") or {}).get("tree"):
                shas[event["sha256_before"]["tree"]] = str(folder.resolve())
    return shas


# --- searching and scrubbing files ---------------------------------------------------------

def _candidates(root: Path, dataset: str | Path | None) -> list[Path]:
    skip = Path(dataset).resolve() if dataset is not None else None
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found = []
    for path in paths:
        if path.name in _SKIP or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if skip is not None and skip in path.resolve().parents:
            continue  # the dataset itself: `forget` does it, atomically
        if path.suffix == ".jsonl" or path.name in SAMPLE_FILES:
            found.append(path)
    return found


def _scrub(path: Path, subject: Subject, *, write: bool) -> int:
    """How many entries of `path` are the person's; with `write`, rewrite it without them."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    if path.suffix == ".jsonl":
        new, n = _scrub_jsonl(text, subject)
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return 0
        data, n = _scrub_json(data, subject)
        new = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    else:
        new, n = _scrub_markdown(text, subject)
    if n and write:
        write_atomic(path, new)
    return n


def _scrub_jsonl(text: str, subject: Subject) -> tuple[str, int]:
    keep, dropped = [], 0
    for line in text.splitlines():
        try:
            hit = _mentions(json.loads(line), subject) if line.strip() else False
        except json.JSONDecodeError:
            hit = _text_mentions(line, subject)
        if hit:
            dropped += 1
        else:
            keep.append(line)
    return "".join(line + "\n" for line in keep), dropped


def _scrub_json(data: Any, subject: Subject) -> tuple[Any, int]:
    """Drop list elements that are the person's; mask the value in any other string."""
    if isinstance(data, list):
        out, n = [], 0
        for item in data:
            if isinstance(item, (dict, list)) and _mentions(item, subject):
                n += 1
                continue
            item, m = _scrub_json(item, subject)
            out.append(item)
            n += m
        return out, n
    if isinstance(data, dict):
        out, n = {}, 0
        for key, value in data.items():
            out[key], m = _scrub_json(value, subject)
            n += m
        return out, n
    if isinstance(data, str) and subject.value:
        masked = _mask(data, subject.value)
        return masked, int(masked != data)
    return data, 0


def _scrub_markdown(text: str, subject: Subject) -> tuple[str, int]:
    """Drop every line that mentions the person; a sample block (a line starting with `**`,
    as quantize reports write them) goes whole, up to the next block or heading."""
    lines, keep, n, i = text.splitlines(), [], 0, 0
    while i < len(lines):
        line = lines[i]
        if not _text_mentions(line, subject):
            keep.append(line)
            i += 1
            continue
        n += 1
        i += 1
        if line.startswith("**"):
            while i < len(lines) and not lines[i].startswith(("**", "#")):
                i += 1
    return "\n".join(keep) + ("\n" if text.endswith("\n") else ""), n


def _mentions(item: Any, subject: Subject) -> bool:
    if isinstance(item, dict):
        group = item.get("group")
        if isinstance(group, str) and group in subject.groups:
            return True
        record_id = item.get("id")
        if isinstance(record_id, str) and record_id in subject.records and _same_record(item, subject.records[record_id]):
            return True
        return any(_mentions(v, subject) for v in item.values())
    if isinstance(item, list):
        return any(_mentions(v, subject) for v in item)
    if isinstance(item, str):
        return subject.value is not None and _has_value(item, subject.value)
    return False


def _same_record(item: dict, record: dict) -> bool:
    """An entry with the erased record's id is that record unless it carries a text that
    differs (another dataset's row with the same id)."""
    for key in ("source_text", "target"):
        if isinstance(item.get(key), str) and record.get(key) is not None and item[key] != record[key]:
            return False
    return True


def _text_mentions(line: str, subject: Subject) -> bool:
    if subject.value is not None and _has_value(line, subject.value):
        return True
    tokens = set(re.findall(r"[\w-]+(?:[.:][\w-]+)*", line))
    return bool(tokens & subject.groups) or bool(tokens & set(subject.records))


def _has_value(text: str, value: tuple[str, str]) -> bool:
    from cvml.curate.pii_index import contains_value

    return contains_value(text, *value)


def _mask(text: str, value: tuple[str, str]) -> str:
    from cvml.curate.pii_index import find_value

    spans = find_value(text, *value)
    for start, end in reversed(spans):
        text = text[:start] + ERASED + text[end:]
    return text
