"""`cvml bench MODEL` — options → recipe → cvml.bench.run_bench → rendered verdict.

Exit codes: 0 every gate passed, 1 a gate failed (a regression), 2 a usage or config error.
`cvml bench --compare a.json b.json` renders the difference of two saved reports.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from cvml.cli._output import emit_json, err, out
from cvml.cli._progress import progress_bars


def bench(
    model: str = typer.Argument(None, help="Model: registry ref (name, name@3, name@prod) or folder; with --url, the served model id."),
    recipe: Path = typer.Option(None, "--recipe", help="Recipe YAML (reads its bench section, serve's engine settings, curate's test split)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a field: --set bench.trials=5 (repeatable)."),
    baseline: Path = typer.Option(None, "--baseline", help="A saved report.json to compare with (relative gates)."),
    baseline_model: str = typer.Option(None, "--baseline-model", help="Measure this model too, trials interleaved with the candidate's."),
    url: str = typer.Option(None, "--url", help="Measure perf against this OpenAI-compatible server instead of in process."),
    concurrency: str = typer.Option(None, "--concurrency", help="Closed-loop client counts, e.g. 1,4,16 (bench.concurrency)."),
    requests: int = typer.Option(None, "--requests", min=1, help="Requests per level per trial (bench.requests_per_level)."),
    trials: int = typer.Option(None, "--trials", min=1, help="Repeats of the sweep (bench.trials)."),
    out_dir: Path = typer.Option(None, "--out", help="Report folder (bench.output)."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip quality and the bias probe."),
    no_perf: bool = typer.Option(False, "--no-perf", help="Skip the performance sweep."),
    compare: tuple[Path, Path] | None = typer.Option(None, "--compare", help="Render the difference of two saved reports: A (reference) and B."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Benchmark a model's speed, quality and safety; gate against a baseline (exit 1 on regression)."""
    from cvml.errors import ConfigError

    if compare:
        if model is not None:
            raise ConfigError("--compare takes two saved reports and no model", hint="cvml bench --compare a.json b.json")
        _compare(compare[0], compare[1], json_)
        return
    if model is None:
        raise ConfigError("give the model to bench (a registry ref or a folder)", hint="cvml bench runs/tiny-cv --recipe recipes/tiny-cv.yaml")

    from cvml.bench.api import resolve_eval_data, run_bench
    from cvml.recipe import BenchSpec, recipe_to_dict, resolve_recipe

    flags = {
        "bench.concurrency": _concurrency(concurrency), "bench.requests_per_level": requests,
        "bench.trials": trials, "bench.output": None if out_dir is None else str(out_dir),
    }
    resolved = resolve_recipe(recipe, set_, flags, name=_name_of(model))
    spec = resolved.bench or BenchSpec()
    out_path = Path(spec.output.format(name=resolved.name))
    with progress_bars("bench", enabled=not json_) as on_progress:
        result = run_bench(
            model, spec, name=resolved.name, out_dir=out_path, baseline=baseline, baseline_model=baseline_model, url=url,
            perf=not no_perf, quality=not no_quality, eval_data=resolve_eval_data(spec, resolved, resolved.name),
            serve=resolved.serve, recipe=recipe_to_dict(resolved), seed=resolved.seed, on_progress=on_progress,
        )
    for warning in result.warnings:
        err.print(f"[bold red]WARNING:[/] {warning}", highlight=False, soft_wrap=True)
    if json_:
        emit_json(result.summary())
    else:
        _render(result)
    raise typer.Exit(result.exit_code)


def _concurrency(text: str | None) -> list[int] | None:
    """'1,4,16' → [1, 4, 16]."""
    if text is None:
        return None
    from cvml.errors import ConfigError

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--concurrency {text!r}: expected positive integers separated by commas, e.g. 1,4,16")
    return [int(p) for p in parts]


def _name_of(model: str) -> str:
    """A recipe name from a model ref: 'tiny-cv@prod' → 'tiny-cv', 'runs/x/' → 'x'."""
    stem = Path(model.split("@")[0].rstrip("/")).name or "model"
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip(".-_") or "model"


def _render(result) -> None:
    from rich.table import Table

    report = result.report
    gates = report["gates"]
    if gates:
        table = Table(title=f"cvml bench {report['name']}: gates")
        table.add_column("gate", no_wrap=True)
        for column in ("value", "evidence", "verdict"):
            table.add_column(column)
        style = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skipped": "[yellow]skipped[/]"}
        for g in gates:
            value = "–" if g["value"] is None else f"{g['value']:.4g}"
            table.add_row(g["name"], value, g["message"], style[g["verdict"]])
        out.print(table)
    perf = report["metrics"].get("perf") or {}
    if perf:
        table = Table("level", "req/s", "out tok/s", "TTFT p50/p95 ms", "ITL p50/p95 ms", "e2e p50/p95/p99 ms", "errors", title="performance")
        ms = lambda m, *keys: " / ".join("–" if m.get(k) is None else f"{m[k] * 1000:.1f}" for k in keys)  # noqa: E731
        for level, m in perf.items():
            table.add_row(
                level, f"{m['requests_per_s']:.2f}", f"{m['output_tokens_per_s']:,.1f}", ms(m, "ttft_p50_s", "ttft_p95_s"),
                ms(m, "itl_p50_s", "itl_p95_s"), ms(m, "e2e_p50_s", "e2e_p95_s", "e2e_p99_s"), f"{m['errors']}/{m['requests']}",
            )
        out.print(table)
    quality = report["metrics"].get("quality") or {}
    if quality:
        table = Table("metric", "value", title=f"quality ({quality.get('n')} examples)")
        for key, value in quality.items():
            table.add_row(key, "–" if value is None else f"{value:.4g}")
        out.print(table)
    verdict = "[bold green]PASS[/]" if result.passed else "[bold red]FAIL: regression[/]"
    out.print(f"verdict: {verdict}  ·  report: {result.files['report_md']}")


def _compare(a_path: Path, b_path: Path, json_: bool) -> None:
    from cvml.bench.compare import compare_reports
    from cvml.bench.report import load_report

    diff = compare_reports(load_report(a_path), load_report(b_path))
    if diff["fingerprint_differences"]:
        err.print(
            "[bold red]WARNING: FINGERPRINT MISMATCH[/] — the reports come from different machines or software stacks; "
            "speed differences may be the machine's: " + "; ".join(diff["fingerprint_differences"]),
            highlight=False, soft_wrap=True,
        )
    if diff["workload_differences"]:
        err.print(
            "[bold red]WARNING: WORKLOAD MISMATCH[/] — " + "; ".join(diff["workload_differences"]),
            highlight=False, soft_wrap=True,
        )
    if json_:
        emit_json(diff)
        return
    from rich.table import Table

    table = Table(title=f"A = {diff['a']['model']}  ·  B = {diff['b']['model']}")
    table.add_column("metric", no_wrap=True)
    for column in ("A", "B", "change", "interval of the change"):
        table.add_column(column)
    for row in diff["rows"]:
        change = "–" if row["change"] is None else f"{row['change']:+.1%}"
        interval = ""
        if "ci_low" in row:
            if row["quantity"] == "ratio":
                interval = f"{row['ci_low'] - 1:+.1%} … {row['ci_high'] - 1:+.1%}"
            else:
                interval = f"{row['ci_low']:+.4g} … {row['ci_high']:+.4g} (paired)"
            interval = f"[bold]{interval}[/]" if row["significant"] else f"[dim]{interval}[/]"
        fmt = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
        table.add_row(row["metric"], fmt(row["a"]), fmt(row["b"]), change, interval)
    out.print(table)
