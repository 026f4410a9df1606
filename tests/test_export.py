"""`cvml export` on the tiny fixtures: the GGUF file loads in llama.cpp and the OpenVINO folder
in OpenVINO GenAI, each computes the source's logits within its quantization cost, the chat
template travels with the model, and exports register as children of their source."""

from __future__ import annotations

import json

import pytest

from cvml.errors import ModelError, RecipeError
from cvml.quantize.export import export
from cvml.recipe import ExportSpec, validate_recipe

FAST = {"eval_samples": 8, "calibration_samples": 8}


@pytest.fixture
def registered(tiny_base):
    from cvml.registry import Registry

    registry = Registry()
    registry.register(tiny_base, "tiny", "base")
    return registry


@pytest.mark.parametrize(("outtype", "max_increase", "min_agreement"), [("f16", 0.001, 0.99), ("q8_0", 0.01, 0.95)])
def test_gguf_loads_in_llama_cpp_with_the_sources_logits(registered, tiny_data, tmp_path, outtype, max_increase, min_agreement):
    result = export("tiny@1", ExportSpec(format="gguf", weights=outtype, data=str(tiny_data), **FAST), output=tmp_path / "g")

    assert result.runtime["runtime"] == "llama.cpp"  # read back by the runtime that serves it
    assert abs(result.perplexity["increase"]) <= max_increase
    assert result.logits["top1_agreement"] >= min_agreement and result.logits["positions"] > 8
    assert result.runtime["chat_template_matches"] and result.runtime["architecture"] == "llama"
    assert result.runtime["tokenizer_matches"] and result.runtime["pre_tokenizer"] == "gpt-2"
    kinds = set(result.runtime["tensor_types"])
    assert kinds == {outtype.upper(), "F32"}  # matrices in the outtype, norms in f32
    assert result.size["exported_weights_bytes"] == (tmp_path / "g" / "model.gguf").stat().st_size
    assert result.registered == "tiny@2"


def test_gguf_file_holds_the_chat_template_and_reads_back_to_the_same_weights(loaded, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from cvml.quantize import gguf_format

    path = tmp_path / "m.gguf"
    gguf_format.write(loaded.model, loaded.tokenizer, loaded.tokenizer.chat_template, path, outtype="f16", name="tiny")
    meta = gguf_format.read_metadata(path)
    assert meta["chat_template"] == loaded.tokenizer.chat_template
    assert meta["eos_token_id"] == loaded.tokenizer.eos_token_id
    assert meta["tokens"] == loaded.model.config.vocab_size
    back = AutoModelForCausalLM.from_config(loaded.model.config)
    back.load_state_dict(gguf_format.read_state(path, loaded.model.config), strict=False)
    back.tie_weights()
    ids = torch.tensor([loaded.tokenizer("Led a team of five engineers")["input_ids"]])
    with torch.no_grad():
        diff = (back.eval()(ids).logits - loaded.model(ids).logits).abs().max().item()
    assert diff < 0.02  # f16 rounding only: the q/k permutation and names undo exactly


def test_openvino_int4_is_calibrated_and_registered_as_a_child(registered, tiny_data, tmp_path):
    result = export("tiny@1", ExportSpec(format="openvino", weights="int4", data=str(tiny_data), **FAST),
                    output=tmp_path / "ov")

    assert result.runtime["runtime"] == "openvino"
    assert result.params["mode"] == "int4_asym" and result.params["data_aware"] and result.params["calibration_rows"] == 8
    assert result.params["group_size"] in (32, 64, 128)
    assert abs(result.perplexity["increase"]) < 0.1 and result.logits["top1_agreement"] >= 0.8
    assert len(result.data["calibration_sha256"]) == 64
    version = registered.resolve("tiny@2")
    assert version.kind == "exported" and version.parent == "tiny@1"
    assert version.metadata["format"] == "openvino" and version.metadata["weights"] == "int4"
    manifest = json.loads((tmp_path / "ov" / "manifest.json").read_text())
    assert manifest["kind"] == "export" and manifest["export"]["format"] == "openvino"
    assert manifest["metrics"]["ppl_increase"] == pytest.approx(result.perplexity["increase"])


def test_openvino_folder_generates_in_genai_what_the_engine_serves(tiny_openvino):
    """OpenVINO GenAI's own pipeline on the folder and cvml's openvino engine agree token for token."""
    import numpy as np
    import openvino as ov
    import openvino_genai

    from cvml.serve.openvino_engine import OpenVinoEngine
    from cvml.serve.types import GenerationRequest, SamplingParams

    tokenizer = tiny_openvino.tokenizer
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Rewrite: Led a team of five engineers"}],
                                        add_generation_prompt=True, tokenize=True)["input_ids"]
    pipeline = openvino_genai.LLMPipeline(str(tiny_openvino.folder), "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens, config.apply_chat_template, config.ignore_eos = 12, False, True
    config.repetition_penalty = 1.0
    direct = pipeline.generate(ov.Tensor(np.asarray([ids], dtype=np.int64)), config).tokens[0]

    engine = OpenVinoEngine(tiny_openvino.folder, tokenizer, max_batch_size=4)
    engine.start()
    try:
        handles = [engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=12, ignore_eos=True,
                                                                           repetition_penalty=1.0)))
                   for _ in range(3)]
        results = [h.result(timeout=60) for h in handles]
    finally:
        engine.stop()
    assert [list(r.token_ids) for r in results] == [list(direct)] * 3
    assert all(r.finish_reason == "length" and r.stats.completion_tokens == 12 for r in results)
    assert results[0].text == tokenizer.decode(direct)


def test_the_openvino_engine_serves_only_openvino_exports(tiny_base):
    from cvml.modelio import resolve_model
    from cvml.serve.openvino_engine import openvino_opener
    from cvml.recipe import ServeSpec

    with pytest.raises(ModelError) as info:
        openvino_opener(ServeSpec(engine="openvino"))("a", resolve_model(tiny_base))
    assert "not an OpenVINO export" in info.value.message and "cvml export openvino" in info.value.hint


def test_an_export_is_refused_by_transformers_loading_with_the_way_to_serve_it(registered, tiny_data, tmp_path):
    from cvml.modelio import load_for_inference

    export("tiny@1", ExportSpec(format="gguf", weights="q8_0", data=str(tiny_data), **FAST), output=tmp_path / "g")
    with pytest.raises(ModelError) as info:
        load_for_inference("tiny@2")
    assert "gguf export" in info.value.message and "llama.cpp" in info.value.hint


def test_export_weights_must_fit_the_format():
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "x", "export": {"format": "gguf", "weights": "int4"}})
    [(path, message)] = info.value.problems
    assert path == "export" and "q8_0" in message
    assert ExportSpec(format="gguf").weights == "q8_0" and ExportSpec().weights == "int8"


def test_cli_export_gguf_prints_json_and_exits_1_when_the_guard_fails(registered, tiny_data, tmp_path, runner):
    from cvml.cli.main import app

    ok = runner.invoke(app, ["export", "gguf", "tiny@1", "--outtype", "f16", "--data", str(tiny_data), "--out",
                             str(tmp_path / "a"), "--set", "export.eval_samples=4", "--json"])
    assert ok.exit_code == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["format"] == "gguf" and body["weights"] == "f16" and body["passed"]
    strict = runner.invoke(app, ["export", "gguf", "tiny@1", "--outtype", "q4_0", "--data", str(tiny_data), "--out",
                                 str(tmp_path / "b"), "--max-ppl-increase", "0.000001", "--json"])
    assert strict.exit_code == 1
    body = json.loads(strict.stdout)
    assert not body["passed"] and body["registered"] is None and "perplexity rose" in body["not_registered_because"]


def test_prefix_caching_reuses_a_shared_prompt_without_changing_a_token(tiny_openvino):
    """Two tailorings of one CV section to two jobs share the prompt up to the job (the CV
    comes first in the prompt); with the prefix cache on, the answers are those without it."""
    from cvml.prompts import build_messages
    from cvml.serve.openvino_engine import OpenVinoEngine
    from cvml.serve.types import GenerationRequest, SamplingParams

    tokenizer = tiny_openvino.tokenizer
    section = "Led a team of five engineers; cut API latency by 25% for 1,200 users."
    prompts = [
        tokenizer.apply_chat_template(build_messages("tailor_section", section, job), add_generation_prompt=True,
                                      tokenize=True)["input_ids"]
        for job in ("Backend engineer, Python", "Engineering manager, remote")
    ]
    shared = next(i for i, (a, b) in enumerate(zip(*prompts)) if a != b)
    assert shared > len(prompts[0]) // 2  # the CV, not the job, opens the prompt
    answers = {}
    for caching in (True, False):
        engine = OpenVinoEngine(tiny_openvino.folder, tokenizer, max_batch_size=2, prefix_caching=caching)
        engine.start()
        try:
            answers[caching] = [engine.submit(GenerationRequest(list(p), SamplingParams(max_new_tokens=10)))
                                .result(timeout=60).token_ids for p in prompts * 2]
        finally:
            engine.stop()
    assert answers[True] == answers[False]
    assert answers[True][:2] == answers[True][2:]  # a regeneration from the cache is the same answer


def test_the_pre_tokenizer_is_named_as_llama_cpp_knows_it_or_refused():
    from cvml.quantize.gguf_format import SPLIT_PRE, pre_tokenizer_name

    assert pre_tokenizer_name({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2"
    for regex, name in SPLIT_PRE.items():  # Qwen2's and Llama 3's: a Split, then ByteLevel without its regex
        spec = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": regex}},
                                                      {"type": "ByteLevel", "use_regex": False}]}
        assert pre_tokenizer_name(spec) == name
    with pytest.raises(ValueError, match="no name"):
        pre_tokenizer_name({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": r"\d"}},
                                                                  {"type": "ByteLevel", "use_regex": False}]})
