"""Per-feature drift tests, chosen like Evidently's defaults so that results compare with it,
and thresholds that are either those defaults or calibrated on the reference itself.

Defaults (by the reference's size, as Evidently chooses):
- numeric, reference ≤ 1,000 values: two-sample Kolmogorov-Smirnov, drift when p < alpha;
  more: Wasserstein distance in reference standard deviations, drift when ≥ 0.1.
- categorical, reference ≤ 1,000: chi-square test of homogeneity (two categories: the
  two-proportion z-test), p < alpha; more: Jensen-Shannon distance ≥ 0.1.
- PSI (population stability index, ≥ 0.1) on request (`monitor.stattests`).

A fixed threshold misfires on a small window: a 50-request window's Wasserstein distance
is often above 0.1 by chance alone. A calibrated threshold is the statistic's 1 - alpha
quantile (the alpha quantile of a p-value) over `resamples` chunks of the reference of the
window's size, each compared with the rest of the reference, as NannyML calibrates its
thresholds. A chunk is made of whole people (users, or the persons of a training split):
one person's requests are alike, and a new window brings new people, so chunks of rows
would make the reference look steadier than it is and alarm too often.

A calibrated distance bound is never below a quarter of the fixed one (`CALIBRATED_FLOOR`):
against a reference that never varies (every request in English), the chunks' distances
are all zero, and a single request in another language would otherwise count as drift.

Scores are "higher means drift" for distances and "lower means drift" for p-values; every
test says which (`higher_is_drift`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial import distance

EVIDENTLY_SMALL_REFERENCE = 1000  # reference size up to which the p-value tests are the default
_EPS = 1e-4  # PSI's floor for an empty bin
_MAX_CATEGORIES = 20  # categories beyond the most frequent ones are pooled as "other"
CALIBRATED_FLOOR = 0.25  # a calibrated distance bound is at least this share of the fixed one


@dataclass(frozen=True)
class StatTest:
    name: str
    kinds: tuple[str, ...]  # "numeric", "categorical"
    higher_is_drift: bool  # a distance (drift at or above) or a p-value (drift below)
    label: str
    score: Callable[[np.ndarray, np.ndarray], float]


def _ks(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(stats.ks_2samp(ref, cur).pvalue)


def _ks_statistic(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(stats.ks_2samp(ref, cur).statistic)


def _wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    norm = max(float(np.std(ref)), 1e-3)
    return float(stats.wasserstein_distance(ref, cur) / norm)


def _counts(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category counts of both sides over the same categories (values are integer codes)."""
    size = int(max(ref.max(initial=0), cur.max(initial=0))) + 1
    return np.bincount(ref, minlength=size).astype(float), np.bincount(cur, minlength=size).astype(float)


def _chisquare(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = _counts(ref, cur)
    seen = (r + c) > 0
    if seen.sum() < 2:
        return 1.0
    return float(stats.chi2_contingency(np.vstack([r[seen], c[seen]]), correction=False).pvalue)


def _ztest(ref: np.ndarray, cur: np.ndarray) -> float:
    """Two-proportion z-test on the share of the first category seen (binary features)."""
    r, c = _counts(ref, cur)
    first = int(np.flatnonzero((r + c) > 0)[0]) if (r + c).any() else 0
    n1, n2 = r.sum(), c.sum()
    p1, p2 = r[first] / n1, c[first] / n2
    pooled = (r[first] + c[first]) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * stats.norm.sf(abs(p1 - p2) / se))


def _proportions(ref: np.ndarray, cur: np.ndarray, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    if numeric:
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        if len(edges) < 2:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        inner = edges[1:-1]
        r = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1).astype(float)
        c = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1).astype(float)
    else:
        r, c = _counts(ref, cur)
    return r / r.sum(), c / c.sum()


def _jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    numeric = ref.dtype.kind == "f"
    p, q = _proportions(ref, cur, numeric)
    return float(distance.jensenshannon(p, q))


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    numeric = ref.dtype.kind == "f"
    p, q = _proportions(ref, cur, numeric)
    p, q = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


TESTS: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("ks", ("numeric",), False, "Kolmogorov-Smirnov p-value", _ks),
        StatTest("wasserstein", ("numeric",), True, "Wasserstein distance (normed)", _wasserstein),
        StatTest("chisquare", ("categorical",), False, "chi-square p-value", _chisquare),
        StatTest("z", ("categorical",), False, "two-proportion z-test p-value", _ztest),
        StatTest("jensenshannon", ("numeric", "categorical"), True, "Jensen-Shannon distance", _jensenshannon),
        StatTest("psi", ("numeric", "categorical"), True, "PSI", _psi),
    )
}
# What a calibrated KS decides on: its statistic D. The p-value of a KS between samples with
# many ties (token counts) is far from uniform, and how far depends on the sample sizes,
# which differ between the calibration (a chunk against the rest) and the real test; D's
# spread only shrinks as the samples grow, so the chunk-against-rest bound errs on the
# side of fewer alarms.
CALIBRATED_AS = {"ks": StatTest("ks_d", ("numeric",), True, "Kolmogorov-Smirnov D", _ks_statistic)}


def default_test(kind: str, n_reference: int, n_categories: int = 0) -> str:
    """Evidently's default test for a feature of `kind` with a reference of `n_reference` values."""
    small = n_reference <= EVIDENTLY_SMALL_REFERENCE
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    if small:
        return "z" if n_categories <= 2 else "chisquare"
    return "jensenshannon"


def fixed_threshold(test: StatTest, alpha: float, distance_threshold: float) -> float:
    return distance_threshold if test.higher_is_drift else alpha


def is_drift(test: StatTest, score: float, threshold: float) -> bool:
    return score >= threshold if test.higher_is_drift else score < threshold


def calibrated_threshold(
    test: StatTest,
    reference: np.ndarray,
    n_current: int,
    *,
    alpha: float,
    resamples: int,
    rng: np.random.Generator,
    contiguous: bool,
    distance_threshold: float,
    groups: np.ndarray | None = None,
) -> float:
    """The score's 1 - alpha quantile (distances, at least CALIBRATED_FLOOR of
    `distance_threshold`) or alpha quantile (p-values) over `resamples` reference chunks
    of `n_current` values, each against the rest. Chunks of a `contiguous` (time-ordered)
    reference are runs of it; otherwise they are whole `groups` (a person's values stay
    together: a new window brings new people, not new rows of the same ones), drawn at
    random until the chunk holds `n_current` values.

    The caller makes sure the reference holds at least two windows' worth of values.
    """
    n = len(reference)
    size = min(n_current, n // 2)
    if groups is not None and not contiguous:
        names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    scores = np.empty(resamples)
    for i in range(resamples):
        chunk = np.zeros(n, dtype=bool)
        if contiguous:
            start = int(rng.integers(0, n - size + 1))
            chunk[start : start + size] = True
        elif groups is not None:
            order = rng.permutation(len(names))
            take = int(np.searchsorted(np.cumsum(counts[order]), size)) + 1
            chosen = np.zeros(len(names), dtype=bool)
            chosen[order[:take]] = True
            chunk = chosen[inverse]
            if chunk.all():  # one group holds nearly everything: fall back to rows
                chunk = np.zeros(n, dtype=bool)
                chunk[rng.choice(n, size=size, replace=False)] = True
        else:
            chunk[rng.choice(n, size=size, replace=False)] = True
        scores[i] = test.score(reference[~chunk], reference[chunk])
    if test.higher_is_drift:
        return max(float(np.quantile(scores, 1 - alpha)), CALIBRATED_FLOOR * distance_threshold)
    return float(np.quantile(scores, alpha))


def encode_categories(ref: list[str], cur: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both sides as integer codes over shared categories, most frequent first; beyond
    `_MAX_CATEGORIES` the rest is pooled as "other"."""
    counts: dict[str, int] = {}
    for value in (*ref, *cur):
        counts[value] = counts.get(value, 0) + 1
    ordered = sorted(counts, key=lambda v: (-counts[v], v))
    if len(ordered) > _MAX_CATEGORIES:
        ordered = ordered[: _MAX_CATEGORIES - 1] + ["other"]
    index = {value: i for i, value in enumerate(ordered)}
    other = index.get("other", len(ordered) - 1)
    code = np.vectorize(lambda v: index.get(v, other), otypes=[np.int64])
    as_codes = (lambda values: code(np.asarray(values, dtype=object)) if values else np.zeros(0, dtype=np.int64))
    return as_codes(ref), as_codes(cur), ordered
