"""The report's pictures: latency CDFs per level, and throughput against concurrency.
A baseline report, when given, is drawn dashed in the same colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvml.bench.perf import LATENCIES

_TITLES = {"ttft": "time to first token", "itl": "inter-token latency", "e2e": "end-to-end latency"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency_cdf(samples: dict[str, list[dict]], path: Path, baseline: dict[str, list[dict]] | None = None) -> Path:
    """One panel per latency kind; one curve per level (all trials pooled), in milliseconds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(LATENCIES), figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, kind in zip(axes, LATENCIES):
        for i, (level, trials) in enumerate(samples.items()):
            color = colors[i % len(colors)]
            _cdf(ax, trials, kind, color, "-", level)
            if baseline and baseline.get(level):
                _cdf(ax, baseline[level], kind, color, "--", f"{level} baseline")
        ax.set_title(_TITLES[kind])
        ax.set_xlabel("ms")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of requests (tokens for ITL)")
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cdf(ax, trials: list[dict], kind: str, color: str, style: str, label: str) -> None:
    values = np.sort(np.concatenate([np.asarray(t[f"{kind}_s"], float) for t in trials])) * 1000
    if values.size:
        ax.plot(values, np.arange(1, values.size + 1) / values.size, style, color=color, label=label)


def plot_throughput(samples: dict[str, list[dict]], path: Path, baseline: dict[str, list[dict]] | None = None) -> Path:
    """Output tokens/s and requests/s against concurrency: trial means, bars spanning min..max."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, title in zip(axes, ("output_tokens_per_s", "requests_per_s"), ("output tokens/s", "requests/s")):
        for data, style, label in ((samples, "-o", "this run"), (baseline, "--s", "baseline")):
            points = _by_concurrency(data or {}, metric)
            if not points:
                continue
            x = [c for c, _ in points]
            values = [v for _, v in points]
            mean = np.array([np.mean(v) for v in values])
            err = np.array([[m - min(v) for m, v in zip(mean, values)], [max(v) - m for m, v in zip(mean, values)]])
            ax.errorbar(x, mean, yerr=err, fmt=style, capsize=4, label=label)
        ax.set_xscale("log", base=2)
        ticks = sorted({c for data in (samples, baseline or {}) for c, _ in _by_concurrency(data, metric)})
        ax.set_xticks(ticks, [str(c) for c in ticks])
        ax.minorticks_off()
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _by_concurrency(samples: dict[str, list[dict]], metric: str) -> list[tuple[int, list[float]]]:
    points = [
        (int(level[1:]), [t[metric] for t in trials])
        for level, trials in samples.items()
        if level.startswith("c") and level[1:].isdigit() and trials
    ]
    return sorted(points)
