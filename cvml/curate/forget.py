"""GDPR erasure: remove one person's rows from a curated dataset and record that it happened.

A person is named by group id, or by a value such as an email or phone number. Values
are found through the keyed-hash PII index (the text itself holds only placeholders) and,
for values that were never PII (a unique phrase), by a case-insensitive search of the text.
Every split, the quarantine and removed ledgers and the PII index are rewritten; the
manifest gets new output hashes and an erasure event that names groups, never the value.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from cvml.curate.output import SPLITS
from cvml.curate.pii_index import PiiIndex
from cvml.errors import DataError


@dataclass
class ForgetResult:
    dataset: str
    groups: list[str]
    rows_removed: dict[str, int]
    ledger_entries_removed: int

    def as_dict(self) -> dict:
        return asdict(self)


def forget(dataset: str | Path, *, groups: list[str] | None = None, match: str | None = None,
           actor: str | None = None, reason: str | None = None) -> ForgetResult:
    """Erase every row of the given groups (and of whoever `match` identifies).

    Raises:
        DataError: not a curated dataset, nothing to identify a person, or no row matched.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cvml.manifest import sha256_file

    folder = Path(dataset)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file() or not (folder / "train.parquet").is_file():
        raise DataError(f"{folder} is not a dataset made by `cvml curate`", hint="Pass the curate output folder.")
    if not groups and not match:
        raise DataError("nothing identifies the person to forget", hint="Give --group ID or --match VALUE.")
    targets = set(groups or [])
    index = PiiIndex.open(folder)
    if match:
        targets |= index.groups_for(match)
        targets |= _groups_with_text(folder, match)
    tables = {split: pq.read_table(folder / f"{split}.parquet") for split in SPLITS}
    removed = {}
    for split, table in tables.items():
        mask = pc.is_in(table["group"], value_set=_array(targets))
        removed[split] = int(pc.sum(mask).as_py() or 0)
        if removed[split]:
            pq.write_table(table.filter(pc.invert(mask)), folder / f"{split}.parquet")
    if not sum(removed.values()):
        raise DataError("no row of the dataset matches", hint="Check the group id or value; nothing was changed.")
    ledger = _drop_from_ledgers(folder, targets) + index.drop_groups(targets)

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for split in SPLITS:
        out = manifest["outputs"][split]
        out["rows"] -= removed[split]
        out["sha256"] = sha256_file(folder / f"{split}.parquet")
    manifest.setdefault("erasures", []).append({
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "actor": actor or os.environ.get("CVML_ACTOR") or getpass.getuser(),
        "reason": reason,
        "groups": sorted(targets),
        "by": "group" if not match else "value",
        "rows_removed": removed,
    })
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ForgetResult(str(folder), sorted(targets), removed, ledger)


def _array(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _groups_with_text(folder: Path, value: str) -> set[str]:
    import pyarrow.parquet as pq

    needle = value.lower()
    found = set()
    for split in SPLITS:
        table = pq.read_table(folder / f"{split}.parquet", columns=["group", "source_text", "target", "job_description"])
        for row in table.to_pylist():
            if any(needle in (row[c] or "").lower() for c in ("source_text", "target", "job_description")):
                found.add(row["group"])
    return found


def _drop_from_ledgers(folder: Path, groups: set[str]) -> int:
    dropped = 0
    for name in ("quarantine.jsonl", "removed.jsonl"):
        path = folder / name
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        keep = [line for line in lines if _ledger_group(json.loads(line)) not in groups]
        dropped += len(lines) - len(keep)
        path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    return dropped


def _ledger_group(entry: dict) -> str | None:
    if "group" in entry:
        return entry["group"]
    row = entry.get("row")
    return row.get("group") if isinstance(row, dict) else None
