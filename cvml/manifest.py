"""`manifest.json`: what made an artifact folder — inputs and their sha256, recipe,
code version, library versions, seed. The audit trail every folder carries."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cvml import __version__

# What shapes any artifact's numbers; optional backends are recorded when installed.
LIBRARIES = (
    "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors", "pydantic",
    "pyarrow", "datasketch", "ftfy", "phonenumbers", "py3langid", "gptqmodel", "optimum",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder: every file's relative path and content hash, sorted,
    so the same content gives the same digest on any machine and file system."""
    root = Path(path)
    if root.is_file():
        return sha256_file(root)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode())
    return h.hexdigest()


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The code version: git commit of the cvml checkout (+ '-dirty' when modified), if any."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def build_manifest(
    kind: str,
    *,
    inputs: dict[str, str | Path] | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a manifest; `inputs` maps a role (e.g. "train") to a file or folder to hash."""
    return {
        "kind": kind,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cvml_version": __version__,
        "code_version": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "seed": seed,
        "inputs": {
            role: {"path": str(Path(p).resolve()), "sha256": sha256_tree(p)} for role, p in (inputs or {}).items()
        },
        "recipe": recipe,
        **(extra or {}),
    }


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path
