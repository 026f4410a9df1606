"""The models a server holds: one per A/B variant, swapped atomically on reload.

A request picks its `ServedModel` and takes a lease on it in the same event-loop step, so
a reload that swaps the variant's model in between is impossible: a request either runs
wholly on the old version or wholly on the new one. A replaced model is retired, not
stopped: it is released once its last lease ends (or the drain timeout passes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread

from cvml.errors import CvmlError
from cvml.modelio import ModelRef, resolve_model
from cvml.serve.router import Router
from cvml.variants import Variant

_log = logging.getLogger("cvml.serve")
_POLL_S = 0.05


@dataclass(eq=False)  # identity: the pool keeps retiring models in a set
class ServedModel:
    """One loaded version of one variant: what generates, and what responses report about it.

    Attributes:
        engine: has the engine contract of `cvml.serve.types` (`submit`, `num_running`, ...).
        release: stops the engine and frees the model (and any process behind it).
        active: requests holding a lease (HTTP requests that use this model now).
    """

    variant: str
    model_ref: ModelRef
    tokenizer: Any
    engine: Any
    context_length: int
    release: Callable[[], None]
    load_s: float = 0.0
    active: int = 0
    loaded_at: float = field(default_factory=time.time)

    @property
    def served_ref(self) -> str:
        """`name@N` for a registered version, else the folder (what metrics and logs name)."""
        return self.model_ref.ref

    @property
    def public_ref(self) -> str:
        """What clients are shown: `name@N` for a registered version, else the folder's name
        (never its path)."""
        return self.model_ref.ref if self.model_ref.version is not None else self.model_ref.name

    def same_version(self, other: ModelRef) -> bool:
        return (other.path, other.version) == (self.model_ref.path, self.model_ref.version)


# Loads a model version and starts its engine; runs in a worker thread.
Opener = Callable[[str, ModelRef], ServedModel]


@dataclass(frozen=True)
class ReloadOutcome:
    variant: str
    outcome: str  # "swapped" | "unchanged" | "failed"
    previous: str | None
    current: str | None
    load_s: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "outcome": self.outcome, "previous": self.previous, "current": self.current,
            "load_s": None if self.load_s is None else round(self.load_s, 3), "error": self.error,
        }


class UnknownModelError(CvmlError):
    """A request names a model id the server does not serve (HTTP 404)."""


class ModelPool:
    """Every variant's current model, the A/B router in front of them, and reloads.

    Args:
        variants: the arms (a single one for a plain `cvml serve REF`).
        opener: loads a resolved version for a variant and starts its engine.
        resolver: turns a variant's reference into a version (the registry by default).
        experiment: the A/B experiment name (salt of the sticky user hash).
        drain_timeout_s: how long a retired model may finish its requests before it is stopped.
    """

    def __init__(
        self,
        variants: Sequence[Variant],
        opener: Opener,
        *,
        resolver: Callable[[str], ModelRef] = resolve_model,
        experiment: str = "default",
        drain_timeout_s: float = 30.0,
    ):
        self.router = Router(variants, experiment=experiment)
        self.variants = {v.name: v for v in self.router.variants}
        self.experiment = experiment
        self._opener = opener
        self._resolver = resolver
        self.drain_timeout_s = drain_timeout_s
        self.current: dict[str, ServedModel] = {}
        self.phase = "loading"  # loading | ready | draining | failed
        self._retiring: set[ServedModel] = set()
        self._retire_tasks: set[asyncio.Task] = set()
        self._reload_lock: asyncio.Lock | None = None
        self.watch_errors = 0  # registry-watch polls that failed unexpectedly (the watch goes on)
        self.last_watch_error: str | None = None

    # ------------------------------------------------------------------------ lifecycle

    def resolve_all(self) -> dict[str, ModelRef]:
        """Resolve every variant's reference (fast: registry and folder checks, no loading).

        Raises:
            RegistryError, ModelError: a reference names no model.
        """
        return {name: self._resolver(v.ref) for name, v in self.variants.items()}

    async def load(self, refs: dict[str, ModelRef] | None = None) -> None:
        """Load every variant (one at a time, off the event loop) and become ready.

        Raises:
            CvmlError: a model cannot be loaded; the pool is then `failed`.
        """
        try:
            refs = refs or await to_thread.run_sync(self.resolve_all)
            for name, ref in refs.items():
                served = await to_thread.run_sync(self._opener, name, ref)
                self.current[name] = served
                _log.info("variant %s serves %s (loaded in %.2f s)", name, served.served_ref, served.load_s)
        except BaseException:
            self.phase = "failed"
            raise
        if self.phase == "loading":
            self.phase = "ready"

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    async def close(self) -> None:
        """Stop every engine, current and retiring (generations still running end with an error)."""
        for task in list(self._retire_tasks):
            task.cancel()
        doomed = list(self.current.values()) + list(self._retiring)
        self.current.clear()
        self._retiring.clear()
        for served in doomed:
            await to_thread.run_sync(_release, served)

    # ------------------------------------------------------------------------- requests

    def pick(self, model_id: str | None, user_id: str | None) -> ServedModel:
        """The model that serves a request, by the `model` it names and the user's A/B arm.

        A model id that pins one variant (see `model_ids`) wins; an id shared by several
        variants, or none, goes through the sticky split.

        Raises:
            UnknownModelError: the id names no served model.
        """
        if model_id:
            matches = self._variants_for(model_id)
            if not matches:
                known = ", ".join(sorted(self.model_ids()))  # public ids only: no folder paths
                raise UnknownModelError(
                    f"the model {model_id!r} does not exist on this server", hint=f"served ids: {known}"
                )
            if len(matches) == 1:
                return self.current[matches[0]]
        return self.current[self.router.assign(user_id).name]

    def model_ids(self) -> dict[str, str | None]:
        """Every shown `model` id → the variant it pins, or None when routed by the split.

        Ids are: each variant's name, the reference it was given (`cv@prod`), the version it
        serves now (`cv@3`), and the model's registry name (`cv`) or, for an unregistered
        folder, the folder's name. A reference that is a path is accepted but never shown.
        """
        ids: dict[str, set[str]] = {}
        for name in self.variants:
            for model_id in self._ids_of(name):
                if _is_public(model_id):
                    ids.setdefault(model_id, set()).add(name)
        return {model_id: next(iter(v)) if len(v) == 1 else None for model_id, v in ids.items()}

    def _variants_for(self, model_id: str) -> list[str]:
        return [name for name in self.variants if model_id in self._ids_of(name)]

    def _ids_of(self, name: str) -> set[str]:
        ids = {name, self.variants[name].ref}
        served = self.current.get(name)
        if served is not None:
            ids |= {served.served_ref, served.public_ref, served.model_ref.name}
        return ids

    @staticmethod
    def acquire(served: ServedModel) -> None:
        """Take a lease (call in the same event-loop step as `pick`)."""
        served.active += 1

    @staticmethod
    def release(served: ServedModel) -> None:
        served.active -= 1

    def engine_load(self) -> list[tuple[str, str, int, int]]:
        """(variant, model, running, waiting) of every engine, retiring ones included."""
        return [
            (s.variant, s.public_ref, int(s.engine.num_running), int(s.engine.num_waiting))
            for s in [*self.current.values(), *self._retiring]
        ]

    # -------------------------------------------------------------------------- reload

    async def reload(self) -> list[ReloadOutcome]:
        """Re-resolve every variant's reference; load and swap in each version that changed.

        Loading happens in a worker thread while the old version keeps serving; the swap is
        one assignment on the event loop. Both versions are in memory until the old one's
        last request ends. Reloads never overlap (a second one waits). A variant whose
        reference fails to resolve or load keeps its current model.
        """
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            return [await self._reload_variant(name) for name in self.variants]

    async def _reload_variant(self, name: str) -> ReloadOutcome:
        old = self.current[name]
        try:
            ref = await to_thread.run_sync(self._resolver, self.variants[name].ref)
            if old.same_version(ref):
                return ReloadOutcome(name, "unchanged", old.served_ref, old.served_ref)
            new = await to_thread.run_sync(self._opener, name, ref)
        except CvmlError as exc:
            _log.error("reload of variant %s failed, it keeps serving %s: %s", name, old.served_ref, exc)
            return ReloadOutcome(name, "failed", old.served_ref, old.served_ref, error=str(exc))
        except Exception as exc:  # a loader bug or a broken store must not stop the other variants
            _log.exception("reload of variant %s failed unexpectedly, it keeps serving %s", name, old.served_ref)
            error = f"{type(exc).__name__}: {exc}"
            return ReloadOutcome(name, "failed", old.served_ref, old.served_ref, error=error)
        if self.phase in ("draining", "failed") or self.current.get(name) is not old:
            await to_thread.run_sync(_release, new)
            return ReloadOutcome(name, "failed", old.served_ref, old.served_ref, error="the server is shutting down")
        self.current[name] = new
        self._retire(old)
        _log.info("variant %s swapped %s -> %s (loaded in %.2f s)", name, old.served_ref, new.served_ref, new.load_s)
        return ReloadOutcome(name, "swapped", old.served_ref, new.served_ref, load_s=new.load_s)

    def _retire(self, served: ServedModel) -> None:
        self._retiring.add(served)
        task = asyncio.get_running_loop().create_task(self._release_when_idle(served))
        self._retire_tasks.add(task)
        task.add_done_callback(self._retire_tasks.discard)

    async def _release_when_idle(self, served: ServedModel) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while served.active > 0 and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        if served.active > 0:
            _log.warning("retired %s still had %d request(s) after the drain timeout", served.served_ref, served.active)
        self._retiring.discard(served)
        await to_thread.run_sync(_release, served)

    async def watch(self, interval_s: float, on_reload: Callable[[list[ReloadOutcome]], None]) -> None:
        """Poll the registry every `interval_s` and reload what changed (until cancelled).

        A poll that fails, for one variant or in any other way, is logged and counted
        (`watch_errors`, `last_watch_error`) and the next interval tries again: the watch
        never stops on its own.
        """
        while True:
            await asyncio.sleep(interval_s)
            if self.phase != "ready":
                continue
            try:
                outcomes = await self.reload()
                failed = [f"{o.variant}: {o.error}" for o in outcomes if o.outcome == "failed"]
                if failed:
                    self._watch_failed("; ".join(failed))
                on_reload(outcomes)
            except Exception as exc:
                _log.exception("registry watch: the poll failed (retrying in %g s)", interval_s)
                self._watch_failed(f"{type(exc).__name__}: {exc}")

    def _watch_failed(self, error: str) -> None:
        self.watch_errors += 1
        self.last_watch_error = error


def _is_public(model_id: str) -> bool:
    """A model id fit to show: a variant name, registry reference or folder name, not a path."""
    return not any(sep in model_id for sep in ("/", "\\")) and not model_id.startswith("~")


def _release(served: ServedModel) -> None:
    try:
        served.release()
    except Exception:  # a failing release must not stop the others from being released
        _log.exception("releasing %s failed", served.served_ref)
