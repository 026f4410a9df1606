"""The report's PNGs: each feature's distribution (reference vs current), the quality and
safety rates over the window, and latency over the window — overall and per variant."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np

from cvml.monitor.features import CATEGORICAL, NUMERIC, Profile

_RATES = ("error_rate", "fabrication_rate", "pii_leak_rate", "harmful_rate", "blocked_rate", "acceptance_rate")
_REF, _CUR = "#7f8c9a", "#d9480f"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return buffer.getvalue()


def distributions_png(reference: Profile, current: Profile, drifted: dict[str, bool | None]) -> bytes:
    """One panel per feature: density of the reference and of the current window."""
    plt = _pyplot()
    names = [n for n in NUMERIC + CATEGORICAL if len(reference.values.get(n, [])) and len(current.values.get(n, []))]
    cols = 4
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        ref, cur = reference.values[name], current.values[name]
        if name in NUMERIC:
            ref, cur = np.asarray(ref, dtype=float), np.asarray(cur, dtype=float)
            both = np.r_[ref, cur]
            low, high = np.quantile(both, [0.01, 0.99])
            if high <= low:
                low, high = low - 0.5, high + 0.5
            bins = np.linspace(low, high, 31)
            ax.hist(np.clip(ref, low, high), bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                    color=_REF, label="reference")  # fmt: skip
            ax.hist(np.clip(cur, low, high), bins=bins, density=True, histtype="step", linewidth=1.8,
                    color=_CUR, label="current")  # fmt: skip
        else:
            ref_counts, cur_counts = Counter(ref), Counter(cur)
            categories = [c for c, _ in (ref_counts + cur_counts).most_common(8)]
            x = np.arange(len(categories))
            ax.bar(x - 0.2, [ref_counts[c] / len(ref) for c in categories], 0.4, color=_REF, label="reference")
            ax.bar(x + 0.2, [cur_counts[c] / len(cur) for c in categories], 0.4, color=_CUR, label="current")
            ax.set_xticks(x, categories, rotation=30, ha="right", fontsize=8)
        flag = drifted.get(name)
        ax.set_title(f"{name}{'  — drift' if flag else ''}", fontsize=10, color=_CUR if flag else "black")
        ax.tick_params(labelsize=8)
    axes.ravel()[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def quality_png(over_time: dict[str, Any]) -> bytes:
    """The rates per slice of the window, one line per scope (all, each variant)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 6), squeeze=False)
    for ax, rate in zip(axes.ravel(), _RATES):
        for scope, points in over_time["series"].items():
            xs = [i for i, p in enumerate(points) if p.get(rate) is not None]
            ys = [100 * points[i][rate] for i in xs]
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=scope, color=_CUR if scope == "all" else None)
        ax.set_title(rate.replace("_", " ") + " (%)", fontsize=10)
        ax.set_xlabel("slice of the window", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def latency_png(over_time: dict[str, Any]) -> bytes:
    """End-to-end latency p50 and p95 per slice of the window."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for scope, points in over_time["series"].items():
        for key, style in (("e2e_p50_s", "-"), ("e2e_p95_s", "--")):
            xs = [i for i, p in enumerate(points) if p.get(key) is not None]
            if xs:
                ax.plot(xs, [points[i][key] for i in xs], style, marker="o", markersize=3,
                        label=f"{scope} {key[4:7]}")  # fmt: skip
    ax.set_ylabel("seconds")
    ax.set_xlabel("slice of the window")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
