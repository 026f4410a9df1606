"""The embedded default base model: shapes GPTQ can use, and a folder that loads through
the ordinary from_pretrained path with its chat template and special tokens."""

from __future__ import annotations

import json

import pytest


@pytest.mark.integration  # builds the default model (empty weights) through transformers
def test_default_tiny_model_has_linear_dims_divisible_by_64():
    """GPTQ group sizes (32/64) must divide every linear layer of the embedded default."""
    import torch
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    from cvml.tiny.model import TinySpec, tiny_config

    class _Tok:  # only what tiny_config reads
        eos_token_id, pad_token_id = 2, 3

        def __len__(self):
            return 3011  # an awkward size: the vocab is padded up to a multiple of 64

    with init_empty_weights():
        model = LlamaForCausalLM(tiny_config(TinySpec(), _Tok()))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 * 7 + 1
    for layer in linears:
        assert layer.in_features % 64 == 0 and layer.out_features % 64 == 0, layer



def test_built_base_loads_like_a_hub_model(tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "Led a team"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nLed a team<|im_end|>\n<|im_start|>assistant\n"
    # Special tokens are single ids, and byte-level BPE round-trips any text (PII, symbols).
    assert len(tok("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1
    text = "Cut costs 37% — €1.2M; jane.doe@example.com"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert model.config.vocab_size % 64 == 0 and model.config.vocab_size >= len(tok)
    gen = GenerationConfig.from_pretrained(tiny_base)
    assert gen.eos_token_id == tok.eos_token_id and gen.do_sample is False
    manifest = json.loads((tiny_base / "manifest.json").read_text())
    summary = manifest["summary"]
    assert summary["pretrain_loss_last"] < summary["pretrain_loss_first"] - 0.5
    assert len(manifest["inputs"]["pretrain_corpus"]["sha256"]) == 64
