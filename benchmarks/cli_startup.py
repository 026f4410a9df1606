"""How long `cvml --help` takes, against a bare interpreter and an interpreter that imports torch.

Why: people and CI type `cvml ...` many times a day; a CLI that imports torch at start-up
answers `--help` in seconds. tests/test_cli_import.py keeps the cause out (no heavy import at
start-up or while rendering help); this measures the effect, each command in a new
interpreter, best of --repeats (start-up time only grows under load).

    python benchmarks/cli_startup.py [--repeats 5]

The last line is one JSON object: seconds of each command, `ratio_vs_python` (cvml --help /
a bare `python -c pass`) and `ratio_vs_torch_import` (cvml --help / `python -c "import torch"`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

COMMANDS = {
    "python": [sys.executable, "-c", "pass"],
    "cvml_help": [sys.executable, "-m", "cvml", "--help"],
    "torch_import": [sys.executable, "-c", "import torch"],
}


def best_of(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds = {name: round(best_of(command, args.repeats), 3) for name, command in COMMANDS.items()}
    for name, value in seconds.items():
        print(f"{name:>13}: {value:.3f} s")
    print(json.dumps({
        "benchmark": "cli_startup", "repeats": args.repeats, "seconds": seconds,
        "ratio_vs_python": round(seconds["cvml_help"] / seconds["python"], 2),
        "ratio_vs_torch_import": round(seconds["cvml_help"] / seconds["torch_import"], 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
