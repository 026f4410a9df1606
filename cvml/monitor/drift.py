"""Input and output drift: one test per feature (reference profile vs current profile), the
domain classifier, and the dataset verdict.

The verdict is Evidently's: drift when the share of tested input features that drifted
reaches `monitor.drift_share` (0.5). One more rule (`monitor.classifier_decides`, on by
default): the domain classifier alone makes it drift when its AUC is above
`classifier_auc` with p below `classifier_alpha` (0.001). A change of topic — users from
another industry — moves the words and little else: most features keep their lengths and
shares, and the share rule alone would miss it.

Each feature gets Evidently's default test for its kind and reference size, or the one
`monitor.stattests` names; its threshold is fixed (Evidently's) or calibrated on the
reference (`cvml.monitor.stattests.calibrated_threshold`). `monitor.thresholds: auto`
calibrates every feature whose reference holds `calibration_min_ratio` windows of it, and
the report says, per feature, which threshold decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvml.monitor.classifier import ClassifierResult, domain_classifier
from cvml.monitor.features import Profile, group_of, kind_of
from cvml.monitor.stattests import (
    CALIBRATED_AS,
    TESTS,
    calibrated_threshold,
    default_test,
    encode_categories,
    fixed_threshold,
    is_drift,
)
from cvml.recipe import MONITOR_INPUT_FEATURES, MONITOR_OUTPUT_FEATURES, MonitorSpec


@dataclass
class FeatureDrift:
    """One feature's comparison; `drifted` is None when it was not tested (`skipped` says why)."""

    name: str
    group: str  # "input" or "output"
    kind: str  # "numeric", "categorical", "text"
    test: str | None = None
    statistic: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None  # "fixed" or "calibrated"
    higher_is_drift: bool | None = None
    drifted: bool | None = None
    n_reference: int = 0
    n_current: int = 0
    reference: dict[str, Any] = field(default_factory=dict)  # a summary of the values
    current: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    classifier: ClassifierResult
    share: float | None  # drifted / tested input features
    drift_share: float  # the bound
    detected: bool
    rules: list[str]  # what made it drift: "share" and/or "classifier"
    threshold_mode: str  # what `monitor.thresholds` asked
    calibrated: list[str]  # features whose threshold was calibrated
    fixed: list[str]

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.group == "input" and f.drifted]

    @property
    def tested(self) -> list[str]:
        return [f.name for f in self.features if f.group == "input" and f.drifted is not None]

    def feature(self, name: str) -> FeatureDrift:
        return next(f for f in self.features if f.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share, "drift_share": self.drift_share, "detected": self.detected, "rules": self.rules,
            "drifted": self.drifted, "tested": self.tested, "threshold_mode": self.threshold_mode,
            "calibrated": self.calibrated, "fixed": self.fixed,
            "features": [f.to_dict() for f in self.features], "classifier": self.classifier.to_dict(),
        }  # fmt: skip


def compare_profiles(reference: Profile, current: Profile, spec: MonitorSpec, seed: int) -> DriftResult:
    """Test every feature of `current` against `reference` and give the dataset verdict."""
    rng = np.random.default_rng(seed)
    features = []
    for name in MONITOR_INPUT_FEATURES + MONITOR_OUTPUT_FEATURES:
        if name == "input_text":
            continue
        features.append(_feature(name, reference, current, spec, rng))
    classifier = domain_classifier(
        reference.texts, current.texts, reference_groups=reference.text_groups, current_groups=current.text_groups,
        calibrated=_calibrate(spec, len(reference.texts), len(current.texts)), fixed_auc=spec.classifier_auc,
        alpha=spec.alpha, top_words=spec.top_words, min_values=spec.min_values, seed=seed,
    )  # fmt: skip
    missing = reference.missing.get("input_text") or current.missing.get("input_text")
    text = FeatureDrift("input_text", "input", "text", test="domain_classifier", n_reference=classifier.n_reference,
                        n_current=classifier.n_current, skipped=f"not measured: {missing}" if missing else classifier.skipped)  # fmt: skip
    if classifier.auc is not None:
        text.statistic, text.threshold = classifier.auc, classifier.threshold
        text.threshold_source, text.higher_is_drift, text.drifted = classifier.threshold_source, True, classifier.drifted
    features.insert(MONITOR_INPUT_FEATURES.index("input_text"), text)
    tested = [f for f in features if f.group == "input" and f.drifted is not None]
    share = sum(bool(f.drifted) for f in tested) / len(tested) if tested else None
    rules = []
    if share is not None and share >= spec.drift_share:
        rules.append("share")
    if spec.classifier_decides and classifier.decisive(spec.classifier_auc, spec.classifier_alpha):
        rules.append("classifier")
    return DriftResult(
        features=features,
        classifier=classifier,
        share=share,
        drift_share=spec.drift_share,
        detected=bool(rules),
        rules=rules,
        threshold_mode=spec.thresholds,
        calibrated=[f.name for f in features if f.threshold_source == "calibrated"],
        fixed=[f.name for f in features if f.threshold_source == "fixed"],
    )


def _calibrate(spec: MonitorSpec, n_reference: int, n_current: int) -> bool:
    if spec.thresholds == "fixed":
        return False
    if spec.thresholds == "calibrated":
        return n_reference >= 2 * n_current  # a chunk and a rest of the window's size, at the least
    return n_reference >= spec.calibration_min_ratio * n_current


def _feature(name: str, reference: Profile, current: Profile, spec: MonitorSpec, rng) -> FeatureDrift:
    kind = kind_of(name)
    result = FeatureDrift(name, group_of(name), kind)
    ref_values, cur_values = reference.values.get(name), current.values.get(name)
    if ref_values is None or cur_values is None:
        why = reference.missing.get(name) or current.missing.get(name)
        result.skipped = f"not measured: {why}" if why else "not measured"
        return result
    result.n_reference, result.n_current = len(ref_values), len(cur_values)
    if kind == "numeric":
        ref, cur = np.asarray(ref_values, dtype=float), np.asarray(cur_values, dtype=float)
        result.reference, result.current = _numeric_summary(ref), _numeric_summary(cur)
        n_categories = 0
    else:
        ref, cur, categories = encode_categories(list(ref_values), list(cur_values))
        result.reference, result.current = _shares(ref, categories), _shares(cur, categories)
        n_categories = len(categories)
    if min(len(ref), len(cur)) < spec.min_values:
        result.skipped = f"too few values ({len(ref)} reference, {len(cur)} current; needs {spec.min_values})"
        return result
    if kind == "categorical" and n_categories < 2:
        result.test, result.drifted, result.statistic = "constant", False, 0.0  # one category on both sides
        return result
    test = TESTS[spec.stattests.get(name) or default_test(kind, len(ref), n_categories)]
    calibrate = _calibrate(spec, len(ref), len(cur))
    if calibrate:
        test = CALIBRATED_AS.get(test.name, test)
    result.test, result.higher_is_drift = test.name, test.higher_is_drift
    result.statistic = test.score(ref, cur)
    if calibrate:
        result.threshold = calibrated_threshold(
            test, ref, len(cur), alpha=spec.alpha, resamples=spec.calibration_resamples, rng=rng,
            contiguous=False, distance_threshold=spec.distance_threshold,
            groups=reference.groups.get(name),
        )  # fmt: skip
        result.threshold_source = "calibrated"
    else:
        result.threshold = fixed_threshold(test, spec.alpha, spec.distance_threshold)
        result.threshold_source = "fixed"
    result.drifted = is_drift(test, result.statistic, result.threshold)
    return result


def _numeric_summary(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {}
    p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {"mean": round(float(values.mean()), 4), "p10": round(float(p10), 4), "median": round(float(p50), 4),
            "p90": round(float(p90), 4)}  # fmt: skip


def _shares(codes: np.ndarray, categories: list[str]) -> dict[str, Any]:
    if not len(codes):
        return {}
    counts = np.bincount(codes, minlength=len(categories))
    return {categories[i]: round(float(counts[i] / len(codes)), 4) for i in np.argsort(-counts) if counts[i]}

