"""int8 for CPU serving: every linear layer (LM head included) holds int8 weights with one
scale per output channel, and quantizes its input per call (torch dynamic quantization,
fbgemm/x86 kernels).

Chosen by measurement (greedy decode, batch 1, one thread, this CPU, ms per token):
demo model (hidden 192): fp32 3.1, torch dynamic int8 2.7, torchao int8 weight-only 3.2,
torchao int8 dynamic 10.5, optimum-quanto int8 5.3; a random 1024-hidden, 4-layer Llama:
fp32 25.2, torch dynamic int8 7.7, torchao weight-only 83, torchao dynamic 92, quanto 168.
So this method uses torch's dynamic int8, although torch marks `torch.ao.quantization`
deprecated in favour of torchao, whose eager CPU paths are the slow ones above (the
deprecation warnings are silenced here). benchmarks/quantize_quality.py re-measures it
against fp32.

Storage: torch's quantized modules do not serialize to safetensors, so the folder holds
`config.json` and `int8_model.safetensors`: for each quantized layer `<name>.weight_int8`,
`<name>.weight_scale`, `<name>.weight_zero_point` (and `<name>.bias`), plus every other
tensor in float16, loaded back as float32 (the in-memory model is rounded the same way
before it is measured). The weights file has its own name so that a plain
`from_pretrained` fails loudly instead of loading a model with random linear layers.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cvml.errors import DeviceError, ModelError

WEIGHTS_FILE = "int8_model.safetensors"
_SUFFIXES = ("weight_int8", "weight_scale", "weight_zero_point", "bias")


@contextlib.contextmanager
def _no_deprecation_noise() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized tensor creation).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.(ao|jit)\b")
        yield


def quantize_model(model, tokenizer, calibration, spec):
    """Replace every `nn.Linear` of `model` (on CPU) by a dynamic int8 linear, in place.

    Args:
        model: a float32 causal LM on CPU.
        tokenizer, calibration: unused (the method needs no data).
        spec: the `QuantizeSpec` (bits 8).

    Returns:
        The quantized model (the same object).
    """
    import torch

    with _no_deprecation_noise():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def save_model(model, folder: Path, spec) -> dict[str, Any]:
    """Write config.json and the int8 weights file.

    Returns:
        What the manifest records about the format.
    """
    import torch
    from safetensors.torch import save_file

    with torch.no_grad():  # stored in float16 like the weights of any checkpoint; measured as stored
        for param in model.parameters():
            if param.is_floating_point() and param.dtype != torch.float16:
                param.copy_(param.to(torch.float16))
    quantized = _quantized_layers(model)
    tensors: dict[str, Any] = {}
    for name, layer in quantized.items():
        weight, bias = layer._packed_params._weight_bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr()
        tensors[f"{name}.weight_scale"] = weight.q_per_channel_scales()
        tensors[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach()
    for key, value in model.state_dict().items():
        if not _inside(key, quantized):
            tensors[key] = value.detach().to(torch.float16) if value.is_floating_point() else value.detach()
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    return {"format": "torch-dynamic-int8-per-channel", "quant_linear": "torch.ao.nn.quantized.dynamic.Linear"}


def load_model(folder: Path, device: str):
    """Rebuild the model from config.json and the int8 weights file, on CPU.

    Raises:
        DeviceError: a device other than CPU (the kernels are CPU-only).
        ModelError: the weights file is missing or does not match the config.
    """
    if device != "cpu":
        raise DeviceError(
            f"{folder} holds int8 weights for torch's CPU kernels and cannot run on {device}",
            hint="Load it with --device cpu, or quantize with --method gptq for a GPU.",
        )
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}", hint="Re-run cvml quantize --method int8 for this model.")
    tensors = load_file(str(path))
    with no_init_weights():  # every tensor comes from the file
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    names = sorted({key.rsplit(".", 1)[0] for key in tensors if key.endswith(".weight_int8")})
    layers = {name: {s: tensors.pop(f"{name}.{s}") for s in _SUFFIXES if f"{name}.{s}" in tensors} for name in names}
    missing, unexpected = model.load_state_dict(tensors, strict=False)  # all but the int8 layers
    missing = [key for key in missing if not _inside(key, names)]
    if missing or unexpected or not names:
        raise ModelError(
            f"{path} does not match {folder / 'config.json'}: {len(names)} int8 layers, "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}",
            hint="Re-run cvml quantize --method int8 for this model.",
        )
    with _no_deprecation_noise():
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        for name, parts in layers.items():
            q8 = parts["weight_int8"]
            layer = DynamicLinear(q8.shape[1], q8.shape[0], bias_="bias" in parts, dtype=torch.qint8)
            weight = torch._make_per_channel_quantized_tensor(q8, parts["weight_scale"], parts["weight_zero_point"], 0)
            layer.set_weight_bias(weight, parts.get("bias"))
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model.eval()


def _quantized_layers(model) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: module for name, module in model.named_modules() if isinstance(module, DynamicLinear)}


def _inside(key: str, layers) -> bool:
    return any(key.startswith(f"{name}.") for name in layers)
