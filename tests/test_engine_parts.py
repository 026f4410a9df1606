"""The engine's building blocks on their own: the batch KV cache, per-row sampling,
incremental detokenization and stop strings."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from cvml.serve.detokenize import IncrementalDetokenizer, StopMatcher
from cvml.serve.kvcache import BatchKV, left_padded, padding_mask
from cvml.serve.sampling import SamplingBatch
from cvml.serve.types import SamplingParams


def cache_of(rows: list[list[float]], layers: int = 2) -> BatchKV:
    """A cache whose key at (row, column) is the given number (0 = padding), right-aligned."""
    width = max(len(r) for r in rows)
    keys = torch.zeros(len(rows), 1, width, 2)
    for i, row in enumerate(rows):
        keys[i, 0, width - len(row) :, :] = torch.tensor(row).unsqueeze(1)
    cache = DynamicCache()
    for layer in range(layers):
        cache.update(keys.clone(), -keys.clone(), layer)
    return BatchKV(cache, torch.tensor([len(r) for r in rows]))


def contents(kv: BatchKV) -> list[list[float]]:
    """The real (unpadded) keys of each row, checked identical across layers and values."""
    out = []
    for i, n in enumerate(kv.lengths.tolist()):
        row = kv.cache.layers[0].keys[i, 0, kv.width - n :, 0].tolist()
        for layer in kv.cache.layers:
            assert layer.keys[i, 0, kv.width - n :, 0].tolist() == row
            assert (-layer.values[i, 0, kv.width - n :, 0]).tolist() == row
        out.append(row)
    return out


def test_extend_left_pads_the_narrower_cache():
    running = cache_of([[1, 2, 3, 4], [5, 6]])
    running.extend(cache_of([[7, 8, 9, 10, 11, 12], [13]]))
    assert running.width == 6 and running.rows == 4
    assert contents(running) == [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12], [13]]
    keys = running.cache.layers[1].keys[:, 0, :, 0]
    assert keys[0, :2].tolist() == [0, 0] and keys[3, :5].tolist() == [0] * 5


def test_keep_reorders_and_trims_columns_that_are_padding_everywhere():
    kv = cache_of([[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11]])
    kv.keep(torch.tensor([2, 1]))
    assert kv.width == 3 and contents(kv) == [[9, 10, 11], [7, 8]]
    kv.keep(torch.tensor([1]))
    assert kv.width == 2 and contents(kv) == [[7, 8]]


def test_step_inputs_follow_the_lengths():
    kv = cache_of([[1, 2, 3], [4]])
    mask, positions = kv.step_inputs()
    assert mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert positions.tolist() == [[3], [1]]
    kv.advance()
    assert kv.lengths.tolist() == [4, 2]
    full = cache_of([[1, 2], [3, 4]])
    assert full.step_inputs()[0] is None  # nothing padded: the fast unmasked path


def test_left_padded_prompts():
    ids, mask, positions = left_padded([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert padding_mask(torch.tensor([0, 2]), 2).tolist() == [[0, 0], [1, 1]]


def test_sliding_window_caches_are_refused():
    from transformers.cache_utils import DynamicSlidingWindowLayer

    cache = DynamicCache()
    cache.layers = [DynamicSlidingWindowLayer(sliding_window=4)]
    with pytest.raises(TypeError, match="DynamicSlidingWindowLayer"):
        BatchKV(cache, torch.tensor([1]))


def batch(params: list[SamplingParams], prompts: list[list[int]], vocab=12, penalty=1.0) -> SamplingBatch:
    sampling = SamplingBatch(vocab, eos_ids=[2], default_penalty=penalty, device="cpu")
    for p, prompt in zip(params, prompts):
        sampling.add(p, prompt)
    return sampling


def test_greedy_rows_apply_the_penalty_like_transformers():
    torch.manual_seed(0)
    logits = torch.randn(3, 12)
    prompts = [[1, 3, 3], [4, 5], [6]]
    params = [SamplingParams(), SamplingParams(repetition_penalty=3.0), SamplingParams(repetition_penalty=1.0)]
    tokens = batch(params, prompts, penalty=1.3).sample(logits)
    for row, (prompt, penalty) in enumerate(zip(prompts, (1.3, 3.0, 1.0))):
        expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([prompt]), logits[row : row + 1].clone())
        assert tokens[row].item() == expected.argmax().item()


def test_observe_feeds_the_penalty_and_ignore_eos_masks_eos():
    logits = torch.zeros(2, 12)
    logits[:, 2] = 5.0  # EOS is the favourite
    logits[:, 7] = 4.0
    logits[:, 8] = 3.9
    sampling = batch([SamplingParams(ignore_eos=True, repetition_penalty=2.0), SamplingParams()], [[1], [1]])
    first = sampling.sample(logits)
    assert first.tolist() == [7, 2]
    sampling.observe(first)
    assert sampling.sample(logits).tolist()[0] == 8  # 7 is now penalised: 4.0 / 2 < 3.9


def test_seeded_sampling_is_reproducible_and_respects_top_p():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.0, 0.3, 0.15] + [0.0] * 7]).clamp_min(1e-12)).repeat(2, 1)
    hot = SamplingParams(temperature=1.0, top_p=0.8, seed=5)
    draws = []
    for _ in range(2):
        sampling = batch([hot, SamplingParams(temperature=1.0, top_p=0.8, seed=6)], [[0], [0]])
        draws.append([sampling.sample(logits).tolist() for _ in range(200)])
    assert draws[0] == draws[1]  # same seeds, same tokens
    picked = {t for step in draws[0] for t in step}
    assert picked == {1, 3}  # the nucleus of 0.8 is {1: 0.5, 3: 0.3}
    assert [s[0] for s in draws[0]] != [s[1] for s in draws[0]]  # different seeds differ
    nucleus_of_one = batch([SamplingParams(temperature=1.0, top_p=0.01, seed=1)], [[0]])
    assert {nucleus_of_one.sample(logits[:1]).item() for _ in range(20)} == {1}


def test_keep_extend_and_row_subsets_stay_aligned():
    logits = torch.full((3, 12), 0.5)
    for row, token in enumerate((4, 5, 6)):
        logits[row, token] = 1.0
    sampling = batch([SamplingParams()] * 2, [[0], [0]])
    other = batch([SamplingParams(repetition_penalty=100.0)], [[6]])
    sampling.extend(other)
    assert sampling.sample(logits).tolist()[:2] == [4, 5]
    assert sampling.sample(logits).tolist()[2] != 6  # the third row kept its own penalty and prompt
    assert sampling.sample(logits[1:2], rows=[1]).tolist() == [5]
    sampling.keep([2, 0])
    assert sampling.rows == 2 and sampling.params[0].repetition_penalty == 100.0


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


class WithoutBackend:
    """The same tokenizer seen as a slow one (no `backend_tokenizer`): the window path."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def decode(self, *args, **kwargs):
        return self._tokenizer.decode(*args, **kwargs)


@pytest.fixture(params=["fast", "slow"])
def detokenizer(request, tokenizer):
    return lambda: IncrementalDetokenizer(tokenizer if request.param == "fast" else WithoutBackend(tokenizer))


def test_detokenizer_never_splits_a_character(tokenizer, detokenizer):
    text = "Zürich – café 日本 naïve 🚀 led 12 engineers"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text) // 2  # byte-level pieces: many characters span several ids
    detok = detokenizer()
    deltas = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert deltas.count("") > 3  # held back while characters were incomplete


def test_detokenizer_drops_special_tokens_and_flushes_a_broken_tail(tokenizer, detokenizer):
    ids = tokenizer.encode("ok 日", add_special_tokens=False)
    detok = detokenizer()
    out = "".join(detok.push(i) for i in ids[:-1]) + detok.push(tokenizer.eos_token_id)
    assert out == "ok " and detok.flush() == "\ufffd"  # the last byte of 日 never came
    assert detok.flush() == ""


def test_stop_matcher_holds_back_partial_matches():
    stops = StopMatcher(["END", "\n\n"])
    assert stops.feed("hello E") == ("hello ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("Dless") == ("", True)  # "END" completed: nothing from it is sent
    other = StopMatcher(["END"])
    assert other.feed("EN") == ("", False)
    assert other.feed("Ough") == ("ENOugh", False)
    assert other.flush() == ""
    tail = StopMatcher(["END"])
    assert tail.feed("the E") == ("the ", False) and tail.flush() == "E"
    assert StopMatcher(["", "x"]).feed("abc") == ("abc", False)
