"""Marks on model versions trained on data a person was later erased from.

Erasing someone from a dataset does not take them out of the models already trained on
it. `mark_trained_on` finds every registered version whose recorded datasets
(`model_datasets`, with their sha256) include a version of the data that held the person,
and every version derived from one (a quantized or merged child), and marks it: a row in
`erasure_marks` (migration 4) and an "erasure" event in the audit log. A mark is what
`erasure_marks(ref)` / `erased_data_note(ref)` report: "trained on erased data since
<date>" — the model may need retraining.

    marks = mark_trained_on({"<sha256 of train.parquet>": "data/cv/train.parquet"}, erasure_id="3f…")
    erased_data_note("cv@3")   # "trained on erased data since 2025-01-31"

Marking is idempotent per (version, erasure id): a retried erasure adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from cvml.registry.db import REGISTRY
from cvml.registry.store import Registry, current_actor
from cvml.storage import Database, utc_now

ACTION = "erasure"
_MARK_COLUMNS = "name, version, erasure_id, at, actor, dataset_path, dataset_sha256, via, reason"


@dataclass(frozen=True)
class ErasureMark:
    """One version marked by one erasure. `via` is the marked version it was derived from
    (None: it was trained on the data itself, `dataset_path` / `dataset_sha256`)."""

    name: str
    version: int
    erasure_id: str
    at: str
    actor: str
    dataset_path: str | None
    dataset_sha256: str | None
    via: str | None
    reason: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def note(self) -> str:
        return f"trained on erased data since {self.at[:10]}"

    def to_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref, "note": self.note}


def affected_versions(dataset_sha256s: Mapping[str, str], registry: str | Path | None = None) -> list[tuple[str, str | None, str | None, str | None]]:
    """The versions `mark_trained_on` would mark: (ref, dataset path, dataset sha256, via),
    those trained on one of the datasets first, then their descendants."""
    reg = Registry(registry)
    if _empty(reg):
        return []
    db = Database.open(reg.url, REGISTRY)
    wanted = sorted(dataset_sha256s)
    found: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    if wanted:
        marks = ", ".join("?" * len(wanted))
        with db.read() as conn:
            rows = conn.execute(
                f"SELECT name, version, path, sha256 FROM model_datasets WHERE sha256 IN ({marks}) "
                "ORDER BY name, version, position",
                tuple(wanted),
            ).fetchall()
        for row in rows:
            ref = f"{row['name']}@{row['version']}"
            found.setdefault(ref, (ref, row["path"], row["sha256"], None))
    for ref in list(found):
        for child, parent in _descendants(reg, ref):
            found.setdefault(child, (child, None, None, parent))
    return list(found.values())


def mark_trained_on(
    dataset_sha256s: Mapping[str, str],
    *,
    erasure_id: str,
    reason: str | None = None,
    actor: str | None = None,
    registry: str | Path | None = None,
) -> list[ErasureMark]:
    """Mark every version trained on one of the datasets (sha256 → path, as the erasure
    knew it), and every version derived from one, with an "erasure" audit event each.

    Args:
        dataset_sha256s: the sha256 of each dataset file or folder that held the person
            (as `Registry.register(datasets=...)` recorded it) → its path, for the record.
        erasure_id: the erasure's id; a version already marked with it is left alone.
        reason: recorded with the mark and the event.
        actor: default $CVML_ACTOR, else the login name.
        registry: a registry location (default: CVML_DB_URL, else $CVML_HOME/registry.db).

    Returns:
        The marks made now (not those made by an earlier run of the same erasure).
    """
    affected = affected_versions(dataset_sha256s, registry)
    if not affected:
        return []
    reg = Registry(registry)
    db = Database.open(reg.url, REGISTRY)
    who, at = current_actor(actor), utc_now()
    made = []
    with db.write() as conn:
        for ref, path, sha, via in affected:
            name, _, version = ref.rpartition("@")
            exists = conn.execute(
                "SELECT 1 FROM erasure_marks WHERE name = ? AND version = ? AND erasure_id = ?",
                (name, int(version), erasure_id),
            ).fetchone()
            if exists:
                continue
            mark = ErasureMark(name, int(version), erasure_id, at, who, path, sha, via, reason)
            conn.execute(
                f"INSERT INTO erasure_marks ({_MARK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mark.name, mark.version, erasure_id, at, who, path, sha, via, reason),
            )
            why = f"{mark.note} (erasure {erasure_id}" + (f", via {via}" if via else "") + ")"
            conn.execute(
                "INSERT INTO events (at, actor, action, name, alias, from_version, to_version, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (at, who, ACTION, name, None, None, int(version), why + (f": {reason}" if reason else "")),
            )
            made.append(mark)
    return made


def erasure_marks(ref: str, registry: str | Path | None = None) -> list[ErasureMark]:
    """The marks of one registered version, oldest first ([] for an unmarked or unregistered one)."""
    reg = Registry(registry)
    version = reg.resolve(ref)
    if not version.registered:
        return []
    db = Database.open(reg.url, REGISTRY)
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT {_MARK_COLUMNS} FROM erasure_marks WHERE name = ? AND version = ? ORDER BY at, erasure_id",
            (version.name, version.version),
        ).fetchall()
    return [ErasureMark(**dict(zip(_MARK_COLUMNS.split(", "), row))) for row in rows]


def erased_data_note(ref: str, registry: str | Path | None = None) -> str | None:
    """"trained on erased data since <date of the first mark>", or None: the line for
    `cvml models show`."""
    marks = erasure_marks(ref, registry)
    return marks[0].note if marks else None


def _descendants(reg: Registry, ref: str) -> list[tuple[str, str]]:
    """(child ref, parent ref) for every version derived from `ref`, depth first."""
    out: list[tuple[str, str]] = []

    def walk(nodes, parent: str) -> None:
        for node in nodes:
            out.append((node.model.ref, parent))
            walk(node.children, node.model.ref)

    walk(reg.lineage(ref).descendants, ref)
    return out


def _empty(reg: Registry) -> bool:
    """A SQLite registry that does not exist yet holds nothing (and is not created here)."""
    return reg.url.backend == "sqlite" and not Path(reg.url.sqlite_path).exists()
