"""`--engine ray`: the per-row stages on Ray Data, on a local Ray or a cluster.

The shards become a Ray dataset; `map_batches` runs them on a fixed pool of actors, each
holding one prepared copy of the stages (reader, normalizer, PII redactor, filters,
decontamination, MinHash fingerprints), and the outcomes stream back in shard order
(`preserve_order`) to the driver, which keeps the books and decides dedup exactly as the
local engine does. On a cluster, every node must see the inputs at the same paths (a
shared filesystem) and have cvml installed.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Iterable, Iterator

import numpy as np

from cvml.curate.readers import Shard
from cvml.curate.stages import RowStages, ShardOutcome
from cvml.errors import ConfigError, CvmlError


def require_ray() -> Any:
    """The `ray` module with Ray Data.

    Raises:
        ConfigError: Ray (with Ray Data) is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(
            "curate engine 'ray' needs Ray Data, which is not installed",
            hint='pip install "cvml[ray]" (or run with --engine local, which uses all cores of this machine)',
        ) from None
    return ray


def run_on_ray(stages: RowStages, shards: Iterable[Shard], *, workers: int | None, address: str | None) -> Iterator[ShardOutcome]:
    """Each shard's outcome, in shard order, computed by `workers` Ray actors (default:
    one per CPU of the cluster). Joins the Ray this process already started, else the one
    at `address` ("auto", "ray://head:10001"), else starts a local one for the run.

    Raises:
        ConfigError: Ray is not installed (raised at the call, before any shard runs).
    """
    return _outcomes(require_ray(), stages, list(shards), workers, address)


def _outcomes(ray, stages: RowStages, shards: list[Shard], workers: int | None, address: str | None) -> Iterator[ShardOutcome]:
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if os.environ.get("CVML_DEBUG") != "1":
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # cvml reports progress itself
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    try:
        size = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        size = min(size, max(len(shards), 1))
        dataset = ray.data.from_items([{"shard": pickle.dumps(shard)} for shard in shards], override_num_blocks=max(len(shards), 1))
        outcomes = dataset.map_batches(
            _ShardActor, fn_constructor_args=(stages,), batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=1,
        )
        for batch in outcomes.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            for blob in batch["outcome"]:
                outcome = pickle.loads(blob)
                if isinstance(outcome, CvmlError):
                    raise outcome
                yield outcome
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()


class _ShardActor:
    """One Ray actor: its own prepared copy of the stages, fed one shard per call."""

    def __init__(self, stages: RowStages):
        stages.prepare()
        self.stages = stages

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"outcome": np.array([self._run(blob) for blob in batch["shard"]], dtype=object)}

    def _run(self, blob: bytes) -> bytes:
        # A CvmlError (an unreadable input line) comes back as the shard's result: Ray would
        # wrap a raised one in its own error and lose the message and hint a user acts on.
        try:
            outcome = self.stages.run(pickle.loads(blob))
        except CvmlError as exc:
            outcome = exc
        return pickle.dumps(outcome, protocol=5)
