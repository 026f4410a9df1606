"""`cvml --help` must stay fast: importing the CLI may not pull torch or transformers."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "transformers", "peft", "accelerate", "datasets", "matplotlib")


def test_cli_import_pulls_no_heavy_library():
    code = (
        "import sys, cvml.cli.main\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"cvml.cli imports heavy modules at start-up: {out}"


@pytest.mark.integration  # a timed `cvml --help` in a new interpreter
def test_help_answers_quickly():
    best = min(_time_help() for _ in range(3))
    # Python start-up + typer + rich is ~0.3 s here; torch alone would add > 1 s.
    assert best < 1.0, f"cvml --help took {best:.2f} s"


def _time_help() -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cvml", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "finetune" in result.stdout
    return time.perf_counter() - start
