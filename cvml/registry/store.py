"""The model registry: numbered versions per name, alias stacks, lineage and an audit log.

Every read-then-write (the next version number, the top of an alias stack) runs inside one
write transaction (`cvml.storage`: `BEGIN IMMEDIATE` on SQLite, an advisory lock on
Postgres), so concurrent processes never duplicate or skip a version and never interleave
alias changes.
"""

from __future__ import annotations

import getpass
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from cvml.errors import RegistryError
from cvml.manifest import sha256_tree
from cvml.paths import cvml_home
from cvml.registry.db import REGISTRY
from cvml.registry.integrity import model_sha256
from cvml.storage import Database, storage_url, utc_now
from cvml.storage.database import Tx
from cvml.registry.records import KINDS, DatasetRef, Event, Lineage, LineageNode, ModelVersion
from cvml.registry.refs import Ref, check_alias, check_name, did_you_mean, parse_ref

_COLUMNS = "name, version, kind, path, created_at, actor, parent_name, parent_version, metadata, sha256"
# The same columns qualified, for the joins in the recursive lineage queries.
_M_COLUMNS = ", ".join(f"m.{column}" for column in _COLUMNS.split(", "))
_EVENT_COLUMNS = "id, at, actor, action, name, alias, from_version, to_version, reason"


def default_registry_path() -> Path:
    """`$CVML_HOME/registry.db` (CVML_HOME defaults to ~/.cvml)."""
    return cvml_home() / "registry.db"


class Registry:
    """A model registry in a SQLite file or a Postgres database.

    Each call runs its own short transaction, so one Registry can be shared across threads
    and many processes (replicas, CI, the training box) can use the same database at once.

    Args:
        location: a database URL (postgresql://…, sqlite:///…), a SQLite file, or a folder
            holding `registry.db`; None means CVML_DB_URL, else `default_registry_path()`.
    """

    def __init__(self, location: str | Path | None = None):
        self.url = storage_url(location, default_file=default_registry_path())
        self.path = self.url.where

    @cached_property
    def _db(self) -> Database:
        return Database.open(self.url, REGISTRY)

    # ----------------------------------------------------------------------------- writes

    def register(
        self,
        path: str | Path,
        name: str,
        kind: str,
        parent: str | None = None,
        datasets: Iterable[DatasetRef | Mapping[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> ModelVersion:
        """Record the model at `path` as the next version of `name`, with its content hash.

        A version is its content: `model_sha256(path)` is stored and checked whenever the
        version is loaded (`cvml.modelio`). A path may be registered again only with the
        same content; once its files changed, the versions registered there would silently
        become another model, so the new model must go to a new folder.

        Args:
            path: the model's file or folder; stored as an absolute path.
            name: the model's name; versions of one name are numbered 1, 2, 3, ...
            kind: one of `KINDS` ("base", "finetune", "merged", "quantized").
            parent: a reference to the registered version this model was made from
                (the base of a fine-tune, the fine-tune of a quantized model).
            datasets: `{"path", "sha256", "role"}` mappings or DatasetRefs; a missing
                sha256 is computed from the path, which then must exist.
            metadata: JSON-serializable facts (metrics, recipe name, manifest path, ...).
            actor: who registers; default $CVML_ACTOR, else the login name.
            reason: recorded on the "register" audit event.

        Returns:
            The new version, numbered under the write lock.

        Raises:
            RegistryError: bad name or kind, missing path, unknown or unregistered parent,
                unusable dataset entry, metadata that is not JSON, or a path already
                registered whose content has changed since.
        """
        check_name(name)
        if kind not in KINDS:
            raise RegistryError(f"unknown model kind {kind!r}", hint=did_you_mean(kind, list(KINDS), "kinds"))
        model_path = Path(path).expanduser().resolve()
        if not model_path.exists():
            raise RegistryError(
                f"cannot register {path}: no such file or folder",
                hint="give the folder a model was saved to (e.g. runs/<run>/final)",
            )
        # Hash the model and datasets before taking the write lock: hashing can take a while.
        digest = model_sha256(model_path)
        dataset_refs = [_dataset_ref(item) for item in datasets or ()]
        meta_json = _to_json(metadata or {})
        who = current_actor(actor)
        with self._db.write() as conn:
            parent_version = self._resolve(conn, parent) if parent else None
            if parent_version is not None and not parent_version.registered:
                raise RegistryError(
                    f"parent {parent} is not a registered model version",
                    hint=f"register it first: cvml models register {parent_version.path} --name NAME --kind base",
                )
            _refuse_changed_path(conn, model_path, digest)
            number = conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?", (name,)
            ).fetchone()[0]
            conn.execute(
                f"INSERT INTO model_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    number,
                    kind,
                    str(model_path),
                    utc_now(),
                    who,
                    parent_version.name if parent_version else None,
                    parent_version.version if parent_version else None,
                    meta_json,
                    digest,
                ),
            )
            conn.executemany(
                "INSERT INTO model_datasets (name, version, position, path, sha256, role) VALUES (?, ?, ?, ?, ?, ?)",
                [(name, number, i, d.path, d.sha256, d.role) for i, d in enumerate(dataset_refs)],
            )
            _log(conn, who, "register", name, None, None, number, reason)
            return _get(conn, name, number)

    def promote(self, ref: str, alias: str, actor: str | None = None, reason: str | None = None) -> Event | None:
        """Point `alias` of the referenced version's name at that version (push on its stack).

        Args:
            ref: the version to promote (`name@3`, `name@canary`, `name`, a registered path).
            alias: e.g. "prod" or "canary".
            actor: who promotes; default $CVML_ACTOR, else the login name.
            reason: recorded on the audit event.

        Returns:
            The "promote" event, or None when the alias already points at that version
            (nothing is pushed, so a later rollback still goes to the previous holder).

        Raises:
            RegistryError: invalid alias, unknown reference, or an unregistered path.
        """
        check_alias(alias)
        who = current_actor(actor)
        with self._db.write() as conn:
            target = self._resolve(conn, ref)
            if not target.registered:
                raise RegistryError(
                    f"{ref} is not a registered model version",
                    hint=f"register it first: cvml models register {target.path} --name NAME",
                )
            stack = _stack(conn, target.name, alias)
            if stack and stack[-1] == target.version:
                return None
            conn.execute(
                "INSERT INTO alias_stack (name, alias, depth, version) VALUES (?, ?, ?, ?)",
                (target.name, alias, len(stack) + 1, target.version),
            )
            return _log(conn, who, "promote", target.name, alias, stack[-1] if stack else None, target.version, reason)

    def rollback(self, name: str, alias: str, actor: str | None = None, reason: str | None = None) -> Event:
        """Move `alias` back to the version it pointed at before its latest promotion (pop).

        Promote v1, v2, v3 then rollback → v2, rollback → v1, rollback → error.

        Args:
            name: the model name (not a version reference).
            alias: the alias to move back.
            actor: who rolls back; default $CVML_ACTOR, else the login name.
            reason: recorded on the audit event.

        Returns:
            The "rollback" event (from the popped version to the new holder).

        Raises:
            RegistryError: unknown name or alias, or the alias is at the bottom of its stack.
        """
        check_name(name)
        who = current_actor(actor)
        with self._db.write() as conn:
            self._require_name(conn, name)
            stack = _stack(conn, name, alias)
            if not stack:
                raise _unknown_alias(conn, name, alias)
            if len(stack) == 1:
                raise RegistryError(
                    f"nothing to roll back to: {name}@{alias} is at v{stack[0]}, the first version it held",
                    hint=f"promote another version instead: cvml models promote {name}@N --alias {alias}",
                )
            conn.execute(
                "DELETE FROM alias_stack WHERE name = ? AND alias = ? AND depth = ?", (name, alias, len(stack))
            )
            return _log(conn, who, "rollback", name, alias, stack[-1], stack[-2], reason)

    def record_event(
        self, ref: str, action: str, reason: str, actor: str | None = None, alias: str | None = None
    ) -> Event:
        """Add an audit event about a registered version that changes nothing else, e.g.
        `cvml monitor`'s "retrain_recommended" with its evidence (JSON) as the reason.

        Raises:
            RegistryError: the reference is unknown or not a registered version, or the
                action is one the registry writes itself.
        """
        if action in ("register", "promote", "rollback") or not action.replace("_", "").isalnum():
            raise RegistryError(f"{action!r} cannot be recorded as an event", hint="use a new lower_case action name")
        who = current_actor(actor)
        with self._db.write() as conn:
            target = self._resolve(conn, ref)
            if not target.registered:
                raise RegistryError(f"{ref} is not a registered model version", hint="events are about registered versions")
            return _log(conn, who, action, target.name, alias, None, target.version, reason)

    # ------------------------------------------------------------------------------ reads

    def resolve(self, ref: str | Path) -> ModelVersion:
        """Turn a reference into a model version.

        Forms: `name` or `name@latest` (newest), `name@3` / `name@v3`, `name@alias`, or a
        path. A reference whose name is registered is looked up in the registry even if a
        folder of that name exists; anything else that exists on disk resolves as a path:
        to the newest version registered at that path, else to an unregistered
        ModelVersion (`registered` False, `version` None; see ModelVersion).

        Raises:
            RegistryError: unknown name (with "did you mean" and the names), version or
                alias (with the name's aliases), and no such path either.
        """
        with self._db.read() as conn:
            return self._resolve(conn, str(ref))

    def names(self) -> list[str]:
        """Every registered model name, sorted."""
        with self._db.read() as conn:
            return _names(conn)

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """All versions of `name` (or of every name), ordered by name then version.

        Raises:
            RegistryError: `name` is not registered (with "did you mean").
        """
        with self._db.read() as conn:
            if name is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM model_versions ORDER BY name, version").fetchall()
            else:
                self._require_name(conn, name)
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? ORDER BY version", (name,)
                ).fetchall()
            return _hydrate(conn, rows)

    def alias_stack(self, name: str, alias: str) -> list[int]:
        """The versions `alias` has been promoted to and not rolled back from, oldest first.

        The last entry is the current holder; a rollback would move the alias to the one
        before it. Empty when the alias does not exist.
        """
        with self._db.read() as conn:
            return _stack(conn, name, alias)

    def registered_under(self, folder: str | Path) -> list[ModelVersion]:
        """The versions registered at `folder` or at a path inside it, by name and version.

        Writers ask before replacing a folder (`cvml finetune --overwrite`, `cvml quantize
        --overwrite`): a registered version's files are never rewritten. A SQLite registry
        that does not exist yet holds nothing and is not created.
        """
        if self.url.backend == "sqlite" and not Path(self.url.sqlite_path).exists():
            return []
        root = Path(folder).expanduser().resolve()
        prefix = str(root).rstrip(os.sep) + os.sep
        pattern = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM model_versions WHERE path = ? OR path LIKE ? ESCAPE '!' ORDER BY name, version",
                (str(root), pattern),
            ).fetchall()
            # SQLite's LIKE ignores ASCII case: keep only the paths really inside.
            inside = [row for row in rows if row["path"] == str(root) or row["path"].startswith(prefix)]
            return _hydrate(conn, inside)

    def events(self, name: str | None = None) -> list[Event]:
        """The audit log (registrations, promotions, rollbacks, erasures, monitor recommendations), oldest first.

        Raises:
            RegistryError: `name` is not registered (with "did you mean").
        """
        with self._db.read() as conn:
            if name is None:
                rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY id").fetchall()
            else:
                self._require_name(conn, name)
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE name = ? ORDER BY id", (name,)
                ).fetchall()
            return [Event(**dict(row)) for row in rows]

    def lineage(self, ref: str) -> Lineage:
        """Where a version came from and what was derived from it.

        Returns:
            `ancestors`: the parent chain, parent first and root last, each with its
            datasets; `descendants`: every version whose parent chain includes this one,
            as a tree of LineageNodes.

        Raises:
            RegistryError: the reference is unknown or not a registered version.
        """
        with self._db.read() as conn:
            model = self._resolve(conn, ref)
            if not model.registered:
                raise RegistryError(
                    f"{ref} is not a registered model version, so it has no lineage",
                    hint=f"register it: cvml models register {model.path} --name NAME --parent REF",
                )
            # A parent must exist before its child is registered and never changes, so
            # the parent graph has no cycles and these recursive queries terminate.
            ancestors = conn.execute(
                f"""WITH RECURSIVE chain (name, version, depth) AS (
                        SELECT parent_name, parent_version, 1 FROM model_versions
                        WHERE name = ? AND version = ? AND parent_name IS NOT NULL
                    UNION ALL
                        SELECT m.parent_name, m.parent_version, c.depth + 1
                        FROM model_versions m JOIN chain c ON m.name = c.name AND m.version = c.version
                        WHERE m.parent_name IS NOT NULL
                    )
                    SELECT {_M_COLUMNS} FROM chain c
                    JOIN model_versions m ON m.name = c.name AND m.version = c.version
                    ORDER BY c.depth""",
                (model.name, model.version),
            ).fetchall()
            descendants = conn.execute(
                f"""WITH RECURSIVE tree (name, version) AS (
                        SELECT name, version FROM model_versions WHERE parent_name = ? AND parent_version = ?
                    UNION ALL
                        SELECT m.name, m.version
                        FROM model_versions m JOIN tree t ON m.parent_name = t.name AND m.parent_version = t.version
                    )
                    SELECT {_M_COLUMNS} FROM tree t
                    JOIN model_versions m ON m.name = t.name AND m.version = t.version
                    ORDER BY m.name, m.version""",
                (model.name, model.version),
            ).fetchall()
            children: dict[str, list[ModelVersion]] = defaultdict(list)
            for version in _hydrate(conn, descendants):
                children[version.parent].append(version)
            return Lineage(model, tuple(_hydrate(conn, ancestors)), _subtree(model.ref, children))

    # ---------------------------------------------------------------------------- helpers

    def _resolve(self, conn: Tx, ref: str) -> ModelVersion:
        parsed = parse_ref(ref)
        if parsed is not None and _has_name(conn, parsed.name):
            return _resolve_ref(conn, parsed)
        local = Path(ref).expanduser()
        if local.exists():
            return _resolve_path(conn, local.resolve())
        if parsed is None:
            raise RegistryError(
                f"{ref!r} is neither a model reference nor an existing path",
                hint="use NAME, NAME@3, NAME@v3, NAME@ALIAS, or the path of a model folder",
            )
        raise self._unknown_name(conn, parsed.name)

    def _require_name(self, conn: Tx, name: str) -> None:
        if not _has_name(conn, name):
            raise self._unknown_name(conn, name)

    def _unknown_name(self, conn: Tx, name: str) -> RegistryError:
        return RegistryError(
            f"no model named {name!r} in the registry at {self.path}",
            hint=did_you_mean(name, _names(conn), "registered models"),
        )


def _resolve_ref(conn: Tx, ref: Ref) -> ModelVersion:
    if ref.alias is not None:
        stack = _stack(conn, ref.name, ref.alias)
        if not stack:
            raise _unknown_alias(conn, ref.name, ref.alias)
        return _get(conn, ref.name, stack[-1])
    latest = conn.execute("SELECT MAX(version) FROM model_versions WHERE name = ?", (ref.name,)).fetchone()[0]
    if ref.version is None:
        return _get(conn, ref.name, latest)
    if not 1 <= ref.version <= latest:
        raise RegistryError(
            f"{ref.name} has no version {ref.version}",
            hint=f"{ref.name} has versions 1 to {latest}; the latest is {ref.name}@{latest}",
        )
    return _get(conn, ref.name, ref.version)


def _get(conn: Tx, name: str, version: int) -> ModelVersion:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM model_versions WHERE name = ? AND version = ?", (name, version)
    ).fetchall()
    return _hydrate(conn, rows)[0]


def _names(conn: Tx) -> list[str]:
    return [row[0] for row in conn.execute("SELECT DISTINCT name FROM model_versions ORDER BY name")]


def _has_name(conn: Tx, name: str) -> bool:
    return conn.execute("SELECT 1 FROM model_versions WHERE name = ?", (name,)).fetchone() is not None


def _stack(conn: Tx, name: str, alias: str) -> list[int]:
    rows = conn.execute(
        "SELECT version FROM alias_stack WHERE name = ? AND alias = ? ORDER BY depth", (name, alias)
    ).fetchall()
    return [row[0] for row in rows]


def _current_aliases(conn: Tx, name: str) -> dict[str, int]:
    rows = conn.execute(
        """SELECT s.alias, s.version FROM alias_stack s
           WHERE s.name = ? AND s.depth = (
               SELECT MAX(t.depth) FROM alias_stack t WHERE t.name = s.name AND t.alias = s.alias)
           ORDER BY s.alias""",
        (name,),
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def _unknown_alias(conn: Tx, name: str, alias: str) -> RegistryError:
    return RegistryError(
        f"{name} has no alias {alias!r}",
        hint=did_you_mean(alias, list(_current_aliases(conn, name)), f"aliases of {name}"),
    )


def _resolve_path(conn: Tx, path: Path) -> ModelVersion:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM model_versions WHERE path = ? ORDER BY created_at DESC, name, version DESC",
        (str(path),),
    ).fetchall()
    if rows:
        return _hydrate(conn, rows[:1])[0]
    return ModelVersion(name=path.name, version=None, kind=None, path=str(path))


def _refuse_changed_path(conn: Tx, path: Path, digest: str) -> None:
    """Two versions never share a folder whose content changed: the earlier one would
    silently become the new model. Versions registered before hashes (NULL) cannot be
    compared and do not block."""
    rows = conn.execute(
        "SELECT name, version, sha256 FROM model_versions WHERE path = ? ORDER BY name, version", (str(path),)
    ).fetchall()
    changed = [f"{row['name']}@{row['version']}" for row in rows if row["sha256"] and row["sha256"] != digest]
    if changed:
        raise RegistryError(
            f"{path} is registered as {', '.join(changed)} and its content has changed since: "
            "registering it again would make those versions this new model",
            hint="save the new model to a new folder and register that (cvml finetune/quantize --overwrite "
            f"do so themselves); to keep {changed[-1]} loadable, put its files back",
        )


def _hydrate(conn: Tx, rows: list) -> list[ModelVersion]:
    """Build ModelVersions from model_versions rows, with their datasets and current aliases."""
    names = sorted({row["name"] for row in rows})
    datasets: dict[tuple[str, int], list[DatasetRef]] = defaultdict(list)
    aliases: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name in names:
        for d in conn.execute(
            "SELECT version, path, sha256, role FROM model_datasets WHERE name = ? ORDER BY version, position", (name,)
        ):
            datasets[name, d["version"]].append(DatasetRef(d["path"], d["sha256"], d["role"]))
        for alias, version in _current_aliases(conn, name).items():
            aliases[name, version].append(alias)
    return [
        ModelVersion(
            name=row["name"],
            version=row["version"],
            kind=row["kind"],
            path=row["path"],
            created_at=row["created_at"],
            actor=row["actor"],
            parent=f"{row['parent_name']}@{row['parent_version']}" if row["parent_name"] else None,
            datasets=tuple(datasets[row["name"], row["version"]]),
            metadata=json.loads(row["metadata"]),
            aliases=tuple(aliases[row["name"], row["version"]]),
            sha256=row["sha256"],
        )
        for row in rows
    ]


def _subtree(ref: str, children: dict[str, list[ModelVersion]]) -> tuple[LineageNode, ...]:
    return tuple(LineageNode(child, _subtree(child.ref, children)) for child in children.get(ref, []))


def _log(
    conn: Tx,
    actor: str,
    action: str,
    name: str,
    alias: str | None,
    from_version: int | None,
    to_version: int | None,
    reason: str | None,
) -> Event:
    at = utc_now()
    event_id = conn.execute(
        "INSERT INTO events (at, actor, action, name, alias, from_version, to_version, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (at, actor, action, name, alias, from_version, to_version, reason),
    ).scalar()
    return Event(event_id, at, actor, action, name, alias, from_version, to_version, reason)


def current_actor(actor: str | None) -> str:
    """Who does it, for audit rows: the given name, $CVML_ACTOR, or the login name."""
    if actor:
        return actor
    if os.environ.get("CVML_ACTOR"):
        return os.environ["CVML_ACTOR"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _dataset_ref(item: DatasetRef | Mapping[str, Any]) -> DatasetRef:
    if not isinstance(item, DatasetRef):
        try:
            item = DatasetRef(**{"sha256": None, **item})
        except TypeError as exc:
            raise RegistryError(
                f"bad dataset entry {dict(item)!r}: {exc}",
                hint='give each dataset as {"path": ..., "sha256": ... (optional), "role": ... (optional)}',
            ) from exc
    path = Path(item.path).expanduser().resolve()
    if item.sha256:
        return DatasetRef(str(path), item.sha256, item.role)
    if not path.exists():
        raise RegistryError(
            f"dataset {item.path} does not exist, so its sha256 cannot be computed",
            hint="give the dataset's sha256, or a path that exists here",
        )
    return DatasetRef(str(path), sha256_tree(path), item.role)


def _to_json(metadata: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RegistryError(
            f"model metadata is not JSON-serializable: {exc}",
            hint="use strings, numbers, booleans, lists and dicts (convert paths with str())",
        ) from exc
