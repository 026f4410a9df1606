"""Multi-process launch: `cvml finetune ... --num-processes N` re-runs itself under a launcher.

On GPUs the recipe's accelerate config (DDP/FSDP/DeepSpeed) goes to `accelerate launch`.
On CPUs accelerate's own multi-CPU path needs MPI, so cvml uses torchrun, which
Accelerate recognises (WORLD_SIZE set, cpu=True → MULTI_CPU with the gloo backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cvml.errors import ConfigError


def inside_launcher() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(num_processes: int, cli_args: list[str], accelerate_config: str | None, use_gpu: bool) -> list[str]:
    """The command that runs `cvml <cli_args>` in num_processes processes."""
    if use_gpu:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
        if accelerate_config:
            if not Path(accelerate_config).is_file():
                raise ConfigError(f"train.accelerate_config not found: {accelerate_config}")
            cmd += ["--config_file", accelerate_config]
        return cmd + ["-m", "cvml", *cli_args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc_per_node", str(num_processes), "-m", "cvml", *cli_args,
    ]


def relaunch(num_processes: int, cli_args: list[str], accelerate_config: str | None, device: str) -> int:
    """Run the command and return its exit code; threads are split across CPU processes."""
    env = dict(os.environ)
    if device == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_processes))
    cmd = launch_command(num_processes, cli_args, accelerate_config, use_gpu=device == "cuda")
    return subprocess.call(cmd, env=env)
