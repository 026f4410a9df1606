"""The domain classifier: can a model tell the current window's texts from the reference's?

TF-IDF words + logistic regression (scikit-learn), fitted on half of the people of both
sides and scored on the other half: the held-out ROC AUC is 0.5 when the two are alike
and rises as they part. Evidently's fixed bound is 0.55. Because the held-out scores do
not depend on the held-out labels when the sides are alike, the AUC's null distribution
is the Mann-Whitney statistic's: the calibrated bound (and the p-value) come from it
exactly, for any window size, with one fit.

People, not rows, are the units: each side's texts are deduplicated (a retried request
is one text), a person's texts all go to the same half (else the model learns who wrote
them, not what changed), and the held-out AUC compares each person's mean score. Without
that, two windows of the same traffic but different users look different.

The words that separate the sides most (largest coefficients each way) are reported with
the share of texts holding each word on both sides. Texts are redacted, and a word must
appear in at least `MIN_DOCUMENTS` texts to count, so no word only one person wrote is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

MIN_DOCUMENTS = 5
_MAX_WORDS = 20_000


@dataclass
class ClassifierResult:
    auc: float | None
    threshold: float
    threshold_source: str  # "fixed" or "calibrated"
    pvalue: float | None
    drifted: bool | None
    n_reference: int  # texts (deduplicated)
    n_current: int
    words: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "current" / "reference" -> top words
    skipped: str | None = None
    held_out_groups: tuple[int, int] = (0, 0)  # people scored: reference, current

    def decisive(self, auc_bound: float, alpha: float) -> bool:
        """Strong enough to call drift alone: AUC above `auc_bound` and p below `alpha`."""
        return self.auc is not None and self.auc > auc_bound and self.pvalue is not None and self.pvalue < alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc, "threshold": self.threshold, "threshold_source": self.threshold_source,
            "pvalue": self.pvalue, "drifted": self.drifted, "n_reference": self.n_reference,
            "n_current": self.n_current, "held_out_groups": list(self.held_out_groups), "words": self.words,
            "skipped": self.skipped,
        }  # fmt: skip


def null_auc_bound(n_reference: int, n_current: int, alpha: float) -> float:
    """The held-out AUC's 1 - alpha quantile when the two sides are alike (normal approximation
    of the Mann-Whitney statistic, ties ignored)."""
    se = math.sqrt((n_reference + n_current + 1) / (12 * n_reference * n_current))
    return 0.5 + float(stats.norm.ppf(1 - alpha)) * se


def domain_classifier(
    reference: list[str],
    current: list[str],
    *,
    reference_groups: list[str] | None = None,
    current_groups: list[str] | None = None,
    calibrated: bool,
    fixed_auc: float,
    alpha: float,
    top_words: int,
    min_values: int,
    seed: int,
) -> ClassifierResult:
    """Fit, score held out, and name the separating words (see the module docstring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    reference, reference_groups = _unique(reference, reference_groups)
    current, current_groups = _unique(current, current_groups)
    n_ref, n_cur = len(reference), len(current)
    result = ClassifierResult(None, fixed_auc, "fixed", None, None, n_ref, n_cur)
    if min(n_ref, n_cur) < 2 * min_values:
        result.skipped = f"too few distinct texts ({n_ref} reference, {n_cur} current; needs {2 * min_values} a side)"
        return result
    texts = reference + current
    labels = np.r_[np.zeros(n_ref, dtype=int), np.ones(n_cur, dtype=int)]
    groups = np.asarray([f"r:{g}" for g in reference_groups] + [f"c:{g}" for g in current_groups])
    vectorizer = TfidfVectorizer(
        lowercase=True, token_pattern=r"(?u)\b[^\W\d_]{2,}\b", min_df=MIN_DOCUMENTS, max_features=_MAX_WORDS,
        sublinear_tf=True, dtype=np.float32,
    )  # fmt: skip
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no word in at least MIN_DOCUMENTS texts
        result.skipped = f"no word appears in {MIN_DOCUMENTS} or more texts"
        return result
    train, test = _split_by_group(groups, labels, seed)
    model = LogisticRegression(C=1.0, solver="liblinear", class_weight="balanced", max_iter=1000)
    model.fit(matrix[train], labels[train])
    scores = model.decision_function(matrix[test])
    ref_means, cur_means = _group_means(scores, groups[test], labels[test])
    if min(len(ref_means), len(cur_means)) < min_values:
        result.skipped = f"too few people held out ({len(ref_means)} reference, {len(cur_means)} current)"
        return result
    mw = stats.mannwhitneyu(cur_means, ref_means, alternative="greater")
    result.auc = float(mw.statistic / (len(cur_means) * len(ref_means)))
    result.pvalue = float(mw.pvalue)
    result.held_out_groups = (len(ref_means), len(cur_means))
    if calibrated:
        result.threshold, result.threshold_source = null_auc_bound(len(ref_means), len(cur_means), alpha), "calibrated"
    result.drifted = result.auc > result.threshold
    result.words = _top_words(vectorizer, model, matrix, labels, top_words)
    return result


def _unique(texts: list[str], groups: list[str] | None) -> tuple[list[str], list[str]]:
    """Each distinct text once (with the first group that sent it)."""
    groups = groups if groups is not None else [str(i) for i in range(len(texts))]
    seen: dict[str, str] = {}
    for text, group in zip(texts, groups):
        seen.setdefault(text, group)
    return list(seen), list(seen.values())


def _split_by_group(groups: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half of the people to fit on, the other half to score; both halves hold both sides."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed).split(labels, labels, groups))
    if len(set(labels[train])) < 2 or len(set(labels[test])) < 2:  # a side of one person: split its rows
        train, test = train_test_split(np.arange(len(labels)), test_size=0.5, stratify=labels, random_state=seed)
    return train, test


def _group_means(scores: np.ndarray, groups: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, inverse = np.unique(groups, return_inverse=True)
    means = np.bincount(inverse, weights=scores) / np.bincount(inverse)
    side = np.zeros(len(names), dtype=int)
    side[inverse] = labels
    return means[side == 0], means[side == 1]


def _top_words(vectorizer, model, matrix, labels: np.ndarray, k: int) -> dict[str, list[dict[str, Any]]]:
    names = vectorizer.get_feature_names_out()
    coef = model.coef_[0]
    present = (matrix > 0).astype(np.float32)
    share_ref = np.asarray(present[labels == 0].mean(axis=0)).ravel()
    share_cur = np.asarray(present[labels == 1].mean(axis=0)).ravel()

    def row(i: int) -> dict[str, Any]:
        return {"word": str(names[i]), "weight": round(float(coef[i]), 4),
                "reference_share": round(float(share_ref[i]), 4), "current_share": round(float(share_cur[i]), 4)}  # fmt: skip

    order = np.argsort(coef)
    return {
        "current": [row(i) for i in order[::-1][:k] if coef[i] > 0],
        "reference": [row(i) for i in order[:k] if coef[i] < 0],
    }
