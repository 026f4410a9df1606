"""The monitored model: which version it is, what it was trained on, and the vocabulary and
tokenizer that measure production's text against it.

    model = resolve_model("tiny-cv@prod")
    model.training_data      # the curated train split its manifest names (None: why is in notes)
    model.vocabulary         # vocabulary.json, stored by `cvml finetune`

A version made from another (quantized, merged) holds no training manifest or vocabulary
of its own: they are looked up along its registered parents, so a quantized model is
monitored against the data its source was fine-tuned on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.data.vocabulary import FILE_NAME as VOCABULARY_FILE
from cvml.data.vocabulary import Vocabulary
from cvml.errors import CvmlError, DataError, MonitorError, RegistryError
from cvml.manifest import sha256_tree
from cvml.registry import ModelVersion, Registry

_MAX_PARENTS = 8  # how far up the lineage the training data is looked for


@dataclass
class MonitoredModel:
    """A model version and what the monitor reads of it (None where it has none; `notes` say why)."""

    ref: str  # name@N, or the folder's name when it is not registered
    name: str
    version: int | None
    logged_as: tuple[str, ...]  # what the request log's model_version holds for it
    registered: bool = False
    training_data: Path | None = None
    vocabulary: Vocabulary | None = None
    tokenizer: Any = None
    notes: dict[str, str] = field(default_factory=dict)  # "training_data" / "vocabulary" / "tokenizer" -> why not

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "vocabulary_words": len(self.vocabulary.counts) if self.vocabulary else None,
            "tokenizer": self.tokenizer is not None,
            "training_data": self.training_data.name if self.training_data else None,
            "notes": self.notes,
        }


def resolve_model(ref: str, registry: str | Path | None = None) -> MonitoredModel:
    """The model `ref` names (NAME, NAME@ALIAS, NAME@N or a folder), with its training data,
    vocabulary and tokenizer where it has them.

    Raises:
        MonitorError: the reference names no model (the registry's own message and hint).
    """
    try:
        version = Registry(registry).resolve(ref)
    except RegistryError as exc:
        raise MonitorError(exc.message, hint=exc.hint) from None
    lineage = _lineage(version, registry)
    folder = Path(version.path)
    logged = (version.ref,) if version.registered else (version.path, str(folder.resolve()))
    model = MonitoredModel(
        ref=version.ref if version.registered else folder.name,
        name=version.name,
        version=version.version,
        logged_as=tuple(dict.fromkeys(logged)),
        registered=version.registered,
    )
    _find_training_data(model, lineage)
    _find_vocabulary(model, lineage)
    _find_tokenizer(model, folder)
    return model


def _lineage(version: ModelVersion, registry: str | Path | None) -> list[ModelVersion]:
    """The version, then its registered parents (nearest first)."""
    chain = [version]
    reg = Registry(registry)
    while chain[-1].parent and len(chain) <= _MAX_PARENTS:
        try:
            chain.append(reg.resolve(chain[-1].parent))
        except CvmlError:
            break
    return chain


def _find_training_data(model: MonitoredModel, lineage: list[ModelVersion]) -> None:
    """The train split of the nearest fine-tune in the lineage (a quantization's manifest
    may name a train split too, the one it calibrated on: it is the fallback)."""
    manifests = [(version, _manifest(Path(version.path)) or {}) for version in lineage]
    ordered = [m for m in manifests if m[1].get("kind") == "finetune"] + [m for m in manifests if m[1].get("kind") != "finetune"]
    for version, manifest in ordered:
        train = (manifest.get("inputs") or {}).get("train")
        if isinstance(train, dict) and train.get("path"):
            path = Path(train["path"])
            if not path.exists():
                model.notes["training_data"] = (
                    f"the train split {path.name} that {version.ref if version.registered else Path(version.path).name} "
                    "was fine-tuned on is gone"
                )
                return
            if train.get("sha256") and sha256_tree(path) != train["sha256"]:
                model.notes["training_data_changed"] = (
                    f"{path.name} changed since the model was trained (its sha256 differs from the manifest's): "
                    "the reference is today's file"
                )
            model.training_data = path
            return
    for version in lineage:
        for dataset in version.datasets:
            if dataset.role == "train" and Path(dataset.path).exists():
                model.training_data = Path(dataset.path)
                return
    model.notes["training_data"] = f"{model.ref} and its parents name no training data in their manifests"


def _find_vocabulary(model: MonitoredModel, lineage: list[ModelVersion]) -> None:
    for version in lineage:
        if (Path(version.path) / VOCABULARY_FILE).is_file():
            try:
                model.vocabulary = Vocabulary.read(version.path)
            except DataError as exc:
                model.notes["vocabulary"] = exc.message
            return
    model.notes["vocabulary"] = (
        f"{model.ref} has no {VOCABULARY_FILE} (stored by `cvml finetune` from this version of cvml on): "
        "the out-of-vocabulary rate is not measured"
    )


def _find_tokenizer(model: MonitoredModel, folder: Path) -> None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        model.notes["tokenizer"] = f"{model.ref} has no tokenizer.json: token lengths are not measured"
        return
    from tokenizers import Tokenizer

    try:
        model.tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        model.notes["tokenizer"] = f"cannot read tokenizer.json of {model.ref}: {exc}"


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
