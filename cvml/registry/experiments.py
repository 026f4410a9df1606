"""Online experiments: the record `cvml abtest start` writes and `cvml serve` routes by.

The table lives in the registry database, beside the versions and aliases an experiment
compares and promotes, so one file (`$CVML_HOME/registry.db`) answers "what is prod, and
what is it being tested against". It uses the registry's connection helpers (WAL, busy
timeout, `BEGIN IMMEDIATE` writes); the registry's migration 2 creates the table.

    exp = load_experiment("rewrite-v4")
    exp.variants        # [Variant("a", "cv@prod", 90.0), Variant("b", "cv@canary", 10.0)]

An experiment name is used once: the request log keys rows by it, so a second run under
the same name would mix its traffic with the first one's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from cvml.errors import CvmlError
from cvml.registry.refs import did_you_mean
from cvml.registry.store import Registry, current_actor
from cvml.storage import utc_now
from cvml.storage.database import Tx
from cvml.variants import Variant, parse_variants

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUNNING = "running"
STOPPED = "stopped"
_COLUMNS = "name, a_ref, b_ref, a_version, b_version, split, status, started_at, stopped_at, actor, decision"
class ExperimentError(CvmlError):
    """An experiment is unknown, already exists, or is not in the state an operation needs."""


@dataclass(frozen=True)
class Experiment:
    """An online A/B experiment between a control `a` and a candidate `b`.

    Attributes:
        a_ref, b_ref: what serve routes to (`cv@prod`, `cv@canary`, a path): aliases are
            re-resolved on `/admin/reload`, so a promotion reaches the running server.
        a_version, b_version: what those refs resolved to at start (`cv@3`), for the report.
        split: traffic percentages, "90/10".
        decision: what `stop` decided and did (verdict, action, registry event), as JSON data.
    """

    name: str
    a_ref: str
    b_ref: str
    a_version: str
    b_version: str
    split: str
    status: str
    started_at: str
    stopped_at: str | None
    actor: str
    decision: dict[str, Any] | None

    @property
    def variants(self) -> list[Variant]:
        """The router's variants: `a` and `b` with their refs and traffic weights."""
        return parse_variants(self.variant_specs, self.split)

    @property
    def variant_specs(self) -> list[str]:
        """The variants as `cvml serve --variant` takes them: ["a=REF", "b=REF"]."""
        return [f"a={self.a_ref}", f"b={self.b_ref}"]

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a": {"ref": self.a_ref, "version": self.a_version},
            "b": {"ref": self.b_ref, "version": self.b_version},
            "split": self.split,
            "status": self.status,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "actor": self.actor,
            "decision": self.decision,
        }


class ExperimentStore:
    """The experiments table of a registry database.

    Args:
        location: the registry database (URL, file or folder); None = CVML_DB_URL, else `$CVML_HOME/registry.db`.
    """

    def __init__(self, location: str | Path | None = None):
        self.registry = Registry(location)
        self.path = self.registry.path

    def start(self, name: str, a: str, b: str, split: str = "90/10", actor: str | None = None) -> Experiment:
        """Record a running experiment after checking that both refs resolve and the split routes.

        Raises:
            ConfigError: bad name or split (the router's rules).
            RegistryError: a ref resolves to nothing.
            ExperimentError: the name was used before.
        """
        parse_variants([f"a={a}", f"b={b}"], split)
        if not _NAME_RE.fullmatch(name):
            raise ExperimentError(
                f"invalid experiment name {name!r}",
                hint="use letters, digits, '.', '_' and '-', starting with a letter or digit (it also names a folder)",
            )
        a_version = self.registry.resolve(a).ref
        b_version = self.registry.resolve(b).ref
        with self.registry._db.write() as conn:
            row = conn.execute("SELECT status FROM experiments WHERE name = ?", (name,)).fetchone()
            if row is not None:
                raise ExperimentError(
                    f"experiment {name!r} already exists ({row['status']})",
                    hint="the request log keys traffic by experiment name; start a new one under a new name",
                )
            conn.execute(
                f"INSERT INTO experiments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, a, b, a_version, b_version, _normal_split(split), RUNNING, utc_now(), None, current_actor(actor), None),
            )
            return _get(conn, name)

    def get(self, name: str) -> Experiment:
        """The experiment called `name`.

        Raises:
            ExperimentError: unknown name (with "did you mean" and the known names).
        """
        with self.registry._db.read() as conn:
            found = conn.execute(f"SELECT {_COLUMNS} FROM experiments WHERE name = ?", (name,)).fetchone()
            if found is None:
                raise ExperimentError(
                    f"no experiment named {name!r} in {self.path}",
                    hint=did_you_mean(name, _names(conn), "experiments") + " (start one with `cvml abtest start`)",
                )
            return _hydrate(found)

    def list(self) -> list[Experiment]:
        """Every experiment, newest first."""
        with self.registry._db.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM experiments ORDER BY started_at DESC").fetchall()
            return [_hydrate(row) for row in rows]

    def stop(self, name: str, decision: dict[str, Any]) -> Experiment:
        """Mark a running experiment stopped and record what was decided.

        Raises:
            ExperimentError: unknown, or already stopped.
        """
        self.get(name)
        with self.registry._db.write() as conn:
            updated = conn.execute(
                "UPDATE experiments SET status = ?, stopped_at = ?, decision = ? WHERE name = ? AND status = ?",
                (STOPPED, utc_now(), json.dumps(decision, sort_keys=True, default=str), name, RUNNING),
            ).rowcount
            if not updated:
                raise ExperimentError(f"experiment {name!r} is already stopped")
            return _get(conn, name)


def load_experiment(name: str, location: str | Path | None = None) -> Experiment:
    """The experiment `cvml serve --experiment NAME` routes by (see `Experiment.variants`).

    Raises:
        ExperimentError: unknown name, or the experiment was stopped.
    """
    experiment = ExperimentStore(location).get(name)
    if experiment.status != RUNNING:
        raise ExperimentError(
            f"experiment {name!r} was stopped at {experiment.stopped_at}",
            hint="serve the promoted model directly (e.g. cvml serve cv@prod), or start a new experiment",
        )
    return experiment


def _get(conn: Tx, name: str) -> Experiment:
    return _hydrate(conn.execute(f"SELECT {_COLUMNS} FROM experiments WHERE name = ?", (name,)).fetchone())


def _hydrate(row) -> Experiment:
    values = dict(row)
    values["decision"] = json.loads(values["decision"]) if values["decision"] else None
    return Experiment(**values)


def _names(conn: Tx) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM experiments ORDER BY name")]


def _normal_split(split: str) -> str:
    """"90 / 10" → "90/10"; weights print without a trailing .0."""
    return "/".join(f"{float(part):g}" for part in split.split("/"))
