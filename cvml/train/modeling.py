"""Loading the base model and tokenizer, resolving device and dtype, attaching LoRA."""

from __future__ import annotations

from cvml.errors import DeviceError, ModelError
from cvml.modelio import check_local, pick_device, pick_dtype
from cvml.modelio import load_tokenizer as _load_tokenizer
from cvml.recipe import ModelSpec, TrainSpec


def resolve_device(spec: ModelSpec) -> str:
    """'cpu' or 'cuda' for model.device."""
    return pick_device(spec.device, setting="model.device")


def load_tokenizer(spec: ModelSpec):
    return _load_tokenizer(spec.base, revision=spec.revision, trust_remote_code=spec.trust_remote_code)


def load_model(spec: ModelSpec, device: str):
    from transformers import AutoModelForCausalLM

    check_local(spec.base)
    kwargs = {
        "revision": spec.revision,
        "dtype": pick_dtype(spec.dtype, device),
        "attn_implementation": spec.attn_implementation,
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.load_in_4bit:
        if device != "cuda":
            raise DeviceError("model.load_in_4bit (QLoRA) needs a CUDA GPU", hint="Set model.load_in_4bit: false on CPU.")
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        return AutoModelForCausalLM.from_pretrained(spec.base, **kwargs)
    except OSError as exc:
        raise ModelError(
            f"cannot load a model from {spec.base!r}: {exc}",
            hint="Check model.base (hub id or local folder) and network access to the hub.",
        ) from None


def attach_lora(model, train: TrainSpec):
    """Wrap the model with PEFT LoRA adapters; the base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=train.lora.r,
        lora_alpha=train.lora.alpha,
        lora_dropout=train.lora.dropout,
        target_modules=train.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def parameter_counts_without_weights(spec: ModelSpec, train: TrainSpec) -> tuple[int, int]:
    """Trainable/total parameters from the config alone (meta device): --dry-run never loads weights."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    check_local(spec.base)
    try:
        config = AutoConfig.from_pretrained(spec.base, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except OSError as exc:
        raise ModelError(f"cannot load the config of {spec.base!r}: {exc}") from None
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
    model.tie_weights()  # from_config on the meta device leaves tied embeddings as two tensors
    if train.method == "lora":
        model = attach_lora(model, train)
    return count_parameters(model)
