"""The registry's value objects: model versions, datasets, audit events, lineage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The kinds of model the lifecycle produces; `register` refuses anything else (typos included).
KINDS = ("base", "finetune", "merged", "quantized", "exported")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a model version was made from. `role` says how it was used (train, eval, ...)."""

    path: str
    sha256: str | None
    role: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a named model, or an unregistered local folder.

    `resolve()` returns an unregistered ModelVersion for an existing path that no version
    points at: `version`, `kind`, `created_at` and `actor` are None, `name` is the folder's
    name, and `registered` is False. Callers that only need `path` (serve, bench) can treat
    both the same way; callers that need lineage check `registered`.
    """

    name: str
    version: int | None
    kind: str | None
    path: str
    created_at: str | None = None
    actor: str | None = None
    parent: str | None = None  # "name@N" of the version this one was made from
    datasets: tuple[DatasetRef, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # aliases that currently point at this version
    # The content hash recorded at registration (`cvml.registry.integrity.model_sha256`);
    # None for versions registered before cvml kept one (unverified) and unregistered folders.
    sha256: str | None = None

    @property
    def registered(self) -> bool:
        return self.version is not None

    @property
    def ref(self) -> str:
        """`name@N` for a registered version, the path otherwise."""
        return f"{self.name}@{self.version}" if self.registered else self.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "actor": self.actor,
            "parent": self.parent,
            "datasets": [d.to_dict() for d in self.datasets],
            "metadata": self.metadata,
            "aliases": list(self.aliases),
            "registered": self.registered,
        }


@dataclass(frozen=True)
class Event:
    """One audit row: a registration, a promotion or a rollback."""

    id: int
    at: str
    actor: str
    action: str  # "register" | "promote" | "rollback" | "erasure" | "retrain_recommended" (cvml monitor)
    name: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LineageNode:
    """A model version and the versions derived from it."""

    model: ModelVersion
    children: tuple[LineageNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "children": [c.to_dict() for c in self.children]}


@dataclass(frozen=True)
class Lineage:
    """Where a version came from (`ancestors`, parent first) and what was made from it."""

    model: ModelVersion
    ancestors: tuple[ModelVersion, ...]
    descendants: tuple[LineageNode, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "ancestors": [a.to_dict() for a in self.ancestors],
            "descendants": [d.to_dict() for d in self.descendants],
        }
