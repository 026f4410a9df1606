"""Where the per-row stages run: `local` (this process, or a pool of worker processes, one
per core) or `ray` (Ray Data, on a local Ray or a cluster: `cvml.curate.ray_engine`).

Every engine yields the shards' outcomes in shard order, and the driver folds them in that
order, so the dataset does not depend on the engine, the number of workers or the shard
size: the same input gives byte-identical splits, ledgers and report.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from collections import deque
from typing import Iterable, Iterator

from cvml.curate.readers import Shard
from cvml.curate.stages import RowStages, ShardOutcome

_AHEAD = 2  # shards in flight per worker: enough to keep each busy, few to hold in memory


def run_stages(
    stages: RowStages, shards: Iterable[Shard], *, engine: str = "local", workers: int | None = None,
    address: str | None = None,
) -> Iterator[ShardOutcome]:
    """Each shard's outcome, in shard order.

    Args:
        stages: the per-row stages (prepared here first, so settings errors surface at once).
        shards: from `cvml.curate.readers.plan_shards`.
        engine: "local" or "ray".
        workers: local processes or Ray actors; default the cores (local), the cluster's CPUs (ray).
        address: the Ray cluster to join (engine "ray").

    Raises:
        ConfigError: engine "ray" without Ray installed.
    """
    stages.prepare()
    if engine == "ray":
        from cvml.curate.ray_engine import run_on_ray

        return run_on_ray(stages, shards, workers=workers, address=address)
    return _run_local(stages, shards, workers or default_workers())


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_local(stages: RowStages, shards: Iterable[Shard], workers: int) -> Iterator[ShardOutcome]:
    shards = iter(shards)
    first = list(itertools.islice(shards, 2))
    if workers <= 1 or len(first) < 2:  # one shard: a pool would only add its start-up
        for shard in itertools.chain(first, shards):
            yield stages.run(shard)
        return

    from concurrent.futures import ProcessPoolExecutor

    # Fork where it is safe (Linux): workers inherit the prepared stages instead of
    # importing and building them again.
    method = "fork" if sys.platform == "linux" else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_start_worker, initargs=(stages,))
    try:
        pending: deque = deque()
        for shard in itertools.chain(first, shards):
            pending.append(pool.submit(_run_shard, shard))
            if len(pending) >= _AHEAD * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_stages: RowStages | None = None  # a worker process's stages


def _start_worker(stages: RowStages) -> None:
    global _stages
    # One worker per core already: a tokenizer's own threads would only compete.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _stages = stages


def _run_shard(shard: Shard) -> ShardOutcome:
    return _stages.run(shard)
