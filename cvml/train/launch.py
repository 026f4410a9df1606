"""Multi-process launch: `cvml finetune ... --num-processes N` re-runs itself under a launcher.

On GPUs the recipe's accelerate config (DDP/FSDP/DeepSpeed) goes to `accelerate launch`.
On CPUs accelerate's own multi-CPU path needs MPI, so cvml uses torchrun, which
Accelerate recognises (WORLD_SIZE set, cpu=True → MULTI_CPU with the gloo backend).

Across machines the same command runs on each with its machine rank (`Nodes`): N processes
per machine, the first machine's address and port as the rendezvous. The batches a process
trains on are a function of (seed, step, rank), so M machines × N processes train exactly
what one process with M × N times the gradient accumulation would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cvml.errors import ConfigError


@dataclass(frozen=True)
class Nodes:
    """Where this machine stands in a multi-machine run (one machine: the defaults)."""

    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    def check(self) -> None:
        """Raises: ConfigError: ranks out of range, or several machines without a main address."""
        if not 0 <= self.machine_rank < self.num_machines:
            raise ConfigError(
                f"--machine-rank must be in 0..{self.num_machines - 1} for --num-machines {self.num_machines}, "
                f"got {self.machine_rank}"
            )
        if self.num_machines > 1 and not self.main_process_ip:
            raise ConfigError(
                "several machines need the address of machine 0",
                hint="Pass --main-process-ip (and --main-process-port) on every machine.",
            )


def inside_launcher() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(
    num_processes: int, cli_args: list[str], accelerate_config: str | None, use_gpu: bool, nodes: Nodes = Nodes()
) -> list[str]:
    """The command that runs `cvml <cli_args>` in num_processes processes on this machine
    (of `nodes.num_machines`)."""
    nodes.check()
    if use_gpu:
        # accelerate counts processes over all machines.
        cmd = [sys.executable, "-m", "accelerate.commands.launch",
               "--num_processes", str(num_processes * nodes.num_machines)]
        if accelerate_config:
            if not Path(accelerate_config).is_file():
                raise ConfigError(f"train.accelerate_config not found: {accelerate_config}")
            cmd += ["--config_file", accelerate_config]
        if nodes.num_machines > 1:
            cmd += ["--num_machines", str(nodes.num_machines), "--machine_rank", str(nodes.machine_rank),
                    "--main_process_ip", nodes.main_process_ip, "--main_process_port", str(nodes.main_process_port)]
        return cmd + ["-m", "cvml", *cli_args]
    if nodes.num_machines == 1:
        rendezvous = ["--standalone", "--nnodes", "1"]
    else:
        rendezvous = ["--nnodes", str(nodes.num_machines), "--node_rank", str(nodes.machine_rank),
                      "--master_addr", nodes.main_process_ip, "--master_port", str(nodes.main_process_port)]
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc_per_node", str(num_processes),
            "-m", "cvml", *cli_args]


def relaunch(
    num_processes: int, cli_args: list[str], accelerate_config: str | None, device: str, nodes: Nodes = Nodes()
) -> int:
    """Run the command and return its exit code; threads are split across CPU processes."""
    env = dict(os.environ)
    if device == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_processes))
    cmd = launch_command(num_processes, cli_args, accelerate_config, use_gpu=device == "cuda", nodes=nodes)
    return subprocess.call(cmd, env=env)
