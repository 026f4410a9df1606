"""The one progress renderer: library `Progress` reports become rich bars on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cvml.cli._output import err
from cvml.progress import OnProgress, Progress


@contextmanager
def progress_bars(command: str, enabled: bool = True) -> Iterator[OnProgress | None]:
    """A callback drawing one bar per phase (`command: phase`), or None when disabled
    (`--json`, non-main processes), so the library does no reporting work at all."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bars

    bars = Bars(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=err,
    )
    tasks: dict[str, int] = {}

    def report(event: Progress) -> None:
        task = tasks.get(event.phase)
        if task is None:
            task = tasks[event.phase] = bars.add_task(f"{command}: {event.phase}", total=event.total, info="")
        bars.update(task, completed=event.done, total=event.total, **({"info": event.info} if event.info else {}))

    with bars:
        yield report
