"""Finding and loading a model for inference: one path for serve, bench, quantize and abtest.

A reference is anything `Registry.resolve` takes (`name`, `name@3`, `name@prod`, a folder).
A finetune run folder resolves to its best model: `merged/`, else `model/`, else `adapter/`.
The folder may hold a full model, a LoRA adapter (merged at load), or a model written by
`cvml quantize` (its manifest says which method; `cvml.quantize.load` reads it back).

A registered version is checked against the content hash recorded at its registration
(`cvml.registry.integrity`) when it is resolved and again when a resolved reference is
loaded: a folder rewritten since is refused, never served as that version.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.errors import DeviceError, ModelError

# In a run folder, the first of these that exists is the model a run stands for.
RUN_MODEL_DIRS = ("merged", "model", "adapter")


@dataclass(frozen=True)
class ModelRef:
    """Where a reference points: the folder, and its registry identity when it has one."""

    path: Path
    name: str
    version: int | None
    ref: str  # "name@N" when registered, else the folder path
    kind: str  # "full" | "adapter" | "quantized" | "exported" (another runtime's format)
    manifest: dict[str, Any] = field(default_factory=dict)
    # The registry's record, whose folder `load_for_inference` verifies again (None: a plain folder).
    registered: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "version": self.version, "ref": self.ref, "kind": self.kind}


@dataclass
class LoadedModel:
    """A model ready for generation, with what a response or a report must say about it."""

    model: Any
    tokenizer: Any
    ref: ModelRef
    device: str
    dtype: str
    load_s: float
    chat_template_sha256: str

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)

    def info(self) -> dict[str, Any]:
        return {
            **self.ref.to_dict(),
            "device": self.device,
            "dtype": self.dtype,
            "load_s": round(self.load_s, 3),
            "chat_template_sha256": self.chat_template_sha256,
            "context_length": self.context_length,
        }


def model_folder(path: str | Path) -> Path:
    """The model folder inside a run folder, or the folder itself when it already is one."""
    path = Path(path)
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    for sub in RUN_MODEL_DIRS:
        if (path / sub / "config.json").is_file() or (path / sub / "adapter_config.json").is_file():
            return path / sub
    raise ModelError(
        f"{path} holds no model (no config.json or adapter_config.json, nor a run's merged/, model/ or adapter/)",
        hint="Pass a model folder, a finetune run folder, or a registered name (see `cvml models list`).",
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def resolve_model(ref: str | Path, registry: Any = None) -> ModelRef:
    """Resolve a reference through the registry (or as a path) to a model folder.

    Raises:
        RegistryError: an unknown name, version or alias that is not a path either.
        ModelError: the folder holds no model, or a registered version's folder no longer
            holds what was registered (changed or gone).
    """
    from cvml.registry import Registry

    registry = registry or Registry()
    version = verify_version(registry.resolve(str(ref)))
    folder = model_folder(version.path)
    if not version.registered and folder != Path(version.path):
        # A run folder: its merged/ or model/ may be registered.
        version = verify_version(registry.resolve(str(folder)))
    manifest = read_manifest(folder)
    if manifest.get("kind") == "quantize":
        kind = "quantized"
    elif manifest.get("kind") == "export":
        kind = "exported"
    elif (folder / "adapter_config.json").is_file():
        kind = "adapter"
    else:
        kind = "full"
    return ModelRef(
        path=folder, name=version.name, version=version.version, ref=version.ref, kind=kind, manifest=manifest,
        registered=version if version.registered else None,
    )


def verify_version(version):
    """`version` (a registry ModelVersion) when its folder still holds what was registered,
    or when there is nothing to compare (a plain folder, a version from before hashes).

    Raises:
        ModelError: the folder changed since registration, or is gone; names the version.
    """
    from cvml.registry.integrity import check

    found = check(version)
    if found.status == "missing":
        raise ModelError(
            f"{version.ref} is registered at {version.path}, which no longer exists",
            hint=f"Restore the folder, or point the alias at another version (cvml models rollback {version.name} --alias ALIAS).",
        )
    if found.status == "changed":
        raise ModelError(
            f"{version.ref}: {version.path} changed since it was registered "
            f"(sha256 {found.expected[:12]} at registration, {found.actual[:12]} now); refusing to load it as {version.ref}",
            hint="Something rewrote the folder (e.g. a re-run into it). Put the registered files back, or copy the "
            "folder elsewhere and register the copy as a new version (cvml models register PATH --name "
            f"{version.name}); `cvml models show {version.ref}` shows the check.",
        )
    return version


def pick_device(device: str = "auto", *, setting: str = "device") -> str:
    """'cpu', 'cuda' or 'cuda:N' from a setting that may say 'auto'; asking for CUDA
    without a GPU is an error, never a silent fallback.

    Raises:
        DeviceError: CUDA was asked for and there is none (the hint names `setting`).
    """
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"{setting} is {device!r} but no CUDA GPU is available here",
            hint=f"Set {setting} to cpu (or auto), or run on a machine with a GPU.",
        )
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    """The torch dtype for a setting that may say 'auto' (bf16 on a GPU that has it, else fp32)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


# Below this many weights fp32 serves faster on a CPU even with native bf16: measured on the
# 2.2M-parameter demo model, 16 clients × 64 tokens took 3.9–6.3 s in fp32 and 9–24 s in bf16.
BF16_MIN_PARAMETERS = 100_000_000


def serving_dtype(dtype: str, device: str, folder: str | Path | None = None) -> str:
    """What 'auto' means for serving: bf16 on a GPU that has it; on a CPU with native bf16
    arithmetic (AVX512-BF16 or AMX), bf16 for a model of at least BF16_MIN_PARAMETERS, where a
    decode step is bound by reading the weights and bf16 reads half the bytes — at
    Qwen2.5-0.5B's shape 17–20 tok/s against fp32's 8.3–8.6 (benchmarks/cpu_serving.py); fp32
    for a smaller model, whose steps are bound by overheads that bf16 adds to, and on a CPU
    without native bf16, where every matmul converts."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "auto"
    big = folder is not None and _weight_count(Path(folder)) >= BF16_MIN_PARAMETERS
    return "bfloat16" if big and cpu_has_native_bf16() else "float32"


def _weight_count(folder: Path) -> int:
    """Weights in a folder's safetensors files, from their headers (0 when there are none)."""
    import math

    from safetensors import safe_open

    count = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="numpy") as f:  # reads the header only
            count += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118 (a safe_open handle is not iterable)
    return count


def cpu_has_native_bf16() -> bool:
    """The CPU's flags (Linux) name a bf16 dot-product instruction."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def check_local(base: str) -> None:
    """A base that can only be a path (hub ids are `org/name`) and does not exist is a
    typo or a missing build step: say so before transformers tries the hub.

    Raises:
        ModelError: the path does not exist.
    """
    looks_local = base.startswith((".", "/", "~")) or base.count("/") > 1
    if looks_local and not Path(base).expanduser().exists():
        raise ModelError(
            f"model path does not exist: {base}",
            hint="Build the embedded default with `cvml tiny model`, or set model.base to a hub id or folder.",
        )


def load_tokenizer(base: str | Path, *, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer of a base model (hub id or folder), with a pad token.

    Raises:
        ModelError: it cannot be loaded.
    """
    from transformers import AutoTokenizer

    check_local(str(base))
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {str(base)!r}: {exc}",
            hint="Check model.base (hub id or local folder) and network access to the hub.",
        ) from None
    if tokenizer.pad_token_id is None:
        # Padding never reaches a loss or an output (masked / cut), any id works.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(
    ref: str | Path | ModelRef, *, device: str = "auto", dtype: str = "auto", registry: Any = None
) -> LoadedModel:
    """Load model and tokenizer in eval mode; LoRA adapters are merged so decoding pays no adapter cost.

    Raises:
        ModelError: no model; a registered version whose folder changed since registration;
            or no chat template stored with it (prompts would be built differently from
            training, silently).
    """
    start = time.perf_counter()
    if isinstance(ref, ModelRef):
        if ref.registered is not None:  # resolved earlier: the folder may have changed since
            verify_version(ref.registered)
        model_ref = ref
    else:
        model_ref = resolve_model(ref, registry)
    if model_ref.kind == "exported":
        fmt = (model_ref.manifest.get("export") or {}).get("format")
        raise ModelError(
            f"{model_ref.ref} is a {fmt} export, which transformers does not load",
            hint="Serve it with --engine openvino (an OpenVINO export), or load the GGUF file in llama.cpp; "
            "bench and abtest its source model.",
        )
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tokenizer = load_inference_tokenizer(model_ref.path)
    if model_ref.kind == "quantized":
        model = load_quantized(model_ref.path, device=device)
    elif model_ref.kind == "adapter":
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_ref.path, dtype=torch_dtype).merge_and_unload()
        model.to(device)
    else:
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(model_ref.path, dtype=torch_dtype).to(device)
        except OSError as exc:
            raise ModelError(f"cannot load a model from {model_ref.path}: {exc}") from None
    model.eval()
    template_sha = hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()
    expected = model_ref.manifest.get("chat_template_sha256")
    if expected and expected != template_sha:
        raise ModelError(
            f"{model_ref.path}: the stored chat template differs from the one the model was trained with",
            hint="Restore the tokenizer files the run saved; prompts built with another template are out of distribution.",
        )
    param = next(model.parameters(), None)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        ref=model_ref,
        device=device,
        dtype=str(param.dtype).removeprefix("torch.") if param is not None else str(torch_dtype),
        load_s=time.perf_counter() - start,
        chat_template_sha256=template_sha,
    )


def load_quantized(folder: Path, device: str):
    """The model in a folder written by `cvml quantize`, in eval mode, on `device`: the
    manifest names the method, the method's backend knows its format.

    Raises:
        ModelError: the manifest does not name a known method.
        QuantizeError: the method's optional dependencies are not installed.
        DeviceError: the method cannot run on `device`.
    """
    from cvml.quantization import METHODS

    folder = Path(folder)
    name = (read_manifest(folder).get("quantize") or {}).get("method")
    method = METHODS.get(name)
    if method is None:
        raise ModelError(
            f"{folder}/manifest.json does not name a quantization method cvml knows ({name!r})",
            hint=f"cvml writes one of {', '.join(METHODS)}; re-run cvml quantize for this model.",
        )
    return method.module().load_model(folder, device)


def load_inference_tokenizer(folder: Path):
    """The tokenizer saved with the model; refuses one without a chat template.

    Raises:
        ModelError: no tokenizer, or no chat template.
    """
    tokenizer = load_tokenizer(folder)
    if not tokenizer.chat_template:
        raise ModelError(
            f"{folder} stores no chat template",
            hint="cvml builds prompts with the model's own template; save the tokenizer (with its chat template) next to the model.",
        )
    return tokenizer
