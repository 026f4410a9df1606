"""GDPR erasure: remove one person's rows from a curated dataset and record that it happened.

A person is named by group id, or by a value such as an email, a phone number or a full
name, matched exactly and by type (`typed_value`): through the keyed-hash PII index (the
text holds only placeholders) and, for text that was never redacted, by finding that typed
value in it — never by substring. Plan, then execute: `plan_forget` says what would go
(rows per split, ledger entries, which groups), `forget` does it.

Every split, the quarantine and removed ledgers and the PII index lose the person's rows;
the manifest gets new output hashes and an erasure event that names groups, never the
value; the suppression list (`cvml.curate.suppression`) gets the group and the value, so
no later `cvml curate` brings them back.

Crash-safe: the new files are written next to the old ones (`*.erasing`, fsync-ed), a
journal (`erasure-journal.json`) records the erasure before any of them replaces an old
file, then each is renamed over its original and the journal is removed. Whatever the
moment of a crash, the next `forget`, `plan_forget` or `cvml curate` on the folder
finishes the journaled erasure first (`recover`): either nothing was replaced yet and it
is redone from the untouched originals, or the remaining renames are done.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvml.curate.output import (
    SPLITS,
    fsync_dir,
    fsync_file,
    private_file,
    quarantine_key,
    write_atomic,
)
from cvml.errors import DataError

JOURNAL = "erasure-journal.json"
PENDING = ".erasing"  # suffix of a new file waiting to replace its original
_LEDGERS = ("quarantine.jsonl", "removed.jsonl")
_INDEX = "pii_index.jsonl"


@dataclass
class ForgetResult:
    dataset: str
    groups: list[str]
    rows_removed: dict[str, int]
    ledger_entries_removed: int
    erasure_id: str = ""
    at: str = ""
    resumed: bool = False  # finished an erasure a crash had interrupted

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ForgetPlan:
    """What `forget` would remove. `records` are the rows (id, group, split, source and
    target as stored) so other artifacts can be searched for them; `value` is the typed
    value the person was named by, kept out of `as_dict()`."""

    dataset: str
    groups: list[str]
    by: str  # "group", or the matched value's type: EMAIL, PHONE, NAME, ...
    rows: dict[str, int]
    ledger: dict[str, int]
    index_entries: int
    records: list[dict[str, Any]] = field(default_factory=list)
    value: tuple[str, str] | None = field(default=None, repr=False)
    recovered: ForgetResult | None = None

    @property
    def total(self) -> int:
        return sum(self.rows.values()) + sum(self.ledger.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "groups": self.groups, "by": self.by, "rows": self.rows, "ledger": self.ledger,
            "index_entries": self.index_entries,
            "records": [{k: r[k] for k in ("id", "group", "split")} for r in self.records],
            "recovered": self.recovered.as_dict() if self.recovered else None,
        }


def plan_forget(dataset: str | Path, *, groups: list[str] | None = None, match: str | None = None) -> ForgetPlan:
    """Who and what `forget` would erase; changes nothing (except finishing an erasure a
    crash interrupted, reported as `recovered`).

    Args:
        dataset: a folder made by `cvml curate`.
        groups: group (person) ids.
        match: a value that identifies the person: an email, a phone number, a full name,
            or `TYPE:value` (see `typed_value`).

    Raises:
        DataError: not a curated dataset, nothing to identify a person, or the dataset's
            PII index key is not here (for `match`).
    """
    from cvml.curate.pii_index import PiiIndex, typed_value

    folder = _dataset(dataset)
    if not groups and not match:
        raise DataError("nothing identifies the person to forget", hint="Give --group ID or --match VALUE.")
    recovered = recover(folder)
    targets = set(groups or [])
    value = typed_value(match) if match else None
    if value is not None:
        targets |= PiiIndex.open(folder).groups_for(value[1], value[0])
        targets |= _groups_with_value(folder, value)
    rows, records = _split_rows(folder, targets)
    ledger = {name: len(_ledger_lines(folder / name, targets)[1]) for name in _LEDGERS}
    records += [r for name in _LEDGERS for r in _ledger_records(folder / name, targets)]
    index_entries = len(_index_lines(folder, targets)[1])
    matched = {r["group"] for r in records if r["group"] is not None} | _ledger_keys(folder, targets)
    return ForgetPlan(
        dataset=str(folder), groups=sorted(matched), by=value[0] if value else "group", rows=rows, ledger=ledger,
        index_entries=index_entries, records=records, value=value, recovered=recovered,
    )


def forget(dataset: str | Path, *, groups: list[str] | None = None, match: str | None = None,
           actor: str | None = None, reason: str | None = None, plan: ForgetPlan | None = None) -> ForgetResult:
    """Erase every row of the given groups (and of whoever `match` identifies), atomically.

    Args:
        dataset, groups, match: as for `plan_forget`; or `plan`, one it returned.
        actor: who erases (default $CVML_ACTOR, else the login name); recorded.
        reason: why (a ticket, a request id); recorded in the manifest's erasure event.

    Returns:
        What was removed; when a retry finds that the crash-interrupted erasure it just
        finished already removed everything, that erasure's result (`resumed` True).

    Raises:
        DataError: as `plan_forget`, or no row, ledger entry or index entry matches.
    """
    from cvml.curate.suppression import SuppressionList
    from cvml.manifest import sha256_tree

    plan = plan or plan_forget(dataset, groups=groups, match=match)
    if not plan.total:
        if plan.recovered is not None:
            return plan.recovered
        raise DataError("no row of the dataset matches", hint="Check the group id or value; nothing was changed.")
    folder = Path(plan.dataset)
    suppression = SuppressionList.load()
    values = [plan.value] if plan.value else []
    people = [g for g in plan.groups if not g.startswith("quarantine:")]
    erasure_id = suppression.erasure_id(people, values)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    event = {
        "erasure_id": erasure_id,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "actor": actor or os.environ.get("CVML_ACTOR") or _login(),
        "reason": reason,
        "groups": [g for g in plan.groups if not g.startswith("quarantine:")] or plan.groups,
        "by": plan.by,
        # What the dataset was before, so models trained on it can be found in the registry.
        "sha256_before": {**{s: manifest["outputs"][s]["sha256"] for s in SPLITS}, "tree": sha256_tree(folder)},
    }
    # Before any file changes: from here on a re-curation keeps the person out, crash or not.
    suppression.add(people, values, erasure_id)
    journal = {"state": "prepared", "groups": plan.groups, "event": event}
    write_atomic(folder / JOURNAL, json.dumps(journal, indent=2))
    return _apply(folder, journal)


def recover(dataset: str | Path) -> ForgetResult | None:
    """Finish the erasure a crash interrupted in `dataset`, if any; its result, else None."""
    folder = Path(dataset)
    path = folder / JOURNAL
    if not path.is_file():
        return None
    journal = json.loads(path.read_text(encoding="utf-8"))
    if journal.get("state") == "commit":
        result = _finish(folder, journal)
    else:  # nothing replaced yet: the originals are intact, redo the new files from them
        for pending in folder.glob(f"*{PENDING}"):
            pending.unlink()
        result = _apply(folder, journal)
    result.resumed = True
    return result


# --- executing a journaled erasure -------------------------------------------------------------

def _apply(folder: Path, journal: dict) -> ForgetResult:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cvml.manifest import sha256_file

    targets = set(journal["groups"])
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    files, removed = [], {}
    for split in SPLITS:
        name = f"{split}.parquet"
        table = pq.read_table(folder / name)
        mask = pc.is_in(table["group"], value_set=_array(targets))
        removed[split] = int(pc.sum(mask).as_py() or 0)
        if removed[split]:
            _write_pending(folder / name, table.filter(pc.invert(mask)))
            files.append(name)
        out = manifest["outputs"][split]
        out["rows"] = table.num_rows - removed[split]
        out["sha256"] = sha256_file(_pending(folder / name) if removed[split] else folder / name)
    ledger = 0
    for name in _LEDGERS:
        keep, drop = _ledger_lines(folder / name, targets)
        if drop:
            _write_pending(folder / name, "".join(line + "\n" for line in keep))
            files.append(name)
            ledger += len(drop)
    keep, drop = _index_lines(folder, targets)
    if drop:
        _write_pending(folder / _INDEX, "".join(line + "\n" for line in keep))
        files.append(_INDEX)
    event = {**journal["event"], "rows_removed": removed, "ledger_entries_removed": ledger,
             "index_entries_removed": len(drop)}
    erasures = manifest.setdefault("erasures", [])
    if not any(e.get("erasure_id") == event["erasure_id"] and e.get("at") == event["at"] for e in erasures):
        erasures.append(event)
    _write_pending(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    files.append("manifest.json")  # last: it names the hashes of the files renamed before it
    fsync_dir(folder)
    result = ForgetResult(str(folder), journal["event"]["groups"], removed, ledger + len(drop),
                          event["erasure_id"], event["at"])
    journal = {**journal, "state": "commit", "files": files, "result": result.as_dict()}
    write_atomic(folder / JOURNAL, json.dumps(journal, indent=2))
    return _finish(folder, journal)


def _finish(folder: Path, journal: dict) -> ForgetResult:
    for name in journal["files"]:
        pending = _pending(folder / name)
        if pending.exists():
            _commit_file(pending, folder / name)
    fsync_dir(folder)
    (folder / JOURNAL).unlink()
    fsync_dir(folder)
    return ForgetResult(**journal["result"])


def _pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING)


def _write_pending(path: Path, data) -> None:
    """The new version of `path`, owner-only and on disk, beside the original."""
    import pyarrow.parquet as pq

    target = private_file(_pending(path))
    if isinstance(data, str):
        target.write_text(data, encoding="utf-8")
    else:
        pq.write_table(data, target)
    fsync_file(target)


def _commit_file(pending: Path, path: Path) -> None:
    os.replace(pending, path)


# --- finding the person ------------------------------------------------------------------------

def _dataset(dataset: str | Path) -> Path:
    folder = Path(dataset)
    if not (folder / "manifest.json").is_file() or not (folder / "train.parquet").is_file():
        raise DataError(f"{folder} is not a dataset made by `cvml curate`", hint="Pass the curate output folder.")
    return folder


def _array(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _split_rows(folder: Path, targets: set[str]) -> tuple[dict[str, int], list[dict]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows, records = {}, []
    for split in SPLITS:
        table = pq.read_table(folder / f"{split}.parquet", columns=["id", "group", "source_text", "target"])
        hit = table.filter(pc.is_in(table["group"], value_set=_array(targets)))
        rows[split] = hit.num_rows
        records += [{**r, "split": split} for r in hit.to_pylist()]
    return rows, records


def _groups_with_value(folder: Path, value: tuple[str, str]) -> set[str]:
    """Groups (or quarantine lines) whose stored text still holds exactly this typed value
    (PII that was not redacted: redaction off, or a name the detector missed)."""
    import pyarrow.parquet as pq

    from cvml.curate.pii_index import contains_value

    found = set()
    for split in SPLITS:
        table = pq.read_table(folder / f"{split}.parquet", columns=["group", "source_text", "target", "job_description"])
        for row in table.to_pylist():
            if any(contains_value(row[c] or "", *value) for c in ("source_text", "target", "job_description")):
                found.add(row["group"])
    path = folder / "quarantine.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if _holds(entry.get("row"), value):
                found.add(_ledger_group(entry) or _quarantine_key(entry))
    return found


def _holds(item: Any, value: tuple[str, str]) -> bool:
    from cvml.curate.pii_index import contains_value

    if isinstance(item, str):
        return contains_value(item, *value)
    if isinstance(item, dict):
        return any(_holds(v, value) for v in item.values())
    if isinstance(item, list):
        return any(_holds(v, value) for v in item)
    return False


def _entry_matches(entry: dict, targets: set[str]) -> bool:
    if _ledger_group(entry) in targets:
        return True
    return "line" in entry and _quarantine_key(entry) in targets


def _quarantine_key(entry: dict) -> str:
    return quarantine_key(entry.get("source"), entry.get("line"))


def _ledger_lines(path: Path, targets: set[str]) -> tuple[list[str], list[str]]:
    if not path.is_file():
        return [], []
    keep, drop = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        (drop if _entry_matches(json.loads(line), targets) else keep).append(line)
    return keep, drop


def _ledger_records(path: Path, targets: set[str]) -> list[dict]:
    records = []
    for line in _ledger_lines(path, targets)[1]:
        entry = json.loads(line)
        row = entry.get("row") if isinstance(entry.get("row"), dict) else {}
        record_id = entry.get("id") or row.get("id")
        if isinstance(record_id, str):
            records.append({"id": record_id, "group": _ledger_group(entry), "split": path.stem,
                            "source_text": row.get("source_text"), "target": row.get("target")})
    return records


def _ledger_keys(folder: Path, targets: set[str]) -> set[str]:
    """The quarantine line keys among `targets` that name an entry (rows without a group)."""
    keys = set()
    for line in _ledger_lines(folder / "quarantine.jsonl", targets)[1]:
        entry = json.loads(line)
        if _ledger_group(entry) is None:
            keys.add(_quarantine_key(entry))
    return keys


def _index_lines(folder: Path, targets: set[str]) -> tuple[list[str], list[str]]:
    path = folder / _INDEX
    if not path.is_file():
        return [], []
    keep, drop = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        (drop if "hash" in entry and entry.get("group") in targets else keep).append(line)
    return keep, drop


def _ledger_group(entry: dict) -> str | None:
    if entry.get("group") is not None:
        return entry["group"]
    row = entry.get("row")
    group = row.get("group") if isinstance(row, dict) else None
    return group if isinstance(group, str) else None


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
