"""The embedded default base model: a byte-level BPE tokenizer and a small Llama, built here.

No model hub is reachable from cvml's machines, so the demo and the tests build their
own base: a tokenizer trained with `tokenizers` on CV-domain text, a chat template with
its special tokens, and a Llama-architecture model briefly pre-trained on the same text.
It is saved with `save_pretrained`, so every later step loads it through the ordinary
`from_pretrained` path, exactly like a hub model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

EOS = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", EOS, PAD]

# ChatML: the assistant turn starts after "<|im_start|>assistant\n" and ends with EOS,
# so generation stops at EOS and the prompt is a string prefix of the full conversation.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape and pre-training budget. Every linear dimension is a multiple of 64 so GPTQ
    group sizes (32/64) divide them; vocab is padded up to a multiple of 64 too."""

    vocab_size: int = 4096
    hidden_size: int = 192
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 6
    num_kv_heads: int = 2
    max_position_embeddings: int = 512
    pretrain_seq_len: int = 256
    pretrain_batch: int = 16
    pretrain_epochs: float = 2.0
    pretrain_lr: float = 3e-3
    corpus_docs: int = 3000


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Byte-level BPE with cvml's special tokens and chat template, as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
        model_max_length=TinySpec.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(spec: TinySpec, tokenizer):
    from transformers import LlamaConfig

    vocab = int(math.ceil(len(tokenizer) / 64) * 64)
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def pretrain(model, tokenizer, texts: Sequence[str], spec: TinySpec, seed: int, on_step: Callable | None = None):
    """Causal-LM pre-training on documents joined by <|endoftext|>; returns per-step losses."""
    import torch

    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(sep)
    n_chunks = len(stream) // spec.pretrain_seq_len
    chunks = torch.tensor(stream[: n_chunks * spec.pretrain_seq_len]).view(n_chunks, spec.pretrain_seq_len)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, n_chunks // spec.pretrain_batch)
    total = max(1, int(steps_per_epoch * spec.pretrain_epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    model.train()
    losses: list[float] = []
    order = torch.randperm(n_chunks, generator=g)
    for step in range(total):
        start = (step % steps_per_epoch) * spec.pretrain_batch
        if step and step % steps_per_epoch == 0:
            order = torch.randperm(n_chunks, generator=g)
        batch = chunks[order[start : start + spec.pretrain_batch]]
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, total, losses[-1])
    model.eval()
    return losses, len(stream)


def build_base_model(
    out_dir: str | Path,
    seed: int = 0,
    spec: TinySpec = TinySpec(),
    corpus: Sequence[str] | None = None,
    on_step: Callable | None = None,
) -> dict:
    """Build tokenizer + model, pre-train, and save everything `from_pretrained` needs.

    Args:
        out_dir: folder to write (config, safetensors, tokenizer, generation config, manifest).
        seed: seeds the corpus, initialisation and data order.
        spec: sizes and budget; tests pass a smaller one.
        corpus: pre-training texts; default is cvml's synthetic CV-domain corpus.
        on_step: progress callback (step, total, loss).

    Returns:
        A summary dict (also stored in manifest.json).
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from cvml._quiet import quiet_libraries
    from cvml.manifest import build_manifest, write_manifest

    quiet_libraries()
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        from cvml.tiny.synth import pretraining_corpus

        corpus = pretraining_corpus(spec.corpus_docs, seed=seed + 1)
    texts = list(corpus)
    tokenizer = train_tokenizer(texts, spec.vocab_size)

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(spec, tokenizer))
    losses, n_tokens = pretrain(model, tokenizer, texts, spec, seed, on_step)

    model.generation_config = GenerationConfig(
        max_new_tokens=96,
        do_sample=False,
        repetition_penalty=1.1,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    corpus_path = out / "pretrain_corpus.jsonl"
    with corpus_path.open("w", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps({"text": text}) + "\n")
    summary = {
        "path": str(out.resolve()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.config.vocab_size,
        "spec": asdict(spec),
        "corpus_docs": len(texts),
        "corpus_tokens": n_tokens,
        "pretrain_steps": len(losses),
        "pretrain_loss_first": losses[0],
        "pretrain_loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.time() - started, 1),
    }
    write_manifest(out, build_manifest("tiny-base", inputs={"pretrain_corpus": corpus_path}, seed=seed, extra={"summary": summary}))
    return summary
