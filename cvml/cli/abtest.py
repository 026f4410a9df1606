"""`cvml abtest ...` — decide between two model versions: offline on eval data, online from serve's log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cvml.cli._output import emit_json, out
from cvml.cli._progress import progress_bars

app = typer.Typer(
    help="Decide between two model versions with statistics: offline on eval data, online from serve's request log.",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
_RECIPE = typer.Option(None, "--recipe", help="Recipe whose abtest section sets the rule (primary, guardrails, mde, ...).")
_SET = typer.Option(None, "--set", help="Override a recipe value, e.g. --set abtest.mde=2 (repeatable).")
_REGISTRY = typer.Option(
    None, "--registry", help="Registry database holding experiments: a file or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/registry.db).", show_default=False
)
_LOG = typer.Option(None, "--db", help="Request log database: a file or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/requests.db).", show_default=False)
_OUT = typer.Option(None, "--out", help="Report folder (default: abtest.output, abtest/{name}).", show_default=False)
_VERDICT_STYLE = {"SHIP": "bold green", "DON'T SHIP": "bold red", "INCONCLUSIVE": "bold yellow"}


@app.command()
def offline(
    a: str = typer.Option(..., "--a", help="Control model: NAME@ALIAS, NAME@N or a folder."),
    b: str = typer.Option(..., "--b", help="Candidate model: NAME@ALIAS, NAME@N or a folder."),
    data: str = typer.Option(None, "--data", help="Eval records (.jsonl/.parquet) or a curated folder (default: abtest.eval_data)."),
    metric: list[str] = typer.Option(None, "--metric", help="Metric to report (repeatable; default every bench metric)."),
    split: str = typer.Option("test", "--split", help="Split of a curated folder."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N records (default: abtest.eval_samples)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="New tokens per answer (default: abtest.max_new_tokens)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    grounding_a: str = typer.Option("off", "--grounding-a", help="Decoding of A: off, numbers or strict (as serve.grounding)."),
    grounding_b: str = typer.Option("off", "--grounding-b", help="Decoding of B: off, numbers or strict (as serve.grounding)."),
    out_dir: Path = _OUT,
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    json_: bool = _JSON,
) -> None:
    """Both models answer the same examples; paired tests per metric; SHIP / DON'T SHIP / INCONCLUSIVE."""
    from cvml.abtest.offline import run_offline
    from cvml.abtest.report import default_folder, offline_name, write_report
    from cvml.errors import ConfigError

    spec, recipe_dict = _load_spec(recipe, set_, {"eval_samples": limit, "max_new_tokens": max_new_tokens})
    for flag, mode in (("--grounding-a", grounding_a), ("--grounding-b", grounding_b)):
        if mode not in ("off", "numbers", "strict"):
            raise ConfigError(f"{flag} must be off, numbers or strict, got {mode!r}")
    data = data or spec.eval_data
    if not data:
        raise ConfigError("no eval data given", hint="pass --data PATH (a .jsonl file or a curated folder), or set abtest.eval_data")
    with progress_bars("abtest", enabled=not json_) as on_progress:
        result = run_offline(a, b, data, spec, metrics=metric or None, split=split, device=device, seed=seed,
                             on_progress=on_progress, grounding=(grounding_a, grounding_b))
    folder = out_dir or default_folder(spec.output, offline_name(a, b))
    files = write_report(result, folder, recipe_dict)
    if json_:
        emit_json({**result.to_dict(), "files": files})
        return
    out.print(f"Offline A/B of [bold]{escape(result.b['ref'])}[/] (B) against [bold]{escape(result.a['ref'])}[/] (A) "
              f"on {result.n} examples")  # fmt: skip
    out.print(_comparison_table(result.comparisons, paired=True))
    _print_decision(result.decision, unit="examples")
    out.print(f"Report: {escape(files['markdown'])}")


@app.command()
def start(
    experiment: str = typer.Option(..., "--experiment", help="Experiment name (used once; keys the request log)."),
    a: str = typer.Option(..., "--a", help="Control: e.g. cv@prod."),
    b: str = typer.Option(..., "--b", help="Candidate: e.g. cv@canary."),
    split: str = typer.Option("90/10", "--split", help="Traffic percentages of a/b."),
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Record a running experiment that `cvml serve --experiment NAME` routes by."""
    from cvml.registry.experiments import ExperimentStore

    record = ExperimentStore(registry).start(experiment, a, b, split)
    if json_:
        emit_json(record.to_dict())
        return
    out.print(
        f"Started [bold]{escape(record.name)}[/]: a={escape(record.a_ref)} ({escape(record.a_version)}), "
        f"b={escape(record.b_ref)} ({escape(record.b_version)}), split {record.split}"
    )
    out.print(f"Serve it with: cvml serve --experiment {escape(record.name)}")


@app.command("list")
def list_(registry: str = _REGISTRY, json_: bool = _JSON) -> None:
    """List experiments, newest first."""
    from cvml.registry.experiments import ExperimentStore

    records = ExperimentStore(registry).list()
    if json_:
        emit_json([r.to_dict() for r in records])
        return
    table = Table("experiment", "status", "a", "b", "split", "started (UTC)", "decision")
    for r in records:
        decision = r.decision or {}
        table.add_row(
            escape(r.name), r.status, escape(f"{r.a_ref} ({r.a_version})"), escape(f"{r.b_ref} ({r.b_version})"),
            r.split, r.started_at[:19].replace("T", " "), escape(str(decision.get("action") or "")),
        )  # fmt: skip
    out.print(table if records else "No experiments yet: cvml abtest start --experiment NAME --a REF --b REF")


@app.command()
def status(
    experiment: str = typer.Argument(..., help="The experiment."),
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    registry: str = _REGISTRY,
    db: str = _LOG,
    json_: bool = _JSON,
) -> None:
    """Where an experiment stands: traffic per variant, sample-ratio check, primary metric, current verdict."""
    from cvml.abtest.online import analyze_experiment

    spec, _ = _load_spec(recipe, set_)
    result = analyze_experiment(experiment, spec, registry=registry, log=db)
    if json_:
        payload = result.to_dict()
        payload.pop("sequential")
        emit_json(payload)
        return
    exp = result.experiment
    out.print(f"[bold]{escape(exp.name)}[/] ({exp.status}) a={escape(exp.a_ref)} b={escape(exp.b_ref)} split {exp.split}")
    out.print(f"Requests a={result.requests['a']} b={result.requests['b']}; units a={result.units['a']} b={result.units['b']}; "
              f"SRM p={result.srm['pvalue']:.3g}" + (" [bold red]MISMATCH[/]" if result.srm["mismatch"] else " ok"))  # fmt: skip
    primary = result.comparisons[result.decision.primary]
    out.print(_comparison_table({primary.metric: primary}, paired=False))
    _print_decision(result.decision, unit="observations")


@app.command()
def analyze(
    experiment: str = typer.Argument(..., help="The experiment."),
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    registry: str = _REGISTRY,
    db: str = _LOG,
    out_dir: Path = _OUT,
    json_: bool = _JSON,
) -> None:
    """Analyse the request log: SRM, every metric, guardrails, sequential and fixed-horizon tests; write the report."""
    from cvml.abtest.online import analyze_experiment
    from cvml.abtest.report import default_folder, write_report

    spec, recipe_dict = _load_spec(recipe, set_)
    result = analyze_experiment(experiment, spec, registry=registry, log=db)
    files = write_report(result, out_dir or default_folder(spec.output, experiment), recipe_dict)
    if json_:
        emit_json({**result.to_dict(), "files": files})
        return
    exp = result.experiment
    out.print(f"[bold]{escape(exp.name)}[/]: requests a={result.requests['a']} b={result.requests['b']}, "
              f"SRM p={result.srm['pvalue']:.3g}" + (" [bold red]MISMATCH[/]" if result.srm["mismatch"] else " ok"))  # fmt: skip
    out.print(_comparison_table(result.comparisons, paired=False))
    _print_decision(result.decision, unit="observations")
    out.print(f"Report: {escape(files['markdown'])}")


@app.command()
def stop(
    experiment: str = typer.Argument(..., help="The experiment."),
    promote: str = typer.Option(None, "--promote", help="Promote this variant (b) to A's alias.", show_default=False),
    rollback: bool = typer.Option(False, "--rollback", help="Keep A; roll B's alias (e.g. canary) back."),
    auto: bool = typer.Option(False, "--auto", help="Promote on SHIP, roll back on DON'T SHIP, keep running otherwise."),
    alias: str = typer.Option(None, "--alias", help="Alias to promote B to (default: A's alias, else prod)."),
    reason: str = typer.Option(None, "--reason", help="Why; recorded in the registry's audit log."),
    recipe: Path = _RECIPE,
    set_: list[str] = _SET,
    registry: str = _REGISTRY,
    db: str = _LOG,
    json_: bool = _JSON,
) -> None:
    """Stop an experiment: promote B, roll back, or let the decision rule choose (--auto)."""
    from cvml.abtest.promotion import stop_experiment
    from cvml.errors import ConfigError

    chosen = [name for name, on in (("promote", promote is not None), ("rollback", rollback), ("auto", auto)) if on]
    if len(chosen) != 1:
        raise ConfigError("choose exactly one of --promote b, --rollback, --auto")
    if promote is not None and promote != "b":
        raise ConfigError(f"--promote {promote}: only the candidate b can be promoted", hint="to keep A, use --rollback")
    spec, _ = _load_spec(recipe, set_)
    result = stop_experiment(experiment, chosen[0], alias=alias, reason=reason, spec=spec, registry=registry, log=db)
    if json_:
        emit_json(result.to_dict())
        return
    if result.verdict:
        out.print(f"Decision: [{_VERDICT_STYLE[result.verdict]}]{result.verdict}[/]")
    state = "stopped" if result.stopped else "still running"
    out.print(f"[bold]{escape(experiment)}[/] {state}; {escape(result.note or '')}")


def _load_spec(
    recipe: Path | None, overrides: list[str] | None, flags: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any] | None]:
    """The abtest section: defaults < recipe < --set < flags; without a recipe --set still applies to the defaults."""
    from cvml.recipe import AbtestSpec, recipe_to_dict, resolve_recipe

    given = {f"abtest.{key}": value for key, value in (flags or {}).items()}
    loaded = resolve_recipe(recipe, overrides, given, name="abtest")
    return loaded.abtest or AbtestSpec(), recipe_to_dict(loaded) if recipe is not None else None


def _comparison_table(comparisons: dict[str, Any], paired: bool) -> Table:
    """Compact enough for an 80-column terminal; report.md has every digit and the test names."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("metric", overflow="fold")
    table.add_column("A → B", overflow="fold")
    table.add_column("B − A \\[interval]", overflow="fold")
    table.add_column("p", justify="right")
    table.add_column("W/T/L" if paired else "n a/b", justify="right", no_wrap=True)
    for c in comparisons.values():
        if c.n == 0:
            continue
        _, low, high = c.gain()
        style = "green" if low > 0 else "red" if high < 0 else "default"
        table.add_row(
            c.metric,
            f"{_num(c.mean_a)} → {_num(c.mean_b)}",
            f"[{style}]{_num(c.diff, True)}[/] \\[{_num(c.low, True)}, {_num(c.high, True)}]",
            _num(c.pvalue),
            f"{c.wins}/{c.ties}/{c.losses}" if paired else f"{c.n_a}/{c.n_b}",
        )
    return table


def _print_decision(decision: Any, unit: str) -> None:
    out.print(f"Decision: [{_VERDICT_STYLE[decision.verdict]}]{decision.verdict}[/]")
    for reason in decision.reasons:
        out.print(f"  • {escape(reason)}")
    if decision.verdict == "INCONCLUSIVE" and decision.required_n is not None:
        out.print(f"  • detecting the MDE ({decision.mde:g}) needs about {decision.required_n} {unit}")


def _num(value: float | None, signed: bool = False) -> str:
    import math

    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:+.3g}" if signed else f"{value:.3g}"
