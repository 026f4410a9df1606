"""`cvml --help` must stay fast: importing the CLI, or rendering its help, may not pull torch or transformers."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "accelerate", "datasets", "matplotlib")


def test_cli_import_pulls_no_heavy_library():
    code = (
        "import sys, cvml.cli.main\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"cvml.cli imports heavy modules at start-up: {out}"


def test_help_renders_without_a_heavy_library():
    """Rendering every command's help (what `cvml --help` and `cvml <cmd> --help` do) stays
    light too; how long it takes is measured by benchmarks/cli_startup.py."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cvml.cli.main import app\n"
        "runner = CliRunner()\n"
        "names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]\n"
        "for args in [['--help']] + [[n, '--help'] for n in names if n]:\n"
        "    result = runner.invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(len(names), ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 10, "the CLI lists its commands"
    assert out[1:] == [], f"cvml help imports heavy modules: {out[1:]}"
