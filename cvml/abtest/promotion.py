"""Stopping an experiment: promote B to A's alias, roll B's alias back, or let the rule choose.

- promote: B's version (as resolved when the experiment started) becomes the holder of
  A's alias (`cv@prod` → prod; `--alias` when A is not an alias ref). The registry
  records an audit event, and a server re-resolving `cv@prod` (`/admin/reload`) serves B.
- rollback: A stays; when B was an alias ref (`cv@canary`) that alias is rolled back to
  the version it held before, so the rejected candidate no longer sits behind it.
- auto: analyse the log; SHIP promotes, DON'T SHIP rolls back, INCONCLUSIVE leaves the
  experiment running and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvml.abtest.decision import DONT_SHIP, SHIP
from cvml.registry.experiments import RUNNING, Experiment, ExperimentError, ExperimentStore
from cvml.errors import ConfigError
from cvml.recipe import AbtestSpec
from cvml.registry.refs import parse_ref

ACTIONS = ("promote", "rollback", "auto")
DEFAULT_ALIAS = "prod"


@dataclass
class StopResult:
    """What stopping did: the action taken, the registry event, and the analysis behind `auto`."""

    experiment: Experiment
    action: str  # "promote" | "rollback" | "none" (auto and inconclusive)
    stopped: bool
    verdict: str | None = None
    event: dict[str, Any] | None = None
    note: str | None = None
    analysis: Any = None  # OnlineResult for auto

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.to_dict(),
            "action": self.action,
            "stopped": self.stopped,
            "verdict": self.verdict,
            "event": self.event,
            "note": self.note,
            "analysis": self.analysis.to_dict() if self.analysis is not None else None,
        }


def stop_experiment(
    name: str,
    action: str,
    alias: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    spec: AbtestSpec | None = None,
    registry: str | Path | None = None,
    log: str | Path | None = None,
) -> StopResult:
    """Stop a running experiment and act on the registry (module docstring).

    Args:
        name: the experiment.
        action: "promote", "rollback" or "auto".
        alias: the alias B is promoted to (default: A's alias, else "prod").
        reason: recorded on the audit event (default: the experiment and verdict).
        actor: who acts; default $CVML_ACTOR, else the login name.
        spec: the abtest section `auto` decides with (defaults when None).
        registry, log: database locations (default: under $CVML_HOME).

    Raises:
        ConfigError: unknown action.
        ExperimentError: unknown or already stopped experiment, or B cannot take A's alias.
        RegistryError: the registry refuses the change (e.g. B is not a registered version).
    """
    if action not in ACTIONS:
        raise ConfigError(f"unknown stop action {action!r}", hint=f"use one of: {', '.join(ACTIONS)}")
    store = ExperimentStore(registry)
    experiment = store.get(name)
    if experiment.status != RUNNING:
        raise ExperimentError(f"experiment {name!r} is already stopped", hint=f"see `cvml abtest status {name}`")
    verdict = None
    analysis = None
    if action == "auto":
        from cvml.abtest.online import analyze_experiment

        analysis = analyze_experiment(name, spec, registry=registry, log=log)
        verdict = analysis.decision.verdict
        if verdict == SHIP:
            action = "promote"
        elif verdict == DONT_SHIP:
            action = "rollback"
        else:
            note = "the decision rule is INCONCLUSIVE; the experiment keeps running and the registry is unchanged"
            return StopResult(experiment, "none", False, verdict, None, note, analysis)
    why = reason or f"abtest {name}: " + (f"{verdict}" if verdict else f"manual {action}")
    if action == "promote":
        event, note = _promote(store, experiment, alias, why, actor)
    else:
        event, note = _rollback(store, experiment, why, actor)
    record = {"action": action, "verdict": verdict, "event": event, "note": note, "reason": why}
    stopped = store.stop(name, record)
    return StopResult(stopped, action, True, verdict, event, note, analysis)


def _promote(
    store: ExperimentStore, experiment: Experiment, alias: str | None, reason: str, actor: str | None
) -> tuple[dict[str, Any] | None, str]:
    a_ref = parse_ref(experiment.a_ref)
    target_alias = alias or (a_ref.alias if a_ref and a_ref.alias else DEFAULT_ALIAS)
    b_version = store.registry.resolve(experiment.b_version)
    if a_ref is not None and a_ref.alias and b_version.registered and a_ref.name != b_version.name:
        raise ExperimentError(
            f"B ({b_version.ref}) is not a version of {a_ref.name}, so it cannot take {experiment.a_ref}",
            hint=f"register B's model as a version of {a_ref.name}, or pass --alias to promote it under its own name",
        )
    event = store.registry.promote(experiment.b_version, target_alias, actor=actor, reason=reason)
    if event is None:
        return None, f"{b_version.name}@{target_alias} already pointed at {b_version.ref}"
    return event.to_dict(), f"{b_version.name}@{target_alias} now points at {b_version.ref}"


def _rollback(
    store: ExperimentStore, experiment: Experiment, reason: str, actor: str | None
) -> tuple[dict[str, Any] | None, str]:
    b_ref = parse_ref(experiment.b_ref)
    if b_ref is None or b_ref.alias is None:
        return None, f"A stays; B ({experiment.b_ref}) is not an alias, so nothing moves in the registry"
    stack = store.registry.alias_stack(b_ref.name, b_ref.alias)
    if len(stack) < 2:
        return None, f"A stays; {experiment.b_ref} has no earlier version to roll back to, so it is left as is"
    event = store.registry.rollback(b_ref.name, b_ref.alias, actor=actor, reason=reason)
    return event.to_dict(), f"A stays; {experiment.b_ref} rolled back from v{event.from_version} to v{event.to_version}"
