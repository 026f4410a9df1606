"""Packing: every example lands once, rows fit, and a packed row computes exactly the
logits and loss its examples get when run alone (no cross-example attention)."""

from __future__ import annotations

import random

import pytest
import torch

from cvml.data.encode import IGNORE_INDEX, Example
from cvml.train.packing import collate, pack, packing_efficiency, unpacked


def _examples(n: int, seed: int = 0, vocab: int = 200) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, c = rng.randint(3, 30), rng.randint(2, 20)
        ids = [rng.randrange(4, vocab) for _ in range(p + c)]
        out.append(Example(ids, [IGNORE_INDEX] * p + ids[p:]))
    return out


def test_pack_places_every_example_once_within_seq_len():
    examples = _examples(300)
    rows = pack(examples, seq_len=128)
    placed = [id(e) for row in rows for e in row.examples]
    assert sorted(placed) == sorted(id(e) for e in examples)
    assert all(len(row) <= 128 for row in rows)
    # First-fit-decreasing is near the lower bound on rows.
    lower = -(-sum(len(e) for e in examples) // 128)
    assert len(rows) <= lower + 2
    assert packing_efficiency(rows, 4) > 0.95
    assert packing_efficiency(unpacked(examples), 4) < 0.8


def test_pack_is_deterministic():
    examples = _examples(100, seed=3)
    a = [[id(e) for e in r.examples] for r in pack(examples, 96)]
    b = [[id(e) for e in r.examples] for r in pack(examples, 96)]
    assert a == b


def _members(rows) -> list[list[int]]:
    return [[id(e) for e in r.examples] for r in rows]


def _pairs(rows) -> set[frozenset[int]]:
    return {frozenset((id(a), id(b))) for r in rows for a in r.examples for b in r.examples if a is not b}


def test_each_epoch_repacks_from_a_seeded_shuffle():
    from cvml.train.plan import epoch_rows

    examples = _examples(300)
    epochs = [epoch_rows(examples, 128, seed=7, epoch=e) for e in range(3)]
    # Same layout (row count, lengths in each row) every epoch, so the plan's steps hold ...
    layout = [[[len(e) for e in r.examples] for r in rows] for rows in epochs]
    assert layout[0] == layout[1] == layout[2]
    assert all(packing_efficiency(rows, 4) == packing_efficiency(pack(examples, 128), 4) for rows in epochs)
    # ... but the examples sharing a row change from one epoch to the next,
    shared = len(_pairs(epochs[0]) & _pairs(epochs[1])) / len(_pairs(epochs[0]))
    assert shared < 0.5
    # and each epoch's rows are a pure function of (seed, epoch): a resumed run repacks identically.
    assert _members(epoch_rows(examples, 128, seed=7, epoch=1)) == _members(epochs[1])
    assert _members(epoch_rows(examples, 128, seed=8, epoch=1)) != _members(epochs[1])


def test_data_order_deals_each_epochs_rows_once():
    from types import SimpleNamespace

    from cvml.train.plan import DataOrder, Plan

    examples = _examples(300)
    n_rows = len(pack(examples, 128))
    plan = Plan(
        examples=300, validation_examples=0, train_tokens=0, label_tokens=0, rows=n_rows, packing=True,
        packing_efficiency=1.0, world_size=2, micro_batch_size=2, grad_accum=2, steps_per_epoch=n_rows // 8,
        total_steps=3 * (n_rows // 8), epochs=3.0, warmup_steps=0, rows_per_step=8,
        rows_unused_per_epoch=n_rows % 8, trainable_parameters=0, total_parameters=0,
    )
    data = SimpleNamespace(train_examples=examples, train_rows=pack(examples, 128))
    order = DataOrder(plan, data, seed=7, seq_len=128)
    seen = []
    for epoch in range(2):
        steps = range(epoch * plan.steps_per_epoch, (epoch + 1) * plan.steps_per_epoch)
        rows = [row for step in steps for rank in (0, 1) for mb in order.step_batches(step, rank) for row in mb]
        assert len(rows) == len({id(r) for r in rows}) == plan.steps_per_epoch * plan.rows_per_step
        seen.append(rows)
    assert _pairs(seen[0]) != _pairs(seen[1])
    again = DataOrder(plan, data, seed=7, seq_len=128)  # a resumed run, starting mid-epoch 1
    step = plan.steps_per_epoch + 3
    assert [_members(mb) for mb in again.step_batches(step, 1)] == [_members(mb) for mb in order.step_batches(step, 1)]


def test_collate_restarts_positions_and_masks_padding():
    examples = _examples(5, seed=1)
    rows = pack(examples, 256)
    batch = collate(rows, pad_id=0)
    row = rows[0]
    at = 0
    for ex in row.examples:
        assert batch["position_ids"][0, at : at + len(ex)].tolist() == list(range(len(ex)))
        assert batch["labels"][0, at : at + len(ex)].tolist() == ex.labels
        at += len(ex)
    assert batch["n_tokens"] == sum(len(r) for r in rows)


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked(llama, attn):
    llama.config._attn_implementation = attn
    examples = _examples(4, seed=2, vocab=256)
    batch = collate(pack(examples, 256), pad_id=0)
    assert batch["input_ids"].shape[0] == 1  # all four share one row
    with torch.no_grad():
        packed = llama(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        at = 0
        for ex in pack(examples, 256)[0].examples:
            alone = llama(input_ids=torch.tensor([ex.input_ids])).logits[0]
            torch.testing.assert_close(packed[at : at + len(ex)], alone, atol=1e-5, rtol=1e-4)
            at += len(ex)


def test_masked_logits_loss_matches_full_loss(llama):
    from cvml.train.loop import token_loss_sum

    llama.config._attn_implementation = "sdpa"
    examples = _examples(6, seed=4, vocab=256)
    batch = collate(pack(examples, 128), pad_id=0)
    ours = token_loss_sum(llama, batch, "cpu")
    with torch.no_grad():
        # use_cache=False matters: with a cache, transformers skips packed-sequence masking.
        logits = llama(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    labels = batch["labels"][:, 1:]
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-5, atol=1e-4)
    assert int((labels != IGNORE_INDEX).sum()) == sum(e.n_label_tokens for e in examples)
