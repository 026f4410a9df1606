"""The perf measurement plan: warm-up, then trials × levels, sides interleaved.

With two sides (candidate and a baseline model in the same run) every block — one level
of one trial — runs both sides back to back, and the order alternates block by block
(AB, BA, AB, ...). Slow drift of the machine (thermal state, a neighbour's load) then
hits both sides of a pair almost equally, and a linear drift cannot favour either side
the way a fixed A-then-B order would. The gates pair trial i of one side with trial i of
the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from cvml.bench.loadgen import closed_loop, poisson_arrivals, trial_sample
from cvml.bench.perf import level_name
from cvml.bench.workload import BenchPrompt
from cvml.recipe import BenchSpec

POISSON = "poisson"


@dataclass
class Side:
    """One model under measurement: its label in the report and the target requests go to."""

    label: str  # "candidate" | "baseline"
    target: Any  # EngineTarget | HttpTarget


@dataclass(frozen=True)
class Level:
    name: str  # "c4" or "poisson"
    concurrency: int | None = None
    rate: float | None = None


def plan_levels(spec: BenchSpec) -> list[Level]:
    levels = [Level(level_name(c), concurrency=c) for c in sorted(set(spec.concurrency))]
    if spec.poisson_rate:
        levels.append(Level(POISSON, rate=spec.poisson_rate))
    return levels


def measure_perf(
    sides: list[Side],
    prompts: list[BenchPrompt],
    spec: BenchSpec,
    *,
    seed: int = 0,
    on_block: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[dict]]]:
    """Warm every side up, then run `spec.trials` sweeps of every level, interleaving sides.

    Returns:
        {side label: {level name: [one trial sample per trial]}} (see `loadgen.trial_sample`).
    """
    levels = plan_levels(spec)
    if spec.warmup_requests:
        warm = Level("warmup", concurrency=min(max(spec.concurrency), spec.warmup_requests))
        for side in sides:
            _run(side, warm, prompts, spec.warmup_requests, seed)
    samples: dict[str, dict[str, list[dict]]] = {side.label: {lv.name: [] for lv in levels} for side in sides}
    blocks = [(trial, level) for trial in range(spec.trials) for level in levels]
    for k, (trial, level) in enumerate(blocks):
        for slot, side in enumerate(sides if k % 2 == 0 else sides[::-1]):
            sample = _run(side, level, prompts, spec.requests_per_level, seed)
            samples[side.label][level.name].append({"trial": trial, "block": k, "slot": slot, **sample})
            if on_block is not None:
                on_block(f"{side.label} {level.name} trial {trial + 1}/{spec.trials}")
    return samples


def _run(side: Side, level: Level, prompts: list[BenchPrompt], n_requests: int, seed: int) -> dict:
    async def go():
        async with side.target.session() as send:
            if level.rate is not None:
                return await poisson_arrivals(send, prompts, level.rate, n_requests, seed=seed)
            return await closed_loop(send, prompts, level.concurrency, n_requests)

    return trial_sample(asyncio.run(go()))


def blocks_per_run(spec: BenchSpec, n_sides: int) -> int:
    """How many level runs `measure_perf` makes (for a progress bar)."""
    return spec.trials * len(plan_levels(spec)) * n_sides
