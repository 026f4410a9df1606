"""scripts/gpu_check.sh: valid bash, and its CPU dry run walks every step and writes the
documented JSON (the GPU run itself happens on a lent GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_the_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_the_dry_run_writes_every_step(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHON": sys.executable, "CVML": str(bin_dir / "cvml")}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"created", "python", "torch", "cuda", "gpu", "steps"} <= set(figures)
    steps = figures["steps"]
    assert {"model", "tests", "finetune", "vllm", "serve"} <= set(steps)
    assert all(step["exit_code"] == 0 for step in steps.values()), steps
    assert steps["model"]["shape"] == "tiny" and steps["finetune"]["steps"] == 2
    assert steps["serve"]["device"] == "cpu" and steps["serve"]["levels"]["1"]["cvml_engine"]["errors"] == 0
