"""`Monitor`: one monitored setup (log, model, reference, rules) evaluated on a window.

    monitor = Monitor(spec, log=None, registry=None, seed=42)
    result = monitor.report()                  # the window of spec.window up to now
    result.verdict["exit_code"]                # 0 no drift, 1 drift or a quality alert

`cvml monitor watch` keeps one Monitor and calls `report()` on every tick, so a training
reference is read and measured once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvml.errors import MonitorError
from cvml.monitor.drift import DriftResult, compare_profiles
from cvml.monitor.features import Profile, build_profile
from cvml.monitor.logrows import log_display, open_log, read_window, served_models
from cvml.monitor.model import MonitoredModel, resolve_model
from cvml.monitor.quality import QualityResult, assess_quality
from cvml.monitor.reference import Reference, log_reference, training_reference
from cvml.progress import OnProgress, Stages
from cvml.recipe import MonitorSpec
from cvml.windows import Window, window_of

SCHEMA = "cvml.monitor/1"
STATES = ("ok", "drift", "quality_alert", "drift_and_quality_alert")


@dataclass
class MonitorResult:
    """One evaluation: the windows, every feature's test, the quality, the verdict."""

    created_at: str
    log: str
    endpoint: str
    window: Window
    model: MonitoredModel | None
    reference: Reference
    current_requests: int
    served: dict[str, int]
    drift: DriftResult
    quality: QualityResult
    notes: list[str] = field(default_factory=list)
    profiles: tuple[Profile, Profile] | None = field(default=None, repr=False)  # reference, current (for plots)

    @property
    def state(self) -> str:
        alert = bool(self.quality.alerts)
        if self.drift.detected:
            return "drift_and_quality_alert" if alert else "drift"
        return "quality_alert" if alert else "ok"

    @property
    def exit_code(self) -> int:
        return 0 if self.state == "ok" else 1

    @property
    def reasons(self) -> list[str]:
        found = []
        d = self.drift
        if d.share is not None:
            names = ", ".join(d.drifted) or "none"
            found.append(f"{'input drift' if 'share' in d.rules else 'share of drifted features'}: "
                         f"{len(d.drifted)} of {len(d.tested)} input features drifted "
                         f"({d.share:.0%}, bound {d.drift_share:.0%}): {names}")  # fmt: skip
        c = d.classifier
        if c.auc is not None:
            decides = " — input drift on its own" if "classifier" in d.rules else ""
            found.append(f"domain classifier AUC {c.auc:.3f} ({'above' if c.drifted else 'within'} "
                         f"its {c.threshold_source} bound {c.threshold:.3f}, p {c.pvalue:.2g}){decides}")  # fmt: skip
        found += [f"quality alert: {t.describe()} (adjusted p {t.adjusted_pvalue:.2g})" for t in self.quality.alerts]
        return found

    @property
    def verdict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "exit_code": self.exit_code,
            "drift": self.drift.detected,
            "quality_alert": bool(self.quality.alerts),
            "retrain_recommended": self.drift.detected,
            "reasons": self.reasons,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created_at": self.created_at,
            "verdict": self.verdict,
            "log": self.log,
            "endpoint": self.endpoint,
            "model": self.model.to_dict() if self.model else None,
            "window": {**self.window.to_dict(), "label": self.window.label(), "requests": self.current_requests},
            "reference": self.reference.to_dict(),
            "served": self.served,
            "drift": self.drift.to_dict(),
            "quality": self.quality.to_dict(),
            "notes": self.notes,
        }


class Monitor:
    """Evaluates `spec` on the request log; keeps what does not change between evaluations.

    Args:
        spec: the recipe's monitor section (flags already applied).
        log: request log location (file, folder, URL); None: CVML_DB_URL, else $CVML_HOME/requests.db.
        registry: registry location (same defaults) to resolve the model.
        seed: seeds every sample, calibration and the classifier's split.
    """

    def __init__(self, spec: MonitorSpec, *, log: str | Path | None = None, registry: str | Path | None = None,
                 seed: int = 0):  # fmt: skip
        self.spec, self.log, self.registry, self.seed = spec, log, registry, seed
        self._models: dict[str, MonitoredModel] = {}
        self._training: dict[str, tuple[Reference, Profile]] = {}
        self._past: tuple[Any, Reference, Profile] | None = None  # the last log reference measured

    def report(self, end: datetime | None = None, on_progress: OnProgress | None = None) -> MonitorResult:
        """Compare the window ending at `end` (default now) with the reference.

        Raises:
            MonitorError: an empty window or one under `min_rows`, a reference that cannot be
                read or is too small, a training reference without a model.
        """
        spec = self.spec
        stages = Stages(on_progress)
        stages.start("read", total=1)
        window = window_of(spec.window, end)
        db = open_log(self.log)
        served = dict(served_models(db, window, spec.endpoint))
        model = self._model(served)
        models = model.logged_as if (model is not None and spec.model) else None
        current = read_window(db, window, spec.endpoint, models)
        self._check_window(current, window, served, model)
        notes: list[str] = []
        stages.start("reference", total=1)
        reference, ref_profile = self._reference(db, window, model, models)
        stages.start("features", total=1)
        cur_profile = self._profile("log", f"window {window.label()}", current, model)
        stages.start("drift", total=1)
        drift = compare_profiles(ref_profile, cur_profile, spec, self.seed)
        stages.start("quality", total=1)
        quality = assess_quality(
            current, reference.rows if reference.kind == "log" else None, spec, window,
            set(cur_profile.sample), set(ref_profile.sample) if reference.kind == "log" else None,
        )  # fmt: skip
        stages.finish()
        if model is not None:
            notes += list(model.notes.values())
        notes += ref_profile.notes + cur_profile.notes
        notes += _window_notes(current, served, model, reference, window)
        return MonitorResult(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            log=log_display(self.log),
            endpoint=spec.endpoint,
            window=window,
            model=model,
            reference=reference,
            current_requests=len(current),
            served=served,
            drift=drift,
            quality=quality,
            notes=list(dict.fromkeys(notes)),
            profiles=(ref_profile, cur_profile),
        )

    # ------------------------------------------------------------------------- parts

    def _model(self, served: dict[str, int]) -> MonitoredModel | None:
        ref = self.spec.model
        if ref is None:
            if not served:
                return None
            ref = Counter(served).most_common(1)[0][0]
        if ref not in self._models:
            try:
                self._models[ref] = resolve_model(ref, self.registry)
            except MonitorError:
                if self.spec.model is not None:
                    raise
                return None  # a folder served once and gone since: no model-based features
        return self._models[ref]

    def _check_window(self, current, window: Window, served: dict[str, int], model: MonitoredModel | None) -> None:
        spec = self.spec
        if not current:
            if served and model is not None and self.spec.model:
                listing = ", ".join(f"{m} ({n})" for m, n in Counter(served).most_common(5))
                raise MonitorError(
                    f"no request to {spec.endpoint} in the window {window.label()} was served by {model.ref}",
                    hint=f"the window's requests were served by: {listing}",
                )
            raise MonitorError(
                f"no request to {spec.endpoint} in the window {window.label()}",
                hint="widen --window, or check --db / CVML_DB_URL points at the log `cvml serve` writes",
            )
        if len(current) < spec.min_rows:
            raise MonitorError(
                f"the window {window.label()} holds {len(current)} request(s); its tests need at least "
                f"{spec.min_rows} (monitor.min_rows)",
                hint="widen --window, or lower monitor.min_rows (small windows give weak tests)",
            )

    def _reference(self, db, window: Window, model: MonitoredModel | None, models) -> tuple[Reference, Profile]:
        """The reference and its profile (a training split's is kept; so is the last past window's)."""
        spec = self.spec
        if spec.reference == "training":
            key = model.ref if model is not None else ""
            if key not in self._training:
                reference = training_reference(model)
                profile = self._profile("training", reference.label, reference.rows, model)
                self._training[key] = (reference, profile)
            return self._training[key]
        span = window.before() if spec.reference == "previous" else window_of(spec.reference)
        key = (span, models, model.ref if model else None)
        if self._past is not None and self._past[0] == key and span.end <= window.start:
            return self._past[1], self._past[2]  # a past window that ended before this one: it is as it was
        reference = log_reference(db, span, spec.endpoint, models)
        if len(reference.rows) < spec.min_rows:
            raise MonitorError(
                f"the reference {reference.label} holds {len(reference.rows)} request(s); at least "
                f"{spec.min_rows} are needed (monitor.min_rows)",
                hint="choose a wider or busier reference window (--reference START..END), or --reference training",
            )
        profile = self._profile("log", reference.label, reference.rows, model)
        self._past = (key, reference, profile)
        return reference, profile

    def _profile(self, kind: str, label: str, rows, model: MonitoredModel | None) -> Profile:
        return build_profile(
            kind, label, rows, vocabulary=model.vocabulary if model else None,
            tokenizer=model.tokenizer if model else None, max_text_rows=self.spec.max_text_rows, seed=self.seed,
        )  # fmt: skip


def _window_notes(current, served, model, reference: Reference, window: Window) -> list[str]:
    notes = []
    if len(served) > 1:
        listing = ", ".join(f"{m} ({n})" for m, n in Counter(served).most_common())
        notes.append(f"the window was served by several model versions: {listing}")
    if model is None:
        notes.append("no model resolved for the window: token lengths and the OOV rate are not measured")
    unsplit = sum(r.unsplit and r.ok for r in current)  # a failed request logs no checks, so no sizes
    if unsplit:
        notes.append(f"{unsplit} request(s) were logged without the sizes that split text and job description: "
                     "their text features are left out")  # fmt: skip
    if reference.window is not None and reference.window.end > window.start and reference.window.start < window.end:
        notes.append("the reference window overlaps the current window: drift is harder to see")
    return notes
