"""A Llama- or Qwen2-architecture transformers model as a GGUF file, and back.

What llama.cpp (and Ollama, and OpenVINO GenAI's GGUF reader) need in the file: the
hyper-parameters under the architecture's keys, the byte-level BPE tokenizer (tokens, their
types, merges, special ids), the chat template, and the tensors under GGUF's names. Llama
files store the query and key projections with rows permuted (llama.cpp rotates interleaved
pairs where transformers rotates halves); Qwen2 files use the halves convention as is.

`read_state` undoes all of it — dequantizes, un-permutes, renames — so the file can be
loaded back into the source's architecture and its logits compared with the source's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# transformers model_type → GGUF architecture.
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}
OUTTYPES = ("f16", "q8_0", "q4_0")
# llama.cpp's names for the pre-tokenizer regexes it knows: GPT-2's (a plain ByteLevel
# pre-tokenizer), and the Split patterns of Qwen2 and Llama 3 before a ByteLevel step.
GPT2_PRE = "gpt-2"
SPLIT_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}


def gguf_name(hf_name: str) -> str | None:
    if hf_name in _TOP:
        return _TOP[hf_name]
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"]:
        suffix = _LAYER.get(".".join(parts[3:]))
        if suffix:
            return f"blk.{parts[2]}.{suffix}"
    return None


def hf_name(name: str) -> str:
    inverse_top = {v: k for k, v in _TOP.items()}
    if name in inverse_top:
        return inverse_top[name]
    _, layer, *rest = name.split(".")
    inverse = {v: k for k, v in _LAYER.items()}
    return f"model.layers.{layer}.{inverse['.'.join(rest)]}"


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Halves → interleaved pairs, per head (llama.cpp's layout for Llama q/k rows)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads(config, name: str) -> int | None:
    if name.endswith("attn_q.weight") or name.endswith("attn_q.bias"):
        return config.num_attention_heads
    if name.endswith("attn_k.weight") or name.endswith("attn_k.bias"):
        return config.num_key_value_heads
    return None


def write(model, tokenizer, chat_template: str, path: Path, *, outtype: str, name: str) -> dict[str, Any]:
    """Write `model` (a transformers Llama/Qwen2 causal LM on the CPU) to `path`.

    Returns counts by tensor type, for the manifest.
    """
    import gguf

    config = model.config
    arch = ARCHITECTURES[config.model_type]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_key_length(int(head_dim))
    writer.add_value_length(int(head_dim))
    writer.add_rope_dimension_count(int(head_dim))
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    qtype = getattr(gguf.GGMLQuantizationType, outtype.upper())
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{outtype.upper()}"))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, chat_template, vocab_size=int(config.vocab_size))

    types: dict[str, int] = {}
    state = model.state_dict()
    for key, tensor in state.items():
        target = gguf_name(key)
        if target is None:
            if key == "lm_head.weight" or "rotary_emb" in key:
                continue
            raise ValueError(f"no GGUF name for tensor {key}")
        if target == "output.weight" and getattr(config, "tie_word_embeddings", False):
            continue  # tied: llama.cpp reads the output projection from token_embd
        data = tensor.detach().to("cpu").float().numpy()
        heads = _heads(config, target)
        if arch == "llama" and heads is not None:
            data = _permute(data, heads)
        # Norms and biases stay f32 (tiny, and precision-sensitive); matrices take the outtype,
        # except rows that are not whole quantization blocks (f16 then).
        kind = qtype
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if data.ndim < 2 or data.shape[-1] % block:
            kind = gguf.GGMLQuantizationType.F32 if data.ndim < 2 else gguf.GGMLQuantizationType.F16
        if kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(target, data.astype(np.float32))
        elif kind == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(target, data.astype(np.float16))
        else:
            writer.add_tensor(target, gguf.quants.quantize(data.astype(np.float32), kind), raw_dtype=kind)
        types[kind.name] = types.get(kind.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta") or getattr(config, "rope_theta", 10000.0)


def _add_tokenizer(writer, tokenizer, chat_template: str, *, vocab_size: int) -> None:
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"only byte-level BPE tokenizers can be written to GGUF here, not {model.get('type')}")
    pre = pre_tokenizer_name(spec.get("pre_tokenizer") or {})
    by_id = {i: tok for tok, i in model["vocab"].items()}
    special = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
    by_id.update(special)
    tokens, types = [], []
    for i in range(vocab_size):
        if i in special:
            tokens.append(special[i])
            types.append(gguf.TokenType.CONTROL)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:  # the embedding is padded past the tokenizer's vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(int(tokenizer.eos_token_id))
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(int(tokenizer.pad_token_id))
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(int(tokenizer.bos_token_id))
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template)


def pre_tokenizer_name(pre: dict[str, Any]) -> str:
    """llama.cpp's name for a tokenizer's pre-tokenization (how text is cut before BPE).

    Raises:
        ValueError: a pre-tokenizer llama.cpp has no name for (the file would tokenize
            differently from the model's own tokenizer).
    """
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return GPT2_PRE
    steps = pre.get("pretokenizers") or []
    if pre.get("type") == "Sequence" and len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel":
        name = SPLIT_PRE.get((steps[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    raise ValueError(f"llama.cpp has no name for this tokenizer's pre-tokenizer: {json.dumps(pre)[:200]}")


def read_metadata(path: Path) -> dict[str, Any]:
    """The architecture, the chat template and the tensor types a GGUF file declares."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    return {
        "architecture": arch,
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "tokens": len(reader.fields["tokenizer.ggml.tokens"].data),
        "pre_tokenizer": _field(reader, "tokenizer.ggml.pre"),
        "tensor_types": types,
    }


def read_state(path: Path, config) -> dict[str, Any]:
    """The file's tensors as a transformers state dict (float32 torch tensors) for `config`."""
    import gguf
    import torch

    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    state = {}
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).astype(np.float32)
        heads = _heads(config, tensor.name)
        if arch == "llama" and heads is not None:
            data = _unpermute(data, heads)
        state[hf_name(tensor.name)] = torch.from_numpy(np.ascontiguousarray(data))
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


class LlamaCppLM:
    """A GGUF file loaded by llama.cpp (llama-cpp-python), called like a transformers causal
    LM for perplexity and logits: `model(input_ids=tensor[1, n]).logits`.

    Raises:
        ImportError: llama-cpp-python is not installed.
    """

    def __init__(self, path: Path, n_ctx: int = 0):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False)

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's own tokenization of `text` (special tokens recognised, no BOS added)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def __call__(self, input_ids, logits_to_keep: int = 0, **_):
        import torch

        ids = input_ids[0].tolist()
        self.llm.reset()
        self.llm.eval(ids)
        logits = torch.from_numpy(np.array(self.llm.scores[: len(ids)], dtype=np.float32))[None]
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return _Output(logits)


class _Output:
    def __init__(self, logits):
        self.logits = logits
