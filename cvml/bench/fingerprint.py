"""The hardware/software fingerprint every report carries.

Speed figures only compare on the same kind of machine and stack; `differences` lists the
fields that make two reports incomparable so the CLI and the report can say so loudly.
cvml's own version is recorded but not compared: the code under test is what changes.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

# Fields whose difference makes speed figures incomparable.
COMPARED = (
    "cpu_model", "cpu_cores", "usable_cores", "torch_threads", "memory_gb", "torch", "transformers",
    "device", "dtype", "gpu_name", "cuda", "target",
)


def fingerprint(*, device: str, dtype: str, target: str) -> dict[str, Any]:
    """Describe this machine and software stack.

    Args:
        device, dtype: what the model ran with ("cpu"/"cuda", "float32", ...); for a
            remote server, what is known of it ("remote").
        target: "engine" (in-process) or "url" (an HTTP server; its hardware is not ours).
    """
    import psutil

    fp: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "cvml": _version("cvml"),
        "device": device,
        "dtype": dtype,
        "target": target,
        "torch_threads": None,
        "gpu_name": None,
        "cuda": None,
    }
    if target == "engine":
        import torch

        fp["torch_threads"] = torch.get_num_threads()
        if device == "cuda":
            fp["gpu_name"] = torch.cuda.get_device_name(0)
            fp["cuda"] = torch.version.cuda
    return fp


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Human lines for each compared field that differs, e.g. "cpu_model: X ≠ Y"."""
    a, b = a or {}, b or {}
    return [f"{key}: {a.get(key)!r} ≠ {b.get(key)!r}" for key in COMPARED if a.get(key) != b.get(key)]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
