"""The shared inference loader: references, run folders, adapters, and the chat-template guard."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cvml.errors import ModelError, RegistryError
from cvml.modelio import load_for_inference, model_folder, resolve_model
from cvml.registry import Registry


def _logits(loaded, text="Led a team of 5"):
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return loaded.model(ids).logits


def test_run_folder_resolves_to_its_best_model(tmp_path, tiny_base):
    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "model")
    assert model_folder(run) == run / "model"
    shutil.copytree(tiny_base, run / "merged")
    assert model_folder(run) == run / "merged"  # merged beats model/adapter
    with pytest.raises(ModelError, match="holds no model"):
        model_folder(tmp_path)


def test_registry_reference_and_path_load_the_same_weights(tiny_base):
    reg = Registry()
    reg.register(tiny_base, name="cv", kind="base")
    reg.promote("cv@1", "prod")
    by_alias = load_for_inference("cv@prod", device="cpu")
    by_path = load_for_inference(str(tiny_base), device="cpu")
    assert by_alias.ref.ref == "cv@1" and by_alias.ref.version == 1 and by_alias.ref.kind == "full"
    assert by_path.ref.version == 1  # a registered path resolves to its version
    assert torch.equal(_logits(by_alias), _logits(by_path))
    info = by_alias.info()
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["load_s"] > 0
    with pytest.raises(RegistryError):
        resolve_model("cv@canary")


def test_adapter_is_merged_at_load(tmp_path, tiny_base):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.peft_config["default"].base_model_name_or_path = str(tiny_base)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(adapter)

    loaded = load_for_inference(adapter, device="cpu")
    assert loaded.ref.kind == "adapter"
    assert not hasattr(loaded.model, "peft_config")  # merged: a plain model, no adapter layers at decode time
    ids = loaded.tokenizer("Led a team of 5", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = peft_model(ids).logits
    assert torch.allclose(_logits(loaded), expected, atol=1e-5)


def test_model_without_chat_template_is_refused(tmp_path, tiny_base):
    folder = tmp_path / "m"
    shutil.copytree(tiny_base, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no chat template"):
        load_for_inference(folder, device="cpu")


def test_template_differing_from_training_is_refused(tmp_path, tiny_base):
    folder = tmp_path / "m"
    shutil.copytree(tiny_base, folder)
    (folder / "manifest.json").write_text(json.dumps({"kind": "finetune", "chat_template_sha256": "0" * 64}))
    with pytest.raises(ModelError, match="differs from the one the model was trained with"):
        load_for_inference(folder, device="cpu")


def test_run_folder_resolves_to_its_registered_model(tmp_path, tiny_base):
    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "model")
    Registry().register(run / "model", name="cv", kind="finetune")
    ref = resolve_model(run)
    assert ref.path == run / "model" and ref.ref == "cv@1"  # lineage survives passing the run folder


def test_serving_dtype_is_bf16_only_for_large_models_on_a_cpu_with_native_bf16(tiny_base, monkeypatch):
    from cvml import modelio

    assert modelio.serving_dtype("float16", "cpu", tiny_base) == "float16"  # an explicit choice stands
    monkeypatch.setattr(modelio, "cpu_has_native_bf16", lambda: True)
    assert modelio._weight_count(tiny_base) > 0
    assert modelio.serving_dtype("auto", "cpu", tiny_base) == "float32"  # small: fp32 serves faster
    monkeypatch.setattr(modelio, "BF16_MIN_PARAMETERS", 1)
    assert modelio.serving_dtype("auto", "cpu", tiny_base) == "bfloat16"
    monkeypatch.setattr(modelio, "cpu_has_native_bf16", lambda: False)
    assert modelio.serving_dtype("auto", "cpu", tiny_base) == "float32"
