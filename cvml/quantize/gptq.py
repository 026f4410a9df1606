"""GPTQ and its round-to-nearest baseline, both written as GPTQ checkpoints.

GPTQ runs through optimum's `GPTQQuantizer` on GPT-QModel kernels, on the model already
in memory (so a LoRA run is quantized merged, with no export step). RTN computes each
group's scale and zero from the weights alone (GPT-QModel's `RTN`) and packs them with the
same packer, so both methods share one file format and one inference kernel: the only
difference between their perplexities is GPTQ's error-compensating rounding.

Saving: GPT-QModel packs zero points in its internal v2 layout. Symmetric checkpoints are
written in the v1 layout every GPTQ loader reads (vLLM included) and labelled `gptq`;
asymmetric ones stay v2 (v1 can overflow there) and are labelled `gptq_v2`. optimum's own
`GPTQQuantizer.save` converts the weights to v1 but leaves config.json saying `gptq_v2`,
which reloads with wrong logits and no error — so saving here sets the label with the
weights, and `cvml.quantize.api` checks every saved model against the in-memory one.

GPT-QModel prints a banner and its logs on stdout and sets environment variables when
imported; `gptqmodel_quiet()` imports it with stdout sent to stderr (so `--json` stays one
document), its logs at warning level, and the environment restored. Its C++ packing
extension (a ~35 s compile cached under ~/.cache) is skipped unless the user set
GPTQMODEL_DISABLE_PACK_EXT themselves: packing then runs in PyTorch, and nothing is
written under ~/.cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cvml.errors import QuantizeError

# The packer needs whole 32-bit words of input and output channels.
PACK_MULTIPLE = 32
_GROUP_SIZES = (32, 64, 128, 256)
# For 4-bit models on CPU GPT-QModel picks its fused int4 kernel (TorchAtenLinear), which
# only takes these group sizes (per-channel, -1, fails at the first forward); any other
# size runs on its plain torch kernel.
_FUSED_CPU_GROUP_SIZES = (32, 64, 128)


@contextlib.contextmanager
def gptqmodel_quiet() -> Iterator[None]:
    """Import and run GPT-QModel with its stdout output on stderr, its info logs off
    (CVML_DEBUG=1 keeps them), and the environment left as it was."""
    os.environ.setdefault("GPTQMODEL_DISABLE_PACK_EXT", "1")
    before = dict(os.environ)
    debug = os.environ.get("CVML_DEBUG") == "1"
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import gptqmodel  # noqa: F401  (prints its banner, sets env vars)
            from logbar import LogBar

            if not debug:
                LogBar.shared().setLevel(logging.WARNING)
                logging.getLogger("optimum").setLevel(logging.WARNING)
            yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)


def check_shapes(model, group_size: int) -> None:
    """Every linear layer GPTQ packs must fit the packer and the group size (call it
    inside `gptqmodel_quiet`: it reads the block layout through optimum).

    Raises:
        QuantizeError: naming the first layer that does not, and group sizes that would.
    """
    dims = {name: _in_out(layer) for name, layer in _block_linears(model).items()}
    if not dims:
        raise QuantizeError("found no transformer blocks with linear layers to quantize in this model")
    for name, (n_in, n_out) in dims.items():
        if n_in % PACK_MULTIPLE or n_out % PACK_MULTIPLE:
            raise QuantizeError(
                f"layer {name} is {n_in}→{n_out}; GPTQ packing needs both sizes to be multiples of {PACK_MULTIPLE}",
                hint="Quantize this model with --method int8, or use a model whose hidden sizes are multiples of 32.",
            )
    if group_size == -1:
        return
    common = math.gcd(*(n_in for n_in, _ in dims.values()))
    for name, (n_in, _) in dims.items():
        if n_in % group_size:
            fits = [g for g in _GROUP_SIZES if common % g == 0] + [-1]
            raise QuantizeError(
                f"group_size {group_size} does not divide in_features {n_in} of layer {name}",
                hint=f"Use a group size that divides every layer's input size: --group-size {' or '.join(map(str, fits))}.",
            )


def quantize_model(model, tokenizer, calibration: list[dict[str, Any]], spec):
    """Quantize `model` in place with GPTQ (spec.method "gptq") or round-to-nearest ("rtn").

    Args:
        model: a causal LM in eval mode, on the device to quantize on.
        tokenizer: its tokenizer.
        calibration: tokenized texts (`input_ids`, `attention_mask`, one row each); gptq only.
        spec: the `QuantizeSpec` (bits, group_size, sym, desc_act, damp_percent).

    Returns:
        The quantized model (the same object).

    Raises:
        QuantizeError: layer shapes the packer or the group size cannot handle.
    """
    with gptqmodel_quiet():
        from optimum.gptq import GPTQQuantizer

        check_shapes(model, spec.group_size)

        quantizer = GPTQQuantizer(
            bits=spec.bits,
            group_size=spec.group_size,
            sym=spec.sym,
            desc_act=spec.desc_act,
            damp_percent=spec.damp_percent,
            # Group-aware ordering needs groups and replaces act-order (GPT-QModel refuses either mix).
            act_group_aware=spec.group_size != -1 and not spec.desc_act,
            dataset=calibration or None,
            batch_size=1,  # padding would add pad-token activations to the Hessian
            backend=_backend(spec.bits, spec.group_size, next(model.parameters()).device.type),
        )
        if spec.method == "gptq":
            model = quantizer.quantize_model(model, tokenizer)
        else:
            model = _round_to_nearest(model, quantizer)
    return _eager(model)


def _round_to_nearest(model, quantizer):
    """Pack each block linear with the scale and zero of its own weights (no calibration)."""
    import torch
    from gptqmodel.quantization.config import RTNConfig
    from gptqmodel.quantization.rtn import RTN
    from optimum.gptq.utils import get_block_name_with_pattern, get_layers
    from transformers.utils.quantization_config import QuantizationMethod

    quantizer.block_name_to_quantize = get_block_name_with_pattern(model)
    quantizer.format = "gptq_v2"  # what the packer writes, as in GPTQQuantizer.quantize_model
    config = RTNConfig(bits=quantizer.bits, group_size=quantizer.group_size, sym=quantizer.sym, desc_act=False)
    found = {}
    with torch.no_grad():
        for name, layer in get_layers(model, prefix=quantizer.block_name_to_quantize).items():
            _, scale, zero, g_idx, *_ = RTN(layer, config).quantize()
            found[name] = (None, scale, zero, g_idx)
    quantizer.pack_model(model, found)
    model.is_quantized = True
    model.quantization_method = QuantizationMethod.GPTQ
    model.config.quantization_config = quantizer.to_dict()
    return quantizer.post_init_model(model)


def save_model(model, folder: Path, spec) -> dict[str, Any]:
    """Write the quantized model's config and weights (v1 layout when symmetric).

    The tensors GPTQ leaves in float (embeddings, norms, LM head) are stored in float16, as
    GPTQ checkpoints are (and as vLLM expects); the in-memory model is rounded to the same
    values first, so what was measured is what was saved. Its zero points are converted
    back after writing, so it stays usable.

    Returns:
        What the manifest records about the format: {"format", "quant_linear"}.
    """
    import torch
    from transformers import GPTQConfig

    with torch.no_grad():
        for param in model.parameters():
            if param.is_floating_point() and param.dtype != torch.float16:
                param.copy_(param.to(torch.float16))

    with gptqmodel_quiet():
        from gptqmodel.nn_modules.qlinear import BaseQuantLinear
        from gptqmodel.utils.model import hf_convert_gptq_v1_to_v2_format, hf_convert_gptq_v2_to_v1_format

        kernel = next(type(m) for m in model.modules() if isinstance(m, BaseQuantLinear))
        found = dict(model.config.quantization_config or {})
        meta = found.get("meta") or {}
        model, converted = hf_convert_gptq_v2_to_v1_format(model, spec.sym, spec.bits, kernel, "gptq_v2", meta)
        fmt = "gptq" if spec.sym else "gptq_v2"
        model.config.quantization_config = GPTQConfig(
            bits=spec.bits,
            group_size=spec.group_size,
            sym=spec.sym,
            desc_act=spec.desc_act,
            damp_percent=spec.damp_percent,
            true_sequential=found.get("true_sequential", True),
            act_group_aware=found.get("act_group_aware", False),
            block_name_to_quantize=found.get("block_name_to_quantize"),
            format=fmt,
            meta=meta,
        )
        try:
            model.save_pretrained(folder, state_dict=_float16_state(model))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            (folder / "config.json").write_text(json.dumps({**config, "dtype": "float16"}, indent=2) + "\n", encoding="utf-8")
        finally:
            if converted:
                hf_convert_gptq_v1_to_v2_format(model, spec.bits, kernel, "gptq", meta)
    return {"format": fmt, "quant_linear": kernel.__name__}


def _float16_state(model) -> dict[str, Any]:
    """The state dict with float tensors in float16; tied tensors stay one shared tensor, so
    transformers writes them once."""
    import torch

    converted: dict[int, Any] = {}
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.dtype != torch.float16:
            value = converted.setdefault(value.data_ptr(), value.to(torch.float16))
        state[key] = value
    return state


def load_model(folder: Path, device: str):
    """Load a GPTQ checkpoint written by `save_model` (or any v1/v2 GPTQ folder).

    CPU loads in float32 (the kernels cast what they need); CUDA in float16, the dtype
    GPTQ's CUDA kernels are built for.
    """
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    stored = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("quantization_config") or {}
    backend = _backend(stored.get("bits"), stored.get("group_size"), device.split(":")[0])
    override = {"quantization_config": GPTQConfig(bits=stored["bits"], backend=backend)} if backend else {}
    with gptqmodel_quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*loading attributes.*will be overwritten")  # the override is the point
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map={"": device}, **override)
    return _eager(model).eval()


def _backend(bits: int | None, group_size: int | None, device_type: str) -> str | None:
    """The GPT-QModel kernel to ask for, or None to let it choose."""
    if device_type == "cpu" and bits == 4 and group_size not in _FUSED_CPU_GROUP_SIZES:
        return "gptq_torch"
    return None


def _eager(model):
    """Undo GPT-QModel's `torch.compile` of its torch kernel's dequantize step.

    `TorchLinear.optimize()` (2/3/8-bit and non-CPU 4-bit) wraps `dequantize_weight` for
    inductor at post-init, so the first forward builds C++ kernels: 80-100 s on this CPU
    (cached under /tmp) — in `cvml serve`, the first request would wait for it. The wrapper
    is an instance attribute; deleting it restores the class's eager method.
    """
    for module in model.modules():
        if "dequantize_weight" in vars(module):
            del module.dequantize_weight
    return model


def _block_linears(model) -> dict[str, Any]:
    """The linear layers inside the transformer blocks: what GPTQ quantizes (not the LM head)."""
    from optimum.gptq.utils import get_block_name_with_pattern, get_layers

    try:
        block = get_block_name_with_pattern(model)
    except ValueError:
        return {}
    return get_layers(model, prefix=block)


def _in_out(layer) -> tuple[int, int]:
    """(in_features, out_features) of a Linear, or of a GPT-2 style Conv1D (weight stored [in, out])."""
    from torch import nn

    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return int(layer.weight.shape[0]), int(layer.weight.shape[1])
