"""One output object for every command: tables for people, `--json` for machines.

Results go to stdout; logs and progress go to stderr, so `cvml ... --json | jq` works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

# Logs, progress bars and warnings: stderr, always.
err = Console(stderr=True)
# Human-readable results.
out = Console()


def emit_json(payload: Any) -> None:
    """Write one JSON document to stdout (and nothing else goes to stdout)."""
    out.file.write(json.dumps(payload, indent=2, default=str) + "\n")
    out.file.flush()


@contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """While a command runs, whatever libraries print (GPT-QModel's banner, for one, which
    peft imports whenever it is installed) goes to stderr; `out` and `emit_json` keep the
    real stdout, so `cvml ... --json | jq` always reads one clean document."""
    real = sys.stdout
    out.file = real
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real
        out.file = None  # back to following sys.stdout (test runners swap it)
