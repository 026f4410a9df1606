"""`cvml finetune recipe.yaml` — options → recipe → cvml.train.finetune → rendered result."""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, err, out


def finetune(
    recipe: Path = typer.Argument(..., help="Recipe YAML (reads its model, data and train sections)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a field: --set train.lr=1e-4 (repeatable)."),
    output_dir: str = typer.Option(None, "--output-dir", help="Run folder (overrides train.output_dir)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps (overrides train.max_steps)."),
    seed: int = typer.Option(None, "--seed", help="Seed (overrides the recipe's seed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe and the plan; train nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the run afresh; a run folder holding a registered model is kept and a new sibling folder is written."),
    num_processes: int = typer.Option(None, "--num-processes", min=1, help="Train in N processes per machine (DDP; gloo on CPU)."),
    num_machines: int = typer.Option(1, "--num-machines", min=1, help="Machines in the run; run the same command on each."),
    machine_rank: int = typer.Option(0, "--machine-rank", min=0, help="This machine's rank (0 = the main one)."),
    main_process_ip: str = typer.Option(None, "--main-process-ip", help="Address of machine 0 (several machines)."),
    main_process_port: int = typer.Option(29500, "--main-process-port", help="Rendezvous port on machine 0."),
    json_: bool = typer.Option(False, "--json", help="Print the result (or plan) as JSON on stdout."),
) -> None:
    """Fine-tune a model (LoRA or full) as the recipe says; resumable, multi-process capable."""
    from cvml.recipe import recipe_to_dict, resolve_recipe

    flags = {"train.output_dir": output_dir, "train.max_steps": max_steps, "seed": seed}
    resolved = resolve_recipe(recipe, set_, flags, require=("model", "data"))

    from cvml.train.launch import inside_launcher, is_main_process, relaunch

    from cvml.train.launch import Nodes

    nodes = Nodes(num_machines, machine_rank, main_process_ip, main_process_port)
    nodes.check()
    world_size = (num_processes or 1) * num_machines
    if world_size > 1 and not dry_run and not inside_launcher():
        from cvml.train.modeling import resolve_device

        args = ["finetune", str(recipe), *[a for o in set_ or [] for a in ("--set", o)]]
        args += [a for flag, v in (("--output-dir", output_dir), ("--max-steps", max_steps), ("--seed", seed))
                 if v is not None for a in (flag, str(v))]
        args += [flag for flag, on in (("--resume", resume), ("--overwrite", overwrite), ("--json", json_)) if on]
        device = resolve_device(resolved.model)
        raise typer.Exit(relaunch(num_processes or 1, args, resolved.train.accelerate_config, device, nodes))

    if dry_run:
        from cvml.train import dry_run as plan_run

        plan, counts = plan_run(resolved, world_size=world_size)
        if json_:
            emit_json({"recipe": recipe_to_dict(resolved), "plan": plan.as_dict(), "data": counts})
        else:
            _render_plan(resolved, plan, counts)
        return

    from cvml.cli._progress import progress_bars
    from cvml.train import finetune as run

    with progress_bars("finetune", enabled=not json_ and is_main_process()) as on_progress:
        result = run(resolved, resume=resume, overwrite=overwrite, on_progress=on_progress)
    if not is_main_process():
        return  # under a launcher, rank 0 speaks for the run
    if json_:
        emit_json(result.as_dict())
    else:
        _render_result(result)


def _render_plan(recipe, plan, counts) -> None:
    import yaml
    from rich.syntax import Syntax
    from rich.table import Table

    from cvml.recipe import recipe_to_dict

    out.print(Syntax(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False), "yaml", theme="ansi_dark"))
    table = Table("plan", "value", title=f"{recipe.name}: dry run (nothing trained)")
    for key, value in {**plan.as_dict(), **{f"data.{k}": v for k, v in counts.items()}}.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    out.print(table)


def _render_result(result) -> None:
    from rich.table import Table

    table = Table("result", "value", title="finetune")
    base = f"{result.base_eval_loss:.4f}" if result.base_eval_loss is not None else "(resumed)"
    table.add_row("eval loss: base → final", f"{base} → {result.final_eval_loss:.4f}")
    best = f" (model restored to step {result.best_step})" if result.best_step and result.best_step != result.steps else ""
    table.add_row("best eval loss", f"{result.best_eval_loss:.4f}{best}")
    table.add_row("steps", str(result.steps) + (" (early stop)" if result.stopped_early else ""))
    table.add_row("train tokens/s", f"{result.train_tokens_per_s:,.0f}")
    table.add_row("wall time", f"{result.wall_s:.1f} s")
    table.add_row("model", result.merged_dir or result.model_dir)
    table.add_row("registered", result.registered or "no")
    out.print(table)
    for sample in result.samples[:3]:
        out.print(f"[dim]{sample['task']} · source:[/] {sample['source_text']}", highlight=False)
        out.print(f"[green]  output:[/] {sample['output']}", highlight=False)
    err.print(f"Run folder: {result.run_dir} (metrics.jsonl, loss_curve.png, samples.jsonl, manifest.json)")
