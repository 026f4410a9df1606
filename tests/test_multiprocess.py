"""`cvml finetune --num-processes 2` trains with DDP over gloo on CPU, and its losses equal a
single process doing the same rows with gradient accumulation (token-exact loss)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cvml.recipe import load_recipe
from cvml.train import finetune


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["type"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(make_recipe, tmp_path):
    # lora dropout 0 so the two layouts see identical computations.
    path = make_recipe("ddp", train={"max_steps": 6, "micro_batch_size": 2, "eval_every": 6, "save_every": 3,
                                     "lora": {"dropout": 0.0}})
    two = tmp_path / "two"
    proc = subprocess.run(
        [sys.executable, "-m", "cvml", "finetune", str(path), "--num-processes", "2", "--output-dir", str(two), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["plan"]["world_size"] == 2 and result["steps"] == 6
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["devices"]["num_processes"] == 2
    state = json.loads((two / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["state"]["step"] == 3
    from safetensors import safe_open

    with safe_open(two / "checkpoints" / "step-000003" / "model.safetensors", "pt") as fh:
        assert all("lora_" in k for k in fh.keys())  # adapter only, under DDP too

    one = finetune(load_recipe(path, [f"train.output_dir={tmp_path / 'one'}", "train.grad_accum=2"]))
    assert one.plan["rows_per_step"] == result["plan"]["rows_per_step"] == 4
    for a, b in zip(_losses(two), _losses(Path(one.run_dir)), strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert result["final_eval_loss"] == pytest.approx(one.final_eval_loss, rel=1e-4)


def test_launch_commands_for_two_machines():
    from cvml.errors import ConfigError
    from cvml.train.launch import Nodes, launch_command

    nodes = Nodes(num_machines=2, machine_rank=1, main_process_ip="10.0.0.5", main_process_port=29501)
    cpu = launch_command(3, ["finetune", "r.yaml"], None, use_gpu=False, nodes=nodes)
    assert cpu[cpu.index("--nnodes") + 1] == "2" and cpu[cpu.index("--node_rank") + 1] == "1"
    assert cpu[cpu.index("--master_addr") + 1] == "10.0.0.5" and cpu[cpu.index("--master_port") + 1] == "29501"
    assert cpu[cpu.index("--nproc_per_node") + 1] == "3" and "--standalone" not in cpu
    gpu = launch_command(4, ["finetune", "r.yaml"], "recipes/accelerate/fsdp.yaml", use_gpu=True, nodes=nodes)
    assert gpu[gpu.index("--num_processes") + 1] == "8"  # accelerate counts every machine's processes
    assert gpu[gpu.index("--num_machines") + 1] == "2" and gpu[gpu.index("--machine_rank") + 1] == "1"
    assert gpu[gpu.index("--main_process_ip") + 1] == "10.0.0.5" and gpu[-4:] == ["-m", "cvml", "finetune", "r.yaml"]
    assert gpu[gpu.index("--config_file") + 1] == "recipes/accelerate/fsdp.yaml"
    one = launch_command(2, ["finetune", "r.yaml"], None, use_gpu=False)
    assert "--standalone" in one and one[one.index("--nnodes") + 1] == "1"
    with pytest.raises(ConfigError, match="machine-rank must be in 0..1"):
        Nodes(num_machines=2, machine_rank=2, main_process_ip="h").check()
    with pytest.raises(ConfigError, match="address of machine 0"):
        Nodes(num_machines=2, machine_rank=0).check()


def test_fsdp2_config_is_valid_for_accelerate():
    """The shipped FSDP2 config loads as accelerate's own config class would read it."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "fsdp.yaml"))
    assert config.distributed_type.value == "FSDP" and config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"


@pytest.mark.slow
def test_two_machines_match_one_process_with_accumulation(make_recipe, tmp_path):
    """Two `cvml finetune` invocations with machine ranks 0 and 1 (one process each, gloo on
    127.0.0.1) train exactly what one process with twice the accumulation trains."""
    import socket

    path = make_recipe("nodes", train={"max_steps": 4, "micro_batch_size": 2, "eval_every": 4, "save_every": 100,
                                       "lora": {"dropout": 0.0}})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    two = tmp_path / "two"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cvml", "finetune", str(path), "--num-processes", "1", "--num-machines", "2",
             "--machine-rank", str(rank), "--main-process-ip", "127.0.0.1", "--main-process-port", str(port),
             "--output-dir", str(two), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    result = json.loads(outputs[0][0])
    assert result["plan"]["world_size"] == 2
    one = finetune(load_recipe(path, [f"train.output_dir={tmp_path / 'one'}", "train.grad_accum=2"]))
    for a, b in zip(_losses(two), _losses(Path(one.run_dir)), strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert result["final_eval_loss"] == pytest.approx(one.final_eval_loss, rel=1e-4)
