"""Shared fixtures: a tiny base model and synthetic data built once per session, and an
isolated CVML_HOME (registry) per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# Keep the test processes from oversubscribing the CPU (torch + gloo workers).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture(autouse=True)
def cvml_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cvml-home"
    monkeypatch.setenv("CVML_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A very small base model (seconds to build) through the real builder."""
    from cvml.tiny.model import TinySpec, build_base_model

    out = tmp_path_factory.mktemp("tiny") / "base"
    spec = TinySpec(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1,
        pretrain_epochs=2.0, corpus_docs=300, pretrain_batch=8,
    )
    build_base_model(out, seed=0, spec=spec)
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from cvml.tiny.synth import write_synthetic_dataset

    out = tmp_path_factory.mktemp("data")
    return Path(write_synthetic_dataset(out, n_people=60, seed=0)["path"])


@pytest.fixture
def make_recipe(tmp_path, tiny_base, tiny_data):
    """Write a small recipe for the tiny fixtures; keyword args override sections."""

    def make(name: str = "t", **sections) -> Path:
        recipe = {
            "name": name,
            "seed": 7,
            "model": {"base": str(tiny_base), "device": "cpu"},
            "data": {"train": str(tiny_data), "max_seq_len": 256},
            "train": {
                "method": "lora", "max_steps": 10, "micro_batch_size": 2, "lr": 3e-3, "warmup_ratio": 0.1,
                "eval_every": 5, "save_every": 4, "log_every": 1, "output_dir": str(tmp_path / "runs" / name),
            },
        }
        for section, values in sections.items():
            if isinstance(values, dict):
                recipe.setdefault(section, {}).update(values)
            else:
                recipe[section] = values
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        return path

    return make


def pytest_collection_modifyitems(config, items):
    """GPU tests run where CUDA is; elsewhere they are skipped with the reason."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
