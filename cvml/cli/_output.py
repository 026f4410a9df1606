"""One output object for every command: tables for people, `--json` for machines.

Results go to stdout; logs and progress go to stderr, so `cvml ... --json | jq` works.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Logs, progress bars and warnings: stderr, always.
err = Console(stderr=True)
# Human-readable results.
out = Console()


def emit_json(payload: Any) -> None:
    """Write one JSON document to stdout (and nothing else goes to stdout)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
