"""serve's engine runs what `cvml quantize` writes: every method's folder, loaded through
modelio, decodes in a continuous batch exactly as `generate` does on that model."""

from __future__ import annotations

import pytest
import torch

from cvml.modelio import load_for_inference
from cvml.quantize import quantize
from cvml.recipe import QuantizeSpec
from cvml.serve.engine import Engine
from cvml.serve.types import GenerationRequest, SamplingParams

FAST = {"calibration_samples": 8, "eval_samples": 8, "quality_samples": 0, "max_new_tokens": 8}


@pytest.mark.parametrize(("method", "bits"), [("gptq", 4), ("rtn", 4), ("int8", 8)])
def test_engine_serves_a_quantized_model_like_generate(tiny_base, tiny_data, tmp_path, method, bits):
    group = {} if method == "int8" else {"group_size": 32}  # int8: one scale per output channel
    spec = QuantizeSpec(method=method, bits=bits, data=str(tiny_data), register_model=False, **group, **FAST)
    result = quantize(tiny_base, spec, output=tmp_path / method)
    loaded = load_for_inference(result.output_dir, device="cpu")
    assert loaded.ref.kind == "quantized"
    prompts = [loaded.tokenizer(t)["input_ids"] for t in ("Led a team of 5", "Managed the weekly release process for")]
    engine = Engine(loaded, max_batch_size=4)
    engine.start()
    try:
        handles = [
            engine.submit(GenerationRequest(prompt_ids=p, params=SamplingParams(max_new_tokens=12, ignore_eos=True)))
            for p in prompts
        ]
        outputs = [list(h.result(timeout=120).token_ids) for h in handles]
    finally:
        engine.stop()
    for prompt, got in zip(prompts, outputs):
        with torch.inference_mode():
            expected = loaded.model.generate(
                torch.tensor([prompt]), do_sample=False, max_new_tokens=12, min_new_tokens=12
            )[0, len(prompt) :].tolist()
        assert got == expected
