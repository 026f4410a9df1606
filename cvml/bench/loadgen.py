"""The load generator: closed-loop concurrency and open-loop Poisson arrivals.

A target is anything with `session()`: an async context that yields `send(prompt) ->
RequestRecord`. Times are taken where the client sees each token (time.perf_counter), the
same way for the in-process engine and for an HTTP server, so the two modes compare.

Closed loop: `concurrency` clients each send the next request as soon as their previous
one finishes. Open loop: requests start at Poisson arrival times whatever the server's
state, the way real users arrive; the arrival schedule is seeded, so every trial and both
sides of a comparison see the same schedule.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

from cvml.bench.workload import BenchPrompt


@dataclass
class RequestRecord:
    """What one request looked like from the client."""

    ok: bool
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = field(default_factory=list)  # gaps between successive token arrivals
    output_tokens: int = 0
    error: str | None = None


Send = Callable[[BenchPrompt], Awaitable[RequestRecord]]


class Timing:
    """Collects token arrival times of one request while it streams."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.arrivals: list[float] = []
        self.tokens = 0

    def tokens_arrived(self, n: int) -> None:
        if n > 0:
            self.arrivals.append(time.perf_counter())
            self.tokens += n

    def record(self, error: str | None = None, tokens: int | None = None) -> RequestRecord:
        end = time.perf_counter()
        t = self.arrivals
        return RequestRecord(
            ok=error is None,
            ttft_s=(t[0] - self.start) if t else None,
            e2e_s=end - self.start,
            itl_s=[b - a for a, b in zip(t, t[1:])],
            output_tokens=self.tokens if tokens is None else tokens,
            error=error,
        )


@dataclass
class LevelRun:
    """The requests of one level (a concurrency or the Poisson rate) in one trial."""

    records: list[RequestRecord]
    wall_s: float


async def closed_loop(send: Send, prompts: Sequence[BenchPrompt], concurrency: int, n_requests: int) -> LevelRun:
    """`concurrency` clients share `n_requests` requests (request i asks prompt i mod len)."""
    records: list[RequestRecord | None] = [None] * n_requests
    counter = itertools.count()

    async def client() -> None:
        while (i := next(counter)) < n_requests:
            records[i] = await send(prompts[i % len(prompts)])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, n_requests))))
    return LevelRun([r for r in records if r is not None], time.perf_counter() - start)


async def poisson_arrivals(
    send: Send, prompts: Sequence[BenchPrompt], rate: float, n_requests: int, seed: int = 0
) -> LevelRun:
    """Start `n_requests` at exponential inter-arrival gaps of mean 1/rate seconds."""
    rng = random.Random(seed)
    offsets = list(itertools.accumulate(rng.expovariate(rate) for _ in range(n_requests)))
    tasks = []
    start = time.perf_counter()
    for i, offset in enumerate(offsets):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(prompts[i % len(prompts)])))
    records = await asyncio.gather(*tasks)
    return LevelRun(list(records), time.perf_counter() - start)


def trial_sample(run: LevelRun) -> dict:
    """Per-trial figures and the raw per-request samples the gates resample."""
    ok = [r for r in run.records if r.ok]
    n, errors = len(run.records), len(run.records) - len(ok)
    tokens = sum(r.output_tokens for r in ok)
    wall = max(run.wall_s, 1e-9)
    return {
        "wall_s": round(run.wall_s, 6),
        "requests": n,
        "errors": errors,
        "output_tokens": tokens,
        "requests_per_s": len(ok) / wall,
        "output_tokens_per_s": tokens / wall,
        "error_rate": errors / n if n else 0.0,
        "ttft_s": [_r(r.ttft_s) for r in ok if r.ttft_s is not None],
        "e2e_s": [_r(r.e2e_s) for r in ok if r.e2e_s is not None],
        "itl_s": [_r(g) for r in ok for g in r.itl_s],
        "error_messages": sorted({r.error for r in run.records if r.error})[:5],
    }


def _r(x: float) -> float:
    return round(x, 6)
