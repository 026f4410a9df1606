"""Merge a LoRA adapter into its base: one plain model folder that any tool loads."""

from __future__ import annotations

import json
from pathlib import Path

from cvml.errors import ModelError


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Load base + adapter, fold the LoRA weights in, save model, tokenizer and generation config.

    Raises:
        ModelError: the folder holds no adapter.
    """
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(
            f"{adapter_dir} holds no LoRA adapter (adapter_config.json missing)",
            hint="Merge the adapter/ folder of a LoRA run (train.method: lora).",
        )
    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out_dir)
    merged.generation_config.save_pretrained(out_dir)
    manifest = adapter_dir / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["merged_from"] = str(adapter_dir.resolve())
        (out_dir / "manifest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out_dir
