"""`cvml monitor report|watch|export` — drift and quality of what the served model meets and
does, from serve's request log; alerts; production requests back into `cvml curate`.

Exit codes (report, and watch's last evaluation): 0 no drift, 1 drift or a quality alert,
2 a usage or data error (an empty window, no reference, a bad flag). Every error of these
commands exits 2, so that 1 always means "look at the model".
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cvml.cli._output import emit_json, err, out
from cvml.cli._progress import progress_bars

app = typer.Typer(
    help="Drift and quality of production requests (serve's log); alerts; the retraining trigger; export to curate.",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
_RECIPE = typer.Option(None, "--recipe", help="Recipe whose monitor section sets the rules (thresholds, bounds, ...).")
_SET = typer.Option(None, "--set", help="Override a recipe value, e.g. --set monitor.drift_share=0.3 (repeatable).")
_DB = typer.Option(
    None, "--db", show_default=False,
    help="Request log: a file, its folder or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/requests.db).",
)  # fmt: skip
_REGISTRY = typer.Option(
    None, "--registry", show_default=False,
    help="Registry: a file or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/registry.db).",
)  # fmt: skip
_MODEL = typer.Option(
    None, "--model", show_default=False,
    help="Monitor this version's requests (NAME@ALIAS, NAME@N or a folder); default: the one that served most.",
)  # fmt: skip
_REFERENCE = typer.Option(
    None, "--reference", show_default=False,
    help="training (the model's train split), previous (the window before), or START..END of the log "
    "(default: monitor.reference, training).",
)  # fmt: skip
_WINDOW = typer.Option(
    None, "--window", show_default=False,
    help="Current window: a duration up to --end (15m, 24h, 7d) or START..END (default: monitor.window, 24h).",
)  # fmt: skip
_END = typer.Option(None, "--end", show_default=False, help="End of a duration window (ISO time, UTC; default: now).")
_ENDPOINT = typer.Option(None, "--endpoint", show_default=False, help="Logged endpoint to monitor (default /v1/cv/rewrite).")
_THRESHOLDS = typer.Option(None, "--thresholds", show_default=False, help="auto, calibrated or fixed (default: auto).")
_SEED = typer.Option(None, "--seed", show_default=False, help="Seed of samples, calibration and the classifier (default: the recipe's).")


@contextmanager
def _exit_2() -> Iterator[None]:
    """Every cvml error of a monitor command exits 2: 1 is the verdict's."""
    from cvml.errors import CvmlError

    try:
        yield
    except CvmlError as exc:
        exc.exit_code = 2
        raise


@app.command()
def report(
    model: str = _MODEL,
    reference: str = _REFERENCE,
    window: str = _WINDOW,
    end: str = _END,
    endpoint: str = _ENDPOINT,
    thresholds: str = _THRESHOLDS,
    out_dir: Path = typer.Option(None, "--out", show_default=False, help="Report folder (default: monitor.output, monitor/{name})."),
    record_event: bool = typer.Option(
        False, "--record-event", help="On input drift, record retrain_recommended in the registry's audit events."
    ),
    seed: int = _SEED,
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    db: str = _DB,
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Compare a window of production with a reference: drift per feature, quality and safety rates, verdict.

    Writes report.json, a self-contained report.html and PNGs. Exit 0 no drift, 1 drift or a
    quality alert, 2 a usage or data error.
    """
    with _exit_2():
        from cvml.monitor import Monitor
        from cvml.monitor.alerts import recommend_retraining
        from cvml.monitor.report import default_folder, write_report
        from cvml.windows import parse_time

        spec, recipe_dict, seed_value = _load(recipe, set_, model=model, reference=reference, window=window,
                                              endpoint=endpoint, thresholds=thresholds, seed=seed)  # fmt: skip
        monitor = Monitor(spec, log=db, registry=registry, seed=seed_value)
        with progress_bars("monitor", enabled=not json_) as on_progress:
            result = monitor.report(end=parse_time(end) if end else None, on_progress=on_progress)
        files = write_report(result, out_dir or default_folder(spec.output, result), recipe_dict)
        event = None
        if record_event and result.drift.detected:
            event = recommend_retraining(result, registry, files["html"])
    if json_:
        emit_json({**result.to_dict(), "files": files, "event_id": event})
    else:
        _print_result(result)
        if event is not None:
            out.print(f"Recorded retrain_recommended (event {event}) for {escape(result.model.ref)}.")
        out.print(f"Report: {escape(files['html'])}")
    raise typer.Exit(result.exit_code)


@app.command()
def watch(
    interval: str = typer.Option(None, "--interval", show_default=False, help="How often to evaluate (default: monitor.interval, 15m)."),
    webhook: str = typer.Option(None, "--webhook", show_default=False, help="Post alerts here on a change of state (JSON, Slack-compatible)."),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, show_default=False,
                                     help="Serve the gauges on this port's /metrics (0: any free port)."),  # fmt: skip
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Interface of --metrics-port."),
    no_events: bool = typer.Option(False, "--no-events", help="Do not record retrain_recommended in the registry."),
    max_ticks: int = typer.Option(None, "--max-ticks", min=1, show_default=False, help="Stop after this many evaluations."),
    model: str = _MODEL,
    reference: str = _REFERENCE,
    window: str = _WINDOW,
    endpoint: str = _ENDPOINT,
    thresholds: str = _THRESHOLDS,
    out_dir: Path = typer.Option(None, "--out", show_default=False, help="Write each evaluation's report folder here."),
    seed: int = _SEED,
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    db: str = _DB,
    registry: str = _REGISTRY,
    json_: bool = typer.Option(False, "--json", help="Print each evaluation as one JSON line on stdout."),
) -> None:
    """Evaluate every --interval while serving: alert on a change of state, record when retraining
    is recommended, expose gauges. Ctrl-C or SIGTERM stops it; the exit code is the last evaluation's."""
    with _exit_2():
        from cvml.monitor import Monitor
        from cvml.monitor.gauges import MonitorGauges
        from cvml.monitor.watch import Watcher
        from cvml.windows import parse_duration

        spec, recipe_dict, seed_value = _load(recipe, set_, model=model, reference=reference, window=window,
                                              endpoint=endpoint, thresholds=thresholds, seed=seed,
                                              webhook=webhook, interval=interval)  # fmt: skip
        every = parse_duration(spec.interval).total_seconds()
        gauges = MonitorGauges(spec.model or "")
        if metrics_port is not None:
            port = gauges.serve(metrics_port, metrics_host)
            err.print(f"gauges on http://{metrics_host}:{port}/metrics")
        watcher = Watcher(Monitor(spec, log=db, registry=registry, seed=seed_value), webhook=spec.webhook,
                          gauges=gauges, record_events=not no_events, out=out_dir, recipe=recipe_dict)  # fmt: skip
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last: list[Any] = []

    def show(tick) -> None:
        last[:] = [tick]
        if json_:
            import json

            out.file.write(json.dumps(tick.to_dict(), default=str) + "\n")
            out.file.flush()
            return
        _print_tick(tick)

    try:
        watcher.run(every, max_ticks=max_ticks, stop=stop, on_tick=show)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    tick = last[0] if last else None
    raise typer.Exit(0 if tick is None or tick.state == "ok" else 1)


@app.command()
def export(
    out_path: Path = typer.Option(..., "--out", help="JSONL file of raw records for `cvml curate` (written 0600)."),
    window: str = typer.Option("7d", "--window", help="Which requests: a duration up to --end, or START..END."),
    end: str = _END,
    include: str = typer.Option(
        "accepted", "--include",
        help="edited: only outputs users edited (the edit is the target); accepted: also accepted outputs; all: every output.",
    ),  # fmt: skip
    endpoint: str = typer.Option("/v1/cv/rewrite", "--endpoint", help="Logged endpoint to export."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Export a window's logged rewrites (redacted text, feedback; user edits as targets) as raw rows for curate."""
    with _exit_2():
        from cvml.monitor.export import export_rows
        from cvml.windows import parse_time, window_of

        span = window_of(window, parse_time(end) if end else None)
        result = export_rows(db, span, out_path, endpoint=endpoint, include=include, overwrite=overwrite)
    if json_:
        emit_json(result.to_dict())
        return
    c = result.counts
    out.print(f"Exported {result.rows} of {c['requests']} request(s) from {escape(span.label())} to {escape(result.path)}")
    out.print(f"  targets: {c['target_user_edit']} user edit(s), {c['target_accepted_output']} accepted output(s), "
              f"{c['target_output']} other output(s)")  # fmt: skip
    left = {k: v for k, v in c.items() if k in ("no_text", "failed", "unsplit", "flagged", "not_accepted") and v}
    if left:
        out.print("  left out: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in left.items()))
    out.print(f"Next: cvml curate --input {escape(result.path)} --out data/from-prod")


# ---------------------------------------------------------------------------- helpers


def _load(recipe: Path | None, overrides: list[str] | None, *, seed: int | None, **flags: Any) -> tuple[Any, dict | None, int]:
    """The monitor section: defaults < recipe < --set < flags; the seed: --seed, else the recipe's."""
    from cvml.recipe import MonitorSpec, recipe_to_dict, resolve_recipe

    given = {f"monitor.{key}": value for key, value in flags.items()}
    loaded = resolve_recipe(recipe, overrides, given, name="monitor")
    spec = loaded.monitor or MonitorSpec()
    return spec, recipe_to_dict(loaded) if recipe is not None else None, seed if seed is not None else loaded.seed


_STYLE = {"ok": "bold green", "drift": "bold red", "quality_alert": "bold red", "drift_and_quality_alert": "bold red"}
_LABEL = {"ok": "NO DRIFT", "drift": "DRIFT", "quality_alert": "QUALITY ALERT", "drift_and_quality_alert": "DRIFT + QUALITY ALERT"}


def _print_result(result) -> None:
    who = result.model.ref if result.model else "requests"
    out.print(f"[{_STYLE[result.state]}]{_LABEL[result.state]}[/] — {escape(who)}: {escape(result.window.label())} "
              f"({result.current_requests} requests) vs {escape(result.reference.label)}")  # fmt: skip
    for reason in result.reasons:
        out.print(f"  • {escape(reason)}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("feature", "test", "statistic", "drift when", "verdict"):
        table.add_column(column, overflow="fold")
    for f in result.drift.features:
        if f.drifted is None:
            verdict = f"[dim]not tested: {escape(f.skipped or '')}[/]"
        else:
            verdict = "[red]drift[/]" if f.drifted else "[green]ok[/]"
        bound = "" if f.threshold is None else f"{'≥' if f.higher_is_drift else '<'} {f.threshold:.3g} ({f.threshold_source})"
        stat = "" if f.statistic is None else f"{f.statistic:.3g}"
        table.add_row(f.name + ("" if f.group == "input" else " (output)"), f.test or "", stat, bound, verdict)
    out.print(table)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")


def _print_tick(tick) -> None:
    state = f"[{_STYLE[tick.state]}]{_LABEL[tick.state]}[/]"
    if tick.error:
        out.print(f"{tick.at} {state} (kept) — evaluation skipped: {escape(tick.error)}")
        return
    line = f"{tick.at} {state}" + (" [bold](changed)[/]" if tick.changed else "")
    if tick.result is not None:
        line += f" — {tick.result.current_requests} requests"
        if tick.result.drift.share is not None:
            line += f", drift share {tick.result.drift.share:.0%}"
    if tick.delivery is not None:
        line += " — alert " + ("delivered" if tick.delivery.ok else f"[red]not delivered[/]: {escape(tick.delivery.error or '')}")
    if tick.event_id is not None:
        line += f" — retrain_recommended recorded (event {tick.event_id})"
    out.print(line)
