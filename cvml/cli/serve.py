"""`cvml serve MODEL` — flags → serve spec → cvml.serve.server.serve → one ready line.

Precedence: defaults < the recipe's serve section < --set serve.x=y < explicit flags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from cvml.cli._output import emit_json, err, out


def serve(
    model: str = typer.Argument(
        None, help="Model folder, run folder, NAME or NAME@ALIAS (default: the recipe's serve.model, else its name).",
        show_default=False,
    ),
    recipe: Path = typer.Option(None, "--recipe", help="Recipe YAML whose serve section sets the defaults."),
    set_: list[str] = typer.Option(None, "--set", help="Override a field: --set serve.max_queue=128 (repeatable)."),
    host: str = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="Port; 0 = any free port (default 8000)."),
    api_key: str = typer.Option(
        None, "--api-key", envvar="CVML_API_KEY", show_envvar=True,
        help="Require Authorization: Bearer KEY on /v1 (needed with a --host off loopback; empty is an error).",
    ),
    admin_key: str = typer.Option(
        None, "--admin-key", envvar="CVML_ADMIN_KEY", show_envvar=True,
        help="The only key /admin/* accept (without it they answer loopback clients only).",
    ),
    docs: bool = typer.Option(
        None, "--docs", help="Serve /docs and /openapi.json (off by default).", show_default=False
    ),
    variant: list[str] = typer.Option(None, "--variant", help="A/B arm NAME=REF (repeatable; needs --split)."),
    split: str = typer.Option(None, "--split", help="Traffic per variant in percent, in order: 90/10."),
    experiment: str = typer.Option(None, "--experiment", help="A/B experiment name (salts the sticky user hash)."),
    engine: str = typer.Option(None, "--engine", help="cvml (default), openvino (a `cvml export openvino` folder, CPU) or vllm (vLLM's server behind cvml, GPU)."),
    max_batch_size: int = typer.Option(None, "--max-batch-size", min=1, help="Sequences decoded together."),
    max_queue: int = typer.Option(None, "--max-queue", min=0, help="Waiting requests beyond which 429."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="Default and cap of new tokens."),
    request_timeout: float = typer.Option(None, "--request-timeout", help="Per-request deadline in seconds (504)."),
    drain_timeout: float = typer.Option(
        None, "--drain-timeout", help="On SIGTERM, seconds in-flight requests may finish."
    ),
    log_text: str = typer.Option(None, "--log-text", help="Request log text: redacted (default) or none."),
    log_db: str = typer.Option(None, "--log-db", help="Request log: a file or a postgresql:// URL (default CVML_DB_URL, else $CVML_HOME/requests.db)."),
    watch_registry: float = typer.Option(
        None, "--watch-registry", help="Poll the registry every N seconds; swap in re-pointed aliases."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16."),
    json_: bool = typer.Option(False, "--json", help="When ready, print the address and versions as JSON on stdout."),
) -> None:
    """Serve a model (or A/B variants) over OpenAI-compatible HTTP until SIGTERM, then drain."""
    flags = {
        "model": model, "host": host, "port": port, "variants": variant or None, "split": split,
        "experiment": experiment, "engine": engine, "max_batch_size": max_batch_size, "max_queue": max_queue,
        "max_new_tokens": max_new_tokens, "request_timeout_s": request_timeout, "drain_timeout_s": drain_timeout,
        "log_text": log_text, "log_db": log_db, "watch_registry_s": watch_registry,
        "device": device, "dtype": dtype, "docs": docs,
    }
    spec = resolve_spec(recipe, list(set_ or []), {k: v for k, v in flags.items() if v is not None})
    api_key, admin_key = _key(api_key, "CVML_API_KEY"), _key(admin_key, "CVML_ADMIN_KEY")

    import logging

    from rich.logging import RichHandler

    from cvml.serve.server import Listening, serve as run

    handler = RichHandler(console=err, show_path=False, markup=False)
    logger = logging.getLogger("cvml.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def ready(listening: Listening) -> None:
        if json_:
            emit_json({**listening.to_dict(), "pid": os.getpid()})
            return
        arms = ", ".join(f"{name}: {ref}" for name, ref in listening.variants.items())
        out.print(f"Serving {listening.url} ({arms}; {listening.engine} engine). SIGTERM or Ctrl+C drains and stops.")

    try:
        run(spec, api_key=api_key, admin_key=admin_key, on_ready=ready)
    finally:
        logger.removeHandler(handler)


def _key(given: str | None, envvar: str) -> str | None:
    """The key as given, or as set in the environment; empty is an error, never "no auth"
    (click reads an empty variable as unset, so the environment is checked here).

    Raises:
        ConfigError: the flag or the variable is empty or blank.
    """
    from cvml.errors import ConfigError

    value = given if given is not None else os.environ.get(envvar)
    if value is not None and not value.strip():
        raise ConfigError(
            f"{envvar} (or its flag) is set but empty",
            hint="an empty key does not turn auth off: give a real key, or unset the variable",
        )
    return value


def resolve_spec(recipe: Path | None, overrides: list[str], flags: dict[str, Any]):
    """The serve section after recipe, --set and flags, validated as one. `--model` and
    `--variant` each replace what the recipe says about the other; with neither anywhere,
    a recipe serves its own model (the latest registered version of its name).

    Raises:
        RecipeError: a bad recipe, override or flag value (every problem listed).
    """
    from cvml.recipe import ServeSpec, resolve_recipe

    unset = ("serve.model",) if flags.get("variants") else ("serve.variants", "serve.split") if flags.get("model") else ()
    given = {f"serve.{key}": value for key, value in flags.items()}
    resolved = resolve_recipe(recipe, overrides, given, name="serve", unset=unset)
    spec = resolved.serve or ServeSpec()
    if recipe is not None and not spec.model and not spec.variants and not flags.get("experiment"):
        given["serve.model"] = resolved.name
        spec = resolve_recipe(recipe, overrides, given, name="serve", unset=unset).serve
    return spec
