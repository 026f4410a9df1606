"""`cvml models ...` — list, show, register, promote, roll back, trace lineage, read the audit log."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from cvml.cli._output import emit_json, out
from cvml.registry import KINDS, Event, Lineage, LineageNode, ModelVersion, Registry

app = typer.Typer(
    help="Model versions, aliases (prod, canary) with rollback, lineage and the audit log.",
    no_args_is_help=True,
)

_REGISTRY = typer.Option(
    None, "--registry", help="Registry database: a file, its folder, or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/registry.db).", show_default=False
)
_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
_REASON = typer.Option(None, "--reason", help="Why; recorded in the audit log.")
_DATASET_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=(.+)")


@app.command("list")
def list_(
    name: str = typer.Argument(None, help="Only this model's versions.", show_default=False),
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """List registered versions with their aliases and parents."""
    versions = Registry(registry).versions(name)
    if json_:
        emit_json([v.to_dict() for v in versions])
        return
    # Actor and creation time are in `cvml models show`; this table must fit a terminal.
    table = Table()
    for column in ("model", "kind", "aliases", "parent"):
        table.add_column(column, no_wrap=True)
    table.add_column("path", overflow="fold")
    for v in versions:
        table.add_row(
            f"[bold]{v.ref}[/]",
            v.kind,
            ", ".join(v.aliases),
            v.parent or "",
            escape(_short_path(v.path)),
        )
    out.print(table if versions else "No models registered yet: cvml models register PATH --name NAME")


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME, NAME@3, NAME@v3, NAME@ALIAS or a model path."),
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Show one version: path, content hash (and whether the folder still matches it), kind,
    parent, aliases, datasets and metadata."""
    from cvml.registry.erasure import erased_data_note
    from cvml.registry.integrity import check

    version = Registry(registry).resolve(ref)
    integrity = check(version)
    erasure = erased_data_note(version.ref, registry) if version.registered else None
    if json_:
        emit_json({**version.to_dict(), "integrity": integrity.status, "erasure": erasure})
        return
    table = Table("field", "value", show_header=False)
    for field in ("ref", "kind", "path", "created_at", "actor", "parent"):
        value = getattr(version, field)
        table.add_row(field, escape(str(value)) if value is not None else "")
    if version.registered:
        table.add_row("sha256", _integrity(integrity))
    if erasure:
        table.add_row("erasure", f"[bold red]{escape(erasure)}[/]")
    table.add_row("aliases", ", ".join(version.aliases))
    for d in version.datasets:
        table.add_row(f"dataset ({escape(d.role)})", f"{escape(d.path)}  sha256:{(d.sha256 or '?')[:12]}")
    if version.metadata:
        table.add_row("metadata", escape(json.dumps(version.metadata, indent=2, sort_keys=True)))
    if not version.registered:
        table.add_row("registered", "no")
    out.print(table)


@app.command()
def register(
    path: Path = typer.Argument(..., help="The model's folder (or file)."),
    name: str = typer.Option(..., "--name", help="Model name; versions are numbered 1, 2, 3, ..."),
    kind: str = typer.Option("finetune", "--kind", help=f"One of: {', '.join(KINDS)}."),
    parent: str = typer.Option(None, "--parent", help="The registered version it was made from (e.g. tiny-base@1)."),
    dataset: list[str] = typer.Option(
        None, "--dataset", help="A dataset it used, as PATH or ROLE=PATH (repeatable; role defaults to train)."
    ),
    meta: list[str] = typer.Option(
        None, "--meta", help="Metadata as KEY=VALUE, VALUE read as JSON when it parses (repeatable)."
    ),
    reason: str = _REASON,
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Register a model folder as the next version of NAME."""
    version = Registry(registry).register(
        path,
        name,
        kind,
        parent=parent,
        datasets=[_parse_dataset(item) for item in dataset or []],
        metadata=dict(_parse_meta(item) for item in meta or []),
        reason=reason,
    )
    if json_:
        emit_json(version.to_dict())
    else:
        out.print(f"Registered [bold]{version.ref}[/] ({version.kind}) at {escape(version.path)}")


@app.command()
def promote(
    ref: str = typer.Argument(..., help="The version to promote: NAME@3, NAME@canary, ..."),
    alias: str = typer.Option(..., "--alias", help="The alias to point at it, e.g. prod or canary."),
    reason: str = _REASON,
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Point ALIAS at a version; `rollback` undoes it."""
    reg = Registry(registry)
    event = reg.promote(ref, alias, reason=reason)
    if event is None:
        target = reg.resolve(ref)
        _emit_change(target.name, alias, target.version, target.version, None, json_)
    else:
        _emit_change(event.name, alias, event.from_version, event.to_version, event, json_)


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option(..., "--alias", help="The alias to move back, e.g. prod."),
    reason: str = _REASON,
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Move ALIAS back to the version it held before its latest promotion."""
    event = Registry(registry).rollback(name, alias, reason=reason)
    _emit_change(name, alias, event.from_version, event.to_version, event, json_)


@app.command()
def lineage(
    ref: str = typer.Argument(..., help="NAME, NAME@3, NAME@ALIAS or a registered model path."),
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """Show where a version came from (datasets, parents) and what was derived from it."""
    result = Registry(registry).lineage(ref)
    if json_:
        emit_json(result.to_dict())
    else:
        out.print(_lineage_tree(result))


@app.command()
def events(
    name: str = typer.Argument(None, help="Only this model's events.", show_default=False),
    registry: str = _REGISTRY,
    json_: bool = _JSON,
) -> None:
    """The audit log: who registered, promoted or rolled back what, when and why."""
    rows = Registry(registry).events(name)
    if json_:
        emit_json([e.to_dict() for e in rows])
        return
    table = Table("#")
    table.add_column("time (UTC)", no_wrap=True)
    for column in ("actor", "action", "model", "from", "to", "reason"):
        table.add_column(column)
    for e in rows:
        table.add_row(
            str(e.id),
            _when(e.at),
            escape(e.actor),
            e.action,
            f"{e.name}@{e.alias}" if e.alias else e.name,
            _v(e.from_version),
            _v(e.to_version),
            escape(e.reason or ""),
        )
    out.print(table if rows else "No events yet.")


def _emit_change(
    name: str, alias: str, before: int | None, after: int | None, event: Event | None, json_: bool
) -> None:
    """Render a promotion or rollback; `event` None means the alias was already there."""
    if json_:
        emit_json(
            {
                "changed": event is not None,
                "ref": f"{name}@{alias}",
                "version": after,
                "previous": before,
                "event": event.to_dict() if event else None,
            }
        )
    elif event is None:
        out.print(f"{name}@{alias} already points at v{after}; nothing changed.")
    else:
        out.print(f"[bold]{name}@{alias}[/]: {_v(before) or 'none'} → [bold]{_v(after)}[/] ({event.action})")


def _lineage_tree(lineage: Lineage) -> Tree:
    """Root ancestor at the top, each generation nested under its parent, datasets as leaves."""
    chain = [*reversed(lineage.ancestors), lineage.model]
    tree = node = Tree(_label(chain[0], chain[0] is lineage.model))
    _add_datasets(node, chain[0])
    for version in chain[1:]:
        node = node.add(_label(version, version is lineage.model))
        _add_datasets(node, version)
    for child in lineage.descendants:
        _add_subtree(node, child)
    return tree


def _add_subtree(parent: Tree, node: LineageNode) -> None:
    branch = parent.add(_label(node.model, False))
    _add_datasets(branch, node.model)
    for child in node.children:
        _add_subtree(branch, child)


def _add_datasets(node: Tree, version: ModelVersion) -> None:
    for d in version.datasets:
        node.add(f"[dim]dataset[/] {escape(d.role)}: {escape(d.path)} [dim]sha256:{(d.sha256 or '?')[:12]}[/]")


def _label(version: ModelVersion, selected: bool) -> str:
    aliases = f" [green]{', '.join(version.aliases)}[/]" if version.aliases else ""
    ref = f"[bold cyan]{version.ref}[/] ◀" if selected else f"[bold]{version.ref}[/]"
    return f"{ref} ({version.kind}){aliases} [dim]{escape(version.path)}[/]"


def _parse_dataset(text: str) -> dict[str, Any]:
    match = _DATASET_RE.fullmatch(text)
    return {"role": match.group(1), "path": match.group(2)} if match else {"role": "train", "path": text}


def _parse_meta(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--meta")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _integrity(found) -> str:
    """The recorded hash (short) and whether the folder still holds it."""
    short = (found.expected or "")[:12]
    if found.status == "verified":
        return f"{short} [green]verified[/]"
    if found.status == "changed":
        return f"{short} [bold red]CHANGED[/] (folder now {found.actual[:12]}; loading this version is refused)"
    if found.status == "missing":
        return f"{short} [bold red]MISSING[/] (the folder is gone; loading this version is refused)"
    return "[dim]not recorded (registered before cvml kept hashes; unverified)[/]"


def _when(iso: str | None) -> str:
    return (iso or "")[:19].replace("T", " ")


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else ""


def _short_path(path: str) -> str:
    """Paths under the working directory print relative, the rest absolute."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
