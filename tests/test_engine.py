"""The continuous-batching engine on the tiny model: exact greedy equality with
`model.generate`, requests joining and leaving mid-flight, cancellation, per-request
failure isolation, admission control, deadlines, drain, stats and streaming."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from cvml.serve.engine import Engine
from cvml.serve.sampling import SamplingBatch
from cvml.serve.types import (
    EngineUnavailableError,
    GenerationRequest,
    InvalidRequestError,
    PromptTooLongError,
    QueueFullError,
    SamplingParams,
)

# The tiny model repeats itself under its stored penalty (1.1); a strong penalty makes
# greedy outputs long and varied, so a wrong cache or position shows up as a different token.
VARIED = 2.0


@pytest.fixture(scope="module")
def prompts(loaded):
    """Chat prompts built the way serve builds them, plus short plain-text ones: lengths vary."""
    from cvml.prompts import build_messages
    from cvml.tiny.synth import generate_records

    tok = loaded.tokenizer
    records = generate_records(4, seed=3)
    chat = []
    for record in records[:4]:
        ids = tok.apply_chat_template(
            build_messages(record["task"], record["source_text"], record.get("job_description")),
            add_generation_prompt=True,
        )
        chat.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    plain = [tok.encode(r["source_text"][:60], add_special_tokens=False) for r in records[4:8]]
    out = chat + plain
    assert len({len(p) for p in out}) >= 5 and max(len(p) for p in plain) < 60
    return out


@pytest.fixture
def engine(loaded):
    engines = []

    def make(**kwargs) -> Engine:
        eng = Engine(loaded, **kwargs)
        eng.start()
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        eng.stop()


def reference(loaded, prompt, new_tokens, penalty=None, ignore_eos=True) -> list[int]:
    """What `model.generate` returns for this request alone."""
    kwargs = {"min_new_tokens": new_tokens} if ignore_eos else {}
    if penalty is not None:
        kwargs["repetition_penalty"] = penalty
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=new_tokens, **kwargs)
    return out[0, len(prompt) :].tolist()


def greedy(n, penalty=VARIED, **kwargs) -> SamplingParams:
    return SamplingParams(max_new_tokens=n, repetition_penalty=penalty, ignore_eos=True, **kwargs)


def wait_for(predicate, timeout=30.0):
    until = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < until, "condition not reached in time"
        time.sleep(0.002)


def submit(eng, prompt, params, **kwargs):
    return eng.submit(GenerationRequest(prompt_ids=list(prompt), params=params, **kwargs))


def test_continuous_batch_matches_generate_per_request(loaded, prompts, engine):
    eng = engine(max_batch_size=4)
    plan = [  # (prompt, new tokens, penalty, ignore_eos): finishing at different steps
        (prompts[0], 24, VARIED, True),
        (prompts[4], 80, VARIED, True),  # still running when the last wave joins
        (prompts[1], 12, VARIED, True),
        (prompts[5], 30, None, False),  # the model's own penalty, stopping at EOS if it comes
        (prompts[2], 20, VARIED, True),
        (prompts[6], 16, VARIED, True),
        (prompts[3], 28, VARIED, True),
    ]

    def params(n, penalty, ignore_eos):
        return SamplingParams(max_new_tokens=n, repetition_penalty=penalty, ignore_eos=ignore_eos)

    first = [submit(eng, p, params(*rest)) for p, *rest in plan[:2]]
    wait_for(lambda: len(first[0].stats.token_times) >= 3)  # the batch is decoding
    second = [submit(eng, p, params(*rest)) for p, *rest in plan[2:5]]  # one of them waits for a slot
    wait_for(lambda: len(second[0].stats.token_times) >= 2)
    third = [submit(eng, p, params(*rest)) for p, *rest in plan[5:]]
    handles = first + second + third
    results = [h.result(timeout=60) for h in handles]

    for (prompt, n, penalty, ignore_eos), result in zip(plan, results):
        expected = reference(loaded, prompt, n, penalty, ignore_eos)
        assert list(result.token_ids) == expected
        assert result.text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
        assert result.finish_reason == ("length" if len(expected) == n and expected[-1] not in eng.eos_ids else "stop")
    # Requests really joined a batch that was mid-flight, and left it at different steps.
    assert second[0].stats.scheduled_at < first[1].stats.finished_at
    assert third[0].stats.scheduled_at < first[1].stats.finished_at
    assert first[0].stats.first_token_at < second[0].stats.scheduled_at
    assert max(h.stats.scheduled_at for h in handles) > min(h.stats.finished_at for h in handles)
    assert eng.num_running == 0 and eng.num_waiting == 0


def test_seeded_sampling_is_independent_of_batch_company(loaded, prompts, engine):
    eng = engine(max_batch_size=8)
    sampled = SamplingParams(max_new_tokens=24, temperature=0.9, top_p=0.95, seed=11, ignore_eos=True)
    alone = submit(eng, prompts[0], sampled).result(timeout=60)
    crowd = [submit(eng, p, greedy(24)) for p in prompts[1:4]]
    again = submit(eng, prompts[0], sampled)
    other_seed = submit(eng, prompts[0], SamplingParams(max_new_tokens=24, temperature=0.9, seed=12, ignore_eos=True))
    assert again.result(timeout=60).token_ids == alone.token_ids
    assert other_seed.result(timeout=60).token_ids != alone.token_ids
    assert len(set(alone.token_ids)) > 3  # it sampled, not a greedy loop
    for h in crowd:
        assert h.result(timeout=60).finish_reason == "length"


def test_cancel_frees_the_slot_and_spares_the_others(loaded, prompts, engine):
    eng = engine(max_batch_size=2)
    doomed = submit(eng, prompts[7], greedy(400))
    survivor = submit(eng, prompts[4], greedy(60))
    queued = submit(eng, prompts[5], greedy(10))
    wait_for(lambda: len(doomed.stats.token_times) >= 3)
    assert queued.stats.scheduled_at is None  # no slot for it yet
    doomed.cancel()
    cancelled = doomed.result(timeout=60)
    assert cancelled.finish_reason == "cancelled"
    assert 3 <= cancelled.stats.completion_tokens < 400
    assert queued.result(timeout=60).finish_reason == "length"
    assert queued.stats.scheduled_at >= cancelled.stats.finished_at
    assert list(survivor.result(timeout=60).token_ids) == reference(loaded, prompts[4], 60, VARIED)
    assert list(queued.result().token_ids) == reference(loaded, prompts[5], 10, VARIED)


def test_cancel_while_queued(prompts, engine):
    eng = engine(max_batch_size=1)
    busy = submit(eng, prompts[7], greedy(400))
    waiting = submit(eng, prompts[1], greedy(5))
    waiting.cancel()
    result = waiting.result(timeout=60)
    assert result.finish_reason == "cancelled" and result.token_ids == () and result.stats.scheduled_at is None
    busy.cancel()


def test_failure_of_one_request_does_not_take_the_batch_down(loaded, prompts, engine, monkeypatch):
    original = SamplingBatch.sample

    def poisoned(self, logits, rows=None):
        chosen = [self.params[i] for i in (rows if rows is not None else range(self.rows))]
        if any(p.seed == 666 for p in chosen):
            raise RuntimeError("injected sampling failure")
        return original(self, logits, rows)

    monkeypatch.setattr(SamplingBatch, "sample", poisoned)
    eng = engine(max_batch_size=4)
    healthy = [submit(eng, p, greedy(20)) for p in (prompts[0], prompts[4])]
    wait_for(lambda: len(healthy[0].stats.token_times) >= 2)
    bad = submit(eng, prompts[1], greedy(20, seed=666))
    late = submit(eng, prompts[5], greedy(12))
    failed = bad.result(timeout=60)
    assert failed.finish_reason == "error" and "injected sampling failure" in failed.error
    assert failed.token_ids == ()
    for handle, prompt, n in zip(healthy + [late], (prompts[0], prompts[4], prompts[5]), (20, 20, 12)):
        result = handle.result(timeout=60)
        assert result.finish_reason == "length"
        assert list(result.token_ids) == reference(loaded, prompt, n, VARIED)


def test_a_failed_decode_step_fails_that_batch_and_the_engine_keeps_serving(loaded, prompts, engine, monkeypatch):
    eng = engine(max_batch_size=4)
    forward = loaded.model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] == 1 and ids.shape[0] == 2:  # a decode step of the two-request batch
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected step failure")
        return forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", flaky)
    first = [submit(eng, p, greedy(20)) for p in prompts[:2]]
    results = [h.result(timeout=60) for h in first]
    assert {r.finish_reason for r in results} == {"error"}
    assert all("injected step failure" in r.error for r in results)
    monkeypatch.setattr(loaded.model, "forward", forward)
    after = submit(eng, prompts[2], greedy(8)).result(timeout=60)
    assert list(after.token_ids) == reference(loaded, prompts[2], 8, VARIED)


def test_admission_control(loaded, prompts, engine):
    eng = engine(max_batch_size=1, max_queue=2)
    running = submit(eng, prompts[7], greedy(400))
    wait_for(lambda: eng.num_running == 1)
    queued = [submit(eng, prompts[1], greedy(4)), submit(eng, prompts[2], greedy(4))]
    assert eng.num_running == 1 and eng.num_waiting == 2
    with pytest.raises(QueueFullError) as info:
        submit(eng, prompts[3], greedy(4))
    assert info.value.status_code == 429 and info.value.retry_after_s > 0
    running.cancel()
    assert [q.result(timeout=60).finish_reason for q in queued] == ["length", "length"]


def test_requests_refused_up_front(loaded, prompts, engine):
    eng = engine()
    context = loaded.context_length
    with pytest.raises(PromptTooLongError) as info:
        submit(eng, prompts[0], greedy(context - len(prompts[0]) + 1))
    assert info.value.status_code == 413 and str(context) in info.value.message
    submit(eng, prompts[0], greedy(context - len(prompts[0]))).cancel()  # exactly fits: accepted
    for prompt, params, words in [
        ([], greedy(4), "empty"),
        ([5, eng.vocab_size], greedy(4), "outside the vocabulary"),
        ([5, -1], greedy(4), "outside the vocabulary"),
        (prompts[0], SamplingParams(max_new_tokens=0), "max_new_tokens"),
        (prompts[0], SamplingParams(top_p=0.0), "top_p"),
        (prompts[0], SamplingParams(temperature=-1.0), "temperature"),
    ]:
        with pytest.raises(InvalidRequestError, match=words) as bad:
            submit(eng, prompt, params)
        assert bad.value.status_code == 400
    assert eng.num_waiting + eng.num_running <= 1


def test_not_started_engine_refuses(loaded, prompts):
    eng = Engine(loaded)
    with pytest.raises(EngineUnavailableError, match="not started"):
        submit(eng, prompts[0], greedy(4))
    eng.stop()


def test_deadline(prompts, engine):
    eng = engine(max_batch_size=1)
    started = time.monotonic()
    late = submit(eng, prompts[7], greedy(450), deadline=time.monotonic() + 0.05)
    queued = submit(eng, prompts[1], greedy(4), deadline=time.monotonic() + 0.02)  # never gets the slot
    result = late.result(timeout=60)
    assert result.finish_reason == "deadline"
    assert result.stats.completion_tokens < 450
    assert result.stats.finished_at - started < 5
    expired = queued.result(timeout=60)
    assert expired.finish_reason == "deadline" and expired.token_ids == ()


def test_drain_finishes_in_flight_and_refuses_new(prompts, engine):
    eng = engine(max_batch_size=2)
    handles = [submit(eng, p, greedy(16)) for p in prompts[:3]]
    assert eng.drain(timeout_s=60) is True
    assert [h.result(timeout=0).finish_reason for h in handles] == ["length"] * 3
    with pytest.raises(EngineUnavailableError, match="draining"):
        submit(eng, prompts[0], greedy(4))


def test_drain_times_out_and_stop_ends_the_rest(prompts, engine):
    eng = engine()
    long = submit(eng, prompts[7], greedy(450))
    assert eng.drain(timeout_s=0.05) is False
    eng.stop()
    result = long.result(timeout=10)
    assert result.finish_reason == "error" and "stopped" in result.error


def test_stats_are_consistent(prompts, engine):
    eng = engine(max_batch_size=3)
    handles = [submit(eng, p, SamplingParams(max_new_tokens=n)) for p, n in zip(prompts[:5], (3, 8, 5, 40, 6))]
    for handle in handles:
        result = handle.result(timeout=60)
        s = result.stats
        assert s.arrival <= s.scheduled_at <= s.first_token_at <= s.finished_at
        assert s.completion_tokens == len(result.token_ids) == len(s.token_times) >= 1
        assert s.token_times == sorted(s.token_times) and s.token_times[0] == s.first_token_at
        assert s.prompt_tokens == len(handle.request.prompt_ids)
        assert s.finish_reason == result.finish_reason in ("length", "stop")
        if result.finish_reason == "length":
            assert s.completion_tokens == handle.request.params.max_new_tokens
        else:
            assert result.token_ids[-1] in eng.eos_ids
        assert s.queue_s >= 0 and s.ttft_s >= s.queue_s and s.e2e_s >= s.ttft_s
    three = handles[0].result()
    assert three.stats.completion_tokens <= 3


def test_stop_strings_cut_the_text(loaded, prompts, engine):
    eng = engine()
    full = submit(eng, prompts[4], greedy(30)).result(timeout=60).text
    stop = full[12:15]
    cut = full[: full.find(stop)]
    handle = submit(eng, prompts[4], greedy(30, stop=("never-there", stop)))
    events = list(handle.events(timeout=60))
    result = handle.result()
    assert result.finish_reason == "stop" and result.text == cut
    assert "".join(e.text for e in events) == cut
    assert all(stop not in e.text for e in events)


def test_async_stream_and_on_finish_hook(loaded, prompts, engine):
    eng = engine(max_batch_size=4)
    finished = []
    eng.on_finish.append(lambda h: finished.append(h.request_id))
    eng.on_finish.append(lambda h: 1 / 0)  # a broken hook is logged, never fatal

    async def client(prompt, n):
        handle = submit(eng, prompt, greedy(n))
        events = [event async for event in handle]
        return handle, events

    async def main():
        return await asyncio.gather(*(client(p, n) for p, n in zip(prompts[:4], (10, 25, 5, 18))))

    outcomes = asyncio.run(main())
    for handle, events in outcomes:
        result = handle.result(timeout=0)
        assert events[-1].finished and events[-1].finish_reason == "length"
        assert not any(e.finished for e in events[:-1])
        assert "".join(e.text for e in events) == result.text
        assert sum((e.token_ids for e in events), ()) == result.token_ids
        assert all(e.text for e in events[:-1])  # no empty deltas mid-stream
    wait_for(lambda: len(finished) == 4)  # hooks run right after the result is published
    assert sorted(finished) == sorted(h.request_id for h, _ in outcomes)


@pytest.mark.gpu
def test_continuous_batch_on_gpu_matches_generate(tiny_base, prompts):
    from cvml.modelio import load_for_inference

    gpu = load_for_inference(str(tiny_base), device="cuda", dtype="float32")
    eng = Engine(gpu, max_batch_size=4)
    eng.start()
    try:
        plan = [(prompts[0], 20), (prompts[4], 40), (prompts[1], 12), (prompts[5], 30), (prompts[2], 16)]
        handles = [submit(eng, p, greedy(n)) for p, n in plan[:2]]
        wait_for(lambda: len(handles[0].stats.token_times) >= 3)
        handles += [submit(eng, p, greedy(n)) for p, n in plan[2:]]
        sampled = submit(eng, prompts[3], SamplingParams(max_new_tokens=16, temperature=0.8, seed=3, ignore_eos=True))
        for (prompt, n), handle in zip(plan, handles):
            with torch.inference_mode():
                out = gpu.model.generate(torch.tensor([prompt], device="cuda"), do_sample=False, max_new_tokens=n,
                                         min_new_tokens=n, repetition_penalty=VARIED)
            assert list(handle.result(timeout=60).token_ids) == out[0, len(prompt) :].tolist()
        assert sampled.result(timeout=60).stats.completion_tokens == 16
    finally:
        eng.stop()
