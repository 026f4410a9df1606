"""cvml.quantize on the tiny fixtures: every method survives save → reload through
cvml.modelio with the in-memory logits, the API measures and registers honestly, and every
error says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvml.errors import ConfigError, DataError, DeviceError, RecipeError
from cvml.quantize import QuantizeError, get_method, quantize
from cvml.recipe import QuantizeSpec, validate_recipe

# Tiny spec for fast end-to-end runs: few calibration texts, short evaluation.
FAST = {"calibration_samples": 8, "eval_samples": 8, "quality_samples": 2, "max_new_tokens": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """The fixture model's matrices are tiny: on a shared CPU, thread hand-offs cost more than
    the arithmetic, so these tests run single-threaded (and restore the setting)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def _logits(model, rows):
    import torch

    with torch.inference_mode():
        return torch.cat([model(input_ids=torch.tensor([r]), use_cache=False).logits[0] for r in rows])


def _calibration(tokenizer, tiny_data, n=4):
    from cvml.data.records import load_records
    from cvml.quantize.calibration import calibration_batches

    records, _ = load_records(tiny_data)
    rows, digest = calibration_batches(tokenizer, records[:n], 256)
    return rows, digest, records


# --- methods and the recipe section ----------------------------------------------------------

def test_unknown_method_suggests_the_closest():
    with pytest.raises(ConfigError) as info:
        get_method("gptqq")
    assert "did you mean 'gptq'?" in info.value.hint and "int8" in info.value.hint


def test_spec_defaults_bits_per_method_and_rejects_what_a_method_cannot_store():
    assert QuantizeSpec().bits == 4 and QuantizeSpec(method="int8").bits == 8
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "q", "quantize": {"method": "int8", "bits": 4}})
    (path, message), = info.value.problems
    assert path == "quantize"
    assert "int8 cannot store 4-bit" in message and "set bits to one of [8]" in message and "gptq / rtn" in message
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "q", "quantize": {"method": "gptqq"}})
    assert "did you mean 'gptq'?" in info.value.problems[0][1]
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "q", "quantize": {"method": "int8", "group_size": 64}})
    assert "int8 keeps one scale per output channel; remove group_size" in info.value.problems[0][1]


def test_group_size_that_does_not_divide_in_features_is_refused_with_sizes_that_fit(tiny_base):
    model, tokenizer = _load(tiny_base)  # hidden 64, intermediate 128
    with pytest.raises(QuantizeError) as info:
        get_method("rtn").module().quantize_model(model, tokenizer, [], QuantizeSpec(method="rtn", group_size=128))
    assert "group_size 128 does not divide in_features 64" in info.value.message
    assert "--group-size 32 or 64 or -1" in info.value.hint


def test_missing_gptqmodel_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else real(name, *a))
    with pytest.raises(QuantizeError) as info:
        get_method("gptq").module()
    assert "gptqmodel" in info.value.message and info.value.hint == "pip install cvml[gptq]"


# --- every method: quantize, save, reload through modelio, same logits ------------------------

@pytest.mark.parametrize("method,bits", [("gptq", 4), ("rtn", 4), ("gptq", 8), ("int8", 8)])
def test_saved_model_reloads_through_modelio_with_the_in_memory_logits(tiny_base, tiny_data, tmp_path, method, bits):
    from cvml.manifest import build_manifest, write_manifest
    from cvml.modelio import load_for_inference

    spec = QuantizeSpec(method=method, bits=bits, **({} if method == "int8" else {"group_size": 32}))
    model, tokenizer = _load(tiny_base)
    rows, _, records = _calibration(tokenizer, tiny_data)
    probe = [r["input_ids"][0].tolist() for r in rows[:2]]
    fp = _logits(model, probe)
    backend = get_method(method).module()
    model = backend.quantize_model(model, tokenizer, rows, spec)
    out = tmp_path / method
    fmt = backend.save_model(model, out, spec)  # before any eval forward: GPT-QModel's CPU kernel repacks on the first
    tokenizer.save_pretrained(out)
    write_manifest(out, build_manifest("quantize", extra={"quantize": {"method": method, **fmt}}))
    in_memory = _logits(model.eval(), probe)

    loaded = load_for_inference(out, device="cpu")
    assert loaded.ref.kind == "quantized"
    reloaded = _logits(loaded.model, probe)
    # Same integers, scales and kernels on both sides: equal up to float rounding. A wrong
    # zero-point layout (v1 weights read as v2) shifts logits by tenths or more.
    assert (reloaded - in_memory).abs().max().item() <= 1e-5
    drift = (in_memory - fp).abs().max().item()
    assert 0 < drift < 2.0  # it did quantize, and stayed close to the float model
    if method in ("gptq", "rtn"):
        config = json.loads((out / "config.json").read_text())["quantization_config"]
        assert config["quant_method"] == "gptq" and config["bits"] == bits and config["format"] == "gptq"
        assert config.get("dataset") is None  # calibration texts are not copied into config.json


def test_int8_refuses_a_gpu(tmp_path):
    from cvml.quantize.int8 import load_model

    with pytest.raises(DeviceError, match="CPU kernels"):
        load_model(tmp_path, "cuda")


# --- data -------------------------------------------------------------------------------------

def test_data_comes_from_the_source_runs_manifest_with_its_holdout(tiny_data):
    from cvml.data.split import in_holdout
    from cvml.quantize.calibration import load_data

    manifest = {"inputs": {"train": {"path": str(tiny_data), "sha256": "x"}},
                "recipe": {"seed": 7, "data": {"validation_fraction": 0.2}}}
    data = load_data(QuantizeSpec(calibration_samples=10, eval_samples=500), None, manifest, seed=1)
    assert data.origin == "the source run's manifest"
    assert len(data.calibration) == 10
    assert all(in_holdout(r.group, 0.2, 7) for r in data.evaluation)  # the run's own validation split
    assert not {r.group for r in data.calibration} & {r.group for r in data.evaluation}
    with pytest.raises(DataError) as info:
        load_data(QuantizeSpec(), None, {}, seed=1)
    assert "--data" in info.value.hint


# --- end to end through the API -----------------------------------------------------------------

def test_quantize_registers_a_child_of_its_source_and_writes_report_and_manifest(tiny_base, tiny_data, tmp_path):
    from cvml.manifest import sha256_tree
    from cvml.modelio import load_for_inference
    from cvml.registry import Registry

    registry = Registry()
    registry.register(tiny_base, "tiny", "base")
    spec = QuantizeSpec(method="gptq", group_size=32, data=str(tiny_data), **FAST)
    result = quantize("tiny@1", spec, output=tmp_path / "q")

    assert result.registered == "tiny@2" and result.passed
    version = registry.resolve("tiny@2")
    assert version.kind == "quantized" and version.parent == "tiny@1"
    assert version.metadata["method"] == "gptq" and version.metadata["bits"] == 4
    assert result.roundtrip["max_abs_logit_diff"] <= 1e-5
    ppl = result.perplexity
    assert ppl["increase"] == pytest.approx(ppl["quantized"]["ppl"] / ppl["source"]["ppl"] - 1)
    assert ppl["source"]["examples"] == 8 and ppl["source"]["tokens"] > 8
    assert result.size["quantized_weights_bytes"] == (tmp_path / "q" / "model.safetensors").stat().st_size
    assert result.data["calibration_samples"] == 8 and len(result.data["calibration_sha256"]) == 64
    assert len(result.quality["samples"]) == 2

    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["kind"] == "quantize"
    assert manifest["inputs"]["source_model"]["sha256"] == sha256_tree(tiny_base)
    assert manifest["quantize"]["method"] == "gptq" and manifest["quantize"]["format"] == "gptq"
    assert manifest["calibration"]["sha256"] == result.data["calibration_sha256"]
    assert manifest["chat_template_sha256"] == load_for_inference("tiny@1").chat_template_sha256
    assert manifest["metrics"]["ppl_increase"] == pytest.approx(ppl["increase"])
    report = json.loads((tmp_path / "q" / "quantize_report.json").read_text())
    assert report["registered"] == "tiny@2"
    assert "Perplexity guard: no guard set" in (tmp_path / "q" / "quantize_report.md").read_text()
    assert load_for_inference("tiny@2").ref.kind == "quantized"  # serve/bench load it by name
    with pytest.raises(QuantizeError) as info:  # `tiny` is now the quantized version
        quantize("tiny", spec, output=tmp_path / "again")
    assert "already quantized" in info.value.message and "tiny@1" in info.value.hint


def test_the_guard_fails_a_costly_quantization_and_registers_nothing(tiny_base, tiny_data, tmp_path):
    from cvml.registry import Registry

    Registry().register(tiny_base, "tiny", "base")
    spec = QuantizeSpec(method="rtn", bits=2, group_size=32, data=str(tiny_data), max_ppl_increase=0.01, **FAST)
    result = quantize("tiny", spec, output=tmp_path / "q2")
    assert result.perplexity["increase"] > 0.01 and not result.passed
    assert result.registered is None and "perplexity rose" in result.not_registered_because
    assert Registry().versions("tiny")[-1].version == 1
    assert "FAIL" in (tmp_path / "q2" / "quantize_report.md").read_text()


def test_a_lora_adapter_is_merged_before_quantizing(tiny_base, tiny_data, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from cvml.modelio import load_for_inference

    model, tokenizer = _load(tiny_base)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)

    spec = QuantizeSpec(method="int8", data=str(tiny_data), **FAST)
    result = quantize(adapter, spec, output=tmp_path / "q8")
    assert result.source["kind"] == "adapter"
    probe = [tokenizer("Led a team of five engineers")["input_ids"]]
    quantized = _logits(load_for_inference(tmp_path / "q8").model, probe)
    merged = _logits(load_for_inference(adapter).model, probe)
    base = _logits(_load(tiny_base)[0], probe)
    assert (quantized - merged).abs().max() < (quantized - base).abs().max()


def test_refuses_an_existing_output_and_a_device_the_method_cannot_use(tiny_base, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("keep")
    spec = QuantizeSpec(method="int8", data=str(tiny_data), **FAST)
    with pytest.raises(ConfigError, match="exists and is not empty"):
        quantize(tiny_base, spec, output=out)
    assert (out / "x").read_text() == "keep"
    with pytest.raises(ConfigError, match="holds the source model"):
        quantize(tiny_base, spec, output=tiny_base, overwrite=True)
    assert (tiny_base / "config.json").is_file()
    monkeypatch.setattr("cvml.modelio.pick_device", lambda device: "cuda")
    with pytest.raises(ConfigError, match="int8 runs on cpu, not cuda"):
        quantize(tiny_base, spec, output=tmp_path / "other")


@pytest.mark.gpu
def test_gptq_quantizes_and_reloads_on_cuda(tiny_base, tiny_data, tmp_path):
    from cvml.modelio import load_for_inference

    spec = QuantizeSpec(method="gptq", group_size=32, device="cuda", data=str(tiny_data), **FAST)
    result = quantize(tiny_base, spec, output=tmp_path / "cuda")
    assert result.device.startswith("cuda") and result.roundtrip["max_abs_logit_diff"] <= result.roundtrip["rtol"] * max(
        result.roundtrip["max_abs_logit"], 1.0
    )
    assert result.perplexity["increase"] < 0.5
    loaded = load_for_inference(tmp_path / "cuda", device="cuda")
    assert next(loaded.model.parameters()).device.type == "cuda"

