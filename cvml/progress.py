"""How libraries report progress: a callback, never a bar.

An area's entry point takes `on_progress: OnProgress | None`; it reports one `Progress` per
step of a named phase ("train", "quality", "calibrate" ...). The CLI turns those into bars
(`cvml/cli/_progress.py`); tests and `--json` runs pass nothing and pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`done` of `total` (None: unknown) in `phase`; `info` is a short status line."""

    phase: str
    done: int
    total: int | None = None
    info: str = ""


OnProgress = Callable[[Progress], None]


class Phase:
    """A counter for one phase that reports each change to `on_progress` (a no-op without one)."""

    def __init__(self, on_progress: OnProgress | None, phase: str, total: int | None = None, done: int = 0):
        self.on_progress, self.phase, self.total, self.done = on_progress, phase, total, done
        self._report("")

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        self._report(info)

    def update(self, done: int, total: int | None = None, info: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._report(info)

    def finish(self) -> None:
        """Mark the phase complete (its total may have been an estimate)."""
        if self.total is None or self.done != self.total:
            self.total = self.done = max(self.done, self.total or 0)
            self._report("")

    def _report(self, info: str) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(self.phase, self.done, self.total, info))


class Stages:
    """Phases that run one after another: starting one marks the previous one complete."""

    def __init__(self, on_progress: OnProgress | None):
        self.on_progress = on_progress
        self.current: Phase | None = None

    def start(self, phase: str, total: int | None = None) -> Phase:
        self.finish()
        self.current = Phase(self.on_progress, phase, total)
        return self.current

    def finish(self) -> None:
        if self.current is not None:
            self.current.finish()
            self.current = None
