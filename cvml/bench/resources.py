"""Peak memory while the bench runs: resident set size sampled on a thread, and the CUDA
allocator's own peak on a GPU (exact, no sampling needed)."""

from __future__ import annotations

import threading
from typing import Any


class PeakMemory:
    """Context manager that records the peak RSS of this process (and peak GPU memory).

    RSS is sampled every `interval_s` on a daemon thread; a spike shorter than the interval
    can be missed, so the figure is a lower bound that is tight for steady serving.
    """

    def __init__(self, interval_s: float = 0.02, cuda: bool = False):
        self.interval_s = interval_s
        self.cuda = cuda
        self.peak_rss = 0
        self.peak_gpu: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        import psutil

        self._process = psutil.Process()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cvml-bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if self.cuda:
            import torch

            self.peak_gpu = int(torch.cuda.max_memory_allocated())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    def to_metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if self.peak_gpu is not None:
            metrics["peak_gpu_mb"] = round(self.peak_gpu / 2**20, 1)
        return metrics
