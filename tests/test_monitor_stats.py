"""The monitor's statistics, each on data whose answer is known: test choice (Evidently's
defaults), the tests' values, calibrated thresholds, the domain classifier, the quality
tests (bounds, reference, Holm), the vocabulary, windows and the recipe section."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats

from cvml.data.vocabulary import Vocabulary, words
from cvml.errors import ConfigError, DataError, RecipeError
from cvml.monitor.classifier import domain_classifier, null_auc_bound
from cvml.monitor.logrows import Request, split_input
from cvml.monitor.quality import (
    Rate,
    RateTest,
    _holm,
    _newcombe,
    assess_quality,
    rates_of,
)
from cvml.monitor.stattests import (
    CALIBRATED_FLOOR,
    TESTS,
    calibrated_threshold,
    default_test,
    encode_categories,
    is_drift,
)
from cvml.recipe import MonitorSpec, resolve_recipe
from cvml.windows import Window, parse_duration, parse_time, window_of

# ------------------------------------------------------------------------- tests and choice


def test_default_tests_follow_evidently_by_reference_size_and_kind():
    assert default_test("numeric", 1000) == "ks"
    assert default_test("numeric", 1001) == "wasserstein"
    assert default_test("categorical", 500, n_categories=2) == "z"
    assert default_test("categorical", 500, n_categories=3) == "chisquare"
    assert default_test("categorical", 5000, n_categories=3) == "jensenshannon"


def test_the_tests_give_the_known_values():
    rng = np.random.default_rng(0)
    ref, same, shifted = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    # Wasserstein in reference standard deviations: a one-sd shift is about 1.0
    assert TESTS["wasserstein"].score(ref, shifted) == pytest.approx(1.0, abs=0.06)
    assert TESTS["wasserstein"].score(ref, same) < 0.06
    assert TESTS["ks"].score(ref, same) > 0.01 and TESTS["ks"].score(ref, shifted) < 1e-50
    # PSI of a sample against itself is 0; against a shifted one far above 0.1 (Evidently's bound)
    assert TESTS["psi"].score(ref, ref) == pytest.approx(0.0, abs=1e-12)
    edges = np.quantile(ref, np.linspace(0, 1, 11))[1:-1]  # reference deciles
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / len(ref)
    c = np.bincount(np.searchsorted(edges, shifted, side="right"), minlength=10) / len(shifted)
    assert TESTS["psi"].score(ref, shifted) == pytest.approx(np.sum((c - r) * np.log(c / r)))
    assert TESTS["psi"].score(ref, shifted) > 0.5 and TESTS["psi"].score(ref, same) < 0.1
    # categorical: 50/50 vs 70/30 on 1,000 each
    a = np.r_[np.zeros(500, int), np.ones(500, int)]
    b = np.r_[np.zeros(700, int), np.ones(300, int)]
    chi2 = stats.chi2_contingency([[500, 500], [700, 300]], correction=False).pvalue
    assert TESTS["chisquare"].score(a, b) == pytest.approx(chi2)
    assert TESTS["z"].score(a, b) == pytest.approx(chi2, rel=1e-6)  # the z-test is the 2x2 chi-square
    p, q = np.array([0.5, 0.5]), np.array([0.7, 0.3])
    m = (p + q) / 2
    js = np.sqrt((np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / 2)
    assert TESTS["jensenshannon"].score(a, b) == pytest.approx(js)
    assert is_drift(TESTS["jensenshannon"], js, 0.1) and not is_drift(TESTS["chisquare"], 0.2, 0.05)


def test_categories_are_coded_alike_on_both_sides_and_rare_ones_pooled():
    ref, cur, names = encode_categories(["en", "en", "de"], ["fr", "en"])
    assert names == ["en", "de", "fr"] and ref.tolist() == [0, 0, 1] and cur.tolist() == [2, 0]
    many = [f"c{i:02d}" for i in range(30)]
    _, codes, names = encode_categories(many, many)
    assert len(names) == 20 and names[-1] == "other" and codes.max() == 19


def _false_alarms(test: str, threshold_of, n_ref: int, n_cur: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        ref, cur = rng.lognormal(4, 0.5, n_ref), rng.lognormal(4, 0.5, n_cur)
        hits += is_drift(TESTS[test], TESTS[test].score(ref, cur), threshold_of(ref, cur, rng))
    return hits / trials


@pytest.mark.integration  # seconds of simulated windows
def test_a_fixed_bound_misfires_on_small_windows_and_a_calibrated_one_does_not():
    """50-request windows against a 3,000-row reference, no drift at all: Evidently's fixed
    Wasserstein bound of 0.1 flags a large share; the calibrated bound about alpha."""
    fixed = _false_alarms("wasserstein", lambda ref, cur, rng: 0.1, 3000, 50, 200, seed=1)
    calibrated = _false_alarms(
        "wasserstein",
        lambda ref, cur, rng: calibrated_threshold(TESTS["wasserstein"], ref, len(cur), alpha=0.05, resamples=100,
                                                   rng=rng, contiguous=False, distance_threshold=0.1),
        3000, 50, 200, seed=2,
    )  # fmt: skip
    assert fixed > 0.2
    assert calibrated < 0.1


def test_calibration_keeps_people_together_and_has_a_floor():
    rng = np.random.default_rng(3)
    # 200 people with 5 alike values each: chunks of whole people see how far apart people are
    people = np.repeat(rng.normal(100, 30, 200), 5) + rng.normal(0, 1, 1000)
    groups = np.repeat(np.arange(200), 5)
    by_row = calibrated_threshold(TESTS["wasserstein"], people, 100, alpha=0.05, resamples=100, rng=rng,
                                  contiguous=False, distance_threshold=0.1)  # fmt: skip
    by_person = calibrated_threshold(TESTS["wasserstein"], people, 100, alpha=0.05, resamples=100, rng=rng,
                                     contiguous=False, distance_threshold=0.1, groups=groups)  # fmt: skip
    assert by_person > 1.3 * by_row
    # A reference that never varies: every chunk is at distance 0, the bound is the floor
    constant = np.zeros(1000, dtype=np.int64)
    bound = calibrated_threshold(TESTS["jensenshannon"], constant, 100, alpha=0.05, resamples=20, rng=rng,
                                 contiguous=False, distance_threshold=0.1)  # fmt: skip
    assert bound == CALIBRATED_FLOOR * 0.1
    one_odd = np.r_[np.zeros(999, dtype=np.int64), 1]
    thirty_percent = np.r_[np.zeros(700, dtype=np.int64), np.ones(300, dtype=np.int64)]
    assert not is_drift(TESTS["jensenshannon"], TESTS["jensenshannon"].score(constant, one_odd), bound)
    assert is_drift(TESTS["jensenshannon"], TESTS["jensenshannon"].score(constant, thirty_percent), bound)


# ----------------------------------------------------------------------- domain classifier


_WORDS = ("led", "built", "team", "sales", "python", "reports", "customers", "budget", "weekly", "data")


def _texts(rng, n: int, extra: str | None = None) -> list[str]:
    texts = []
    for i in range(n):
        words_ = list(rng.choice(_WORDS, size=6))
        if extra is not None:
            words_.insert(int(rng.integers(0, 6)), extra)
        texts.append(" ".join(words_) + f" item{i}")
    return texts


def test_the_classifier_cannot_tell_alike_windows_apart_and_names_what_separates_others():
    rng = np.random.default_rng(4)
    alike = domain_classifier(_texts(rng, 400), _texts(rng, 200), calibrated=True, fixed_auc=0.55, alpha=0.05,
                              top_words=5, min_values=20, seed=0)  # fmt: skip
    assert alike.auc is not None and abs(alike.auc - 0.5) < 0.1 and not alike.decisive(0.55, 0.001)
    apart = domain_classifier(_texts(rng, 400), _texts(rng, 200, extra="nursing"), calibrated=True, fixed_auc=0.55,
                              alpha=0.05, top_words=5, min_values=20, seed=0)  # fmt: skip
    assert apart.auc > 0.95 and apart.drifted and apart.decisive(0.55, 0.001)
    assert apart.words["current"][0]["word"] == "nursing"
    assert apart.words["current"][0]["current_share"] == 1.0 and apart.words["current"][0]["reference_share"] == 0.0


def test_the_classifier_deduplicates_and_keeps_a_persons_texts_on_one_side_of_its_split():
    """The reference repeats texts and people (a person writes alike texts): row-wise, the
    model would learn who wrote them; per person, alike windows stay alike."""
    rng = np.random.default_rng(5)
    people = {f"p{i}": rng.choice(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"], size=2) for i in range(300)}

    def side(names: list[str], n: int) -> tuple[list[str], list[str]]:
        texts, groups = [], []
        for _ in range(n):
            person = names[int(rng.integers(0, len(names)))]
            texts.append(" ".join([*people[person], *rng.choice(_WORDS, size=4)]))
            groups.append(person)
        return texts, groups

    names = list(people)
    (ref, ref_g), (cur, cur_g) = side(names[:150], 900), side(names[150:], 300)
    result = domain_classifier(ref + ref, cur, reference_groups=ref_g + ref_g, current_groups=cur_g, calibrated=True,
                               fixed_auc=0.55, alpha=0.05, top_words=5, min_values=20, seed=1)  # fmt: skip
    assert result.n_reference <= len(set(ref))
    assert not result.decisive(0.55, 0.001), result.auc


@pytest.mark.integration  # a simulation of the null
def test_the_calibrated_auc_bound_is_the_mann_whitney_null():
    assert null_auc_bound(100, 100, 0.05) == pytest.approx(0.5 + 1.6449 * np.sqrt(201 / 120000), abs=1e-4)
    rng = np.random.default_rng(6)
    null = [stats.mannwhitneyu(rng.normal(size=100), rng.normal(size=100)).statistic / 10000 for _ in range(2000)]
    assert np.mean(np.array(null) > null_auc_bound(100, 100, 0.05)) == pytest.approx(0.05, abs=0.015)


# ---------------------------------------------------------------------------- quality tests


def _request(i: int, **kw) -> Request:
    base = dict(
        request_id=f"r{i}", at=datetime(2026, 11, 1, tzinfo=timezone.utc).isoformat(), variant="a",
        model_version="m@1", user_key=None, task="rewrite_bullet", status=200, e2e_s=0.5, ttft_s=0.05,
        source="Led a team", job_description=None, output="Led a team of five", source_chars=10,
        job_description_chars=None, error=False, timeout=False, checked=True, fabrication=False, pii_leak=False,
        harmful=False, blocked=False, final_flagged=False, accepted=None, rating=None, edited_text=None, has_text=True,
    )  # fmt: skip
    base.update(kw)
    return Request(**base)


def test_rates_count_what_each_applies_to():
    rows = [_request(0, fabrication=True), _request(1), _request(2, status=504, timeout=True, error=True, checked=False,
            fabrication=None, pii_leak=None, harmful=None, blocked=None, output=None), _request(3, accepted=True),
            _request(4, accepted=False), _request(5, output="I'm sorry, I cannot help with that.")]  # fmt: skip
    rates = rates_of(rows)
    assert (rates["error_rate"].events, rates["error_rate"].n) == (1, 6)
    assert (rates["timeout_rate"].events, rates["timeout_rate"].n) == (1, 6)
    assert (rates["fabrication_rate"].events, rates["fabrication_rate"].n) == (1, 5)  # successful rewrites only
    assert (rates["acceptance_rate"].events, rates["acceptance_rate"].n) == (1, 2)
    assert rates["empty_refusal_rate"].events == 1
    ci = stats.binomtest(1, 5).proportion_ci(0.95, method="exact")
    assert (rates["fabrication_rate"].low, rates["fabrication_rate"].high) == pytest.approx((ci.low, ci.high))


def test_holm_adjusts_step_down():
    tests = [RateTest("error_rate", "all", "limit", 0.1, 0.02, p) for p in (0.01, 0.04, 0.03, 0.005)]
    _holm(tests, 0.05)
    assert [t.adjusted_pvalue for t in tests] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [t.alert for t in tests] == [True, False, False, True]


def test_newcombe_interval_covers_the_difference():
    low, high = _newcombe(Rate(60, 1000), Rate(150, 5000))
    assert low < 0.03 < high and low > 0


def test_quality_alerts_on_a_rise_over_the_reference_and_over_a_bound_not_on_noise():
    window = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
    rng = np.random.default_rng(7)
    reference = [_request(i, fabrication=bool(rng.random() < 0.03)) for i in range(5000)]
    ordinary = [_request(i, fabrication=bool(rng.random() < 0.03)) for i in range(1000)]
    doubled = [_request(i, fabrication=bool(rng.random() < 0.10)) for i in range(1000)]
    spec = MonitorSpec()
    assert assess_quality(ordinary, reference, spec, window).alerts == []
    alerts = assess_quality(doubled, reference, spec, window).alerts
    assert {(t.rate, t.against) for t in alerts} >= {("fabrication_rate", "reference"), ("fabrication_rate", "limit")}
    # without a log reference only the bound is tested
    assert {t.against for t in assess_quality(doubled, None, spec, window).tests} == {"limit"}


# ------------------------------------------------------------------------------- vocabulary


def test_vocabulary_words_counts_and_leaving_a_person_out(tmp_path):
    assert words("Led <NAME_1>'s team of 5 in Köln, using SQL") == ["led", "s", "team", "of", "in", "köln", "using", "sql"]
    vocab = Vocabulary.from_texts(["led the team", "led the sales team", "built dashboards"])
    assert vocab.counts == {"led": 2, "the": 2, "team": 2}  # words seen once are not stored
    assert vocab.oov_rate("led the nursing team") == 0.25
    assert vocab.oov_rate("1234") is None
    own = {"led": 1, "the": 1, "sales": 1, "team": 1}
    assert vocab.oov_rate("led the sales team", leave_out=own) == 0.25  # nobody else wrote "sales"
    assert vocab.oov_rate("led the team", leave_out={"team": 2}) == pytest.approx(1 / 3)  # only this person wrote "team"
    path = vocab.write(tmp_path)
    assert Vocabulary.read(tmp_path).counts == vocab.counts and path.name == "vocabulary.json"
    with pytest.raises(DataError, match="has no vocabulary.json"):
        Vocabulary.read(tmp_path / "elsewhere")


# -------------------------------------------------------------------------- windows, split


def test_windows_and_durations():
    end = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    assert parse_duration("15m") == timedelta(minutes=15) and parse_duration("2w") == timedelta(days=14)
    assert window_of("24h", end) == Window(end - timedelta(hours=24), end)
    month = window_of("2026-11-01..2026-11-30")
    assert month.start == datetime(2026, 11, 1, tzinfo=timezone.utc) and month.end == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert month.before() == Window(datetime(2026, 10, 2, tzinfo=timezone.utc), month.start)
    assert parse_time("2026-11-01T10:00:00") == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    for bad in ("7x", "0h", "-3d"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    with pytest.raises(ConfigError, match="ends before it starts"):
        window_of("2026-11-30..2026-11-01")


def test_the_logged_input_is_split_by_the_sizes_serve_logs():
    figures = {"text_chars": 30, "text_lines": 1, "job_description_chars": 20}
    assert split_input("Led a team\n- built a tool\nWe hire a lead", figures) == ("Led a team\n- built a tool", "We hire a lead", True)
    assert split_input("Led a team", {"text_chars": 10, "text_lines": 0, "job_description_chars": 0}) == ("Led a team", None, True)
    assert split_input("Led a team", None) == ("Led a team", None, True)  # an old row without a line break
    assert split_input("Led a team\nWe hire", None) == (None, None, False)  # ambiguous: not split
    assert split_input(None, figures) == (None, None, True)


def test_the_monitor_section_reports_every_problem_with_its_path():
    assert resolve_recipe(None, name="x").monitor is None
    spec = resolve_recipe(None, ["monitor.window=7d", "monitor.stattests={source_chars: psi}"], name="x").monitor
    assert spec.window == "7d" and spec.stattests == {"source_chars": "psi"} and spec.reference == "training"
    with pytest.raises(RecipeError) as caught:
        resolve_recipe(None, ["monitor.window=7x", "monitor.reference=yesterday", "monitor.stattests={task: ks}",
                              "monitor.rate_limits={fabrication_rat: 0.1}", "monitor.drift_shar=0.3"], name="x")  # fmt: skip
    problems = dict(caught.value.problems)
    assert set(problems) == {"monitor.window", "monitor.reference", "monitor.stattests", "monitor.rate_limits",
                             "monitor.drift_shar"}  # fmt: skip
    assert "did you mean 'fabrication_rate'" in problems["monitor.rate_limits"]
    assert "did you mean 'monitor.drift_share'" in problems["monitor.drift_shar"]
    assert "categorical" in problems["monitor.stattests"]


# ----------------------------------------------------------- detectors on built profiles


def _profile_of(texts: list[tuple[str, str]], kind: str = "log"):
    from cvml.monitor.features import build_profile

    rows = [_request(i, task=task, source=text, source_chars=len(text), user_key=f"u{i}") for i, (task, text) in enumerate(texts)]
    return build_profile(kind, kind, rows, vocabulary=None, tokenizer=None, max_text_rows=5000, seed=0)


def test_the_task_mix_and_the_share_of_symbols_are_detected_on_their_own():
    from cvml.monitor.drift import compare_profiles

    rng = np.random.default_rng(8)
    bullets = [" ".join(rng.choice(_WORDS, size=int(rng.integers(5, 9)))) for _ in range(3000)]
    def mix_of(n: int, shares: tuple[float, float, float]) -> list[str]:
        tasks = [t for t, share in zip(("rewrite_bullet", "tailor_section", "summary"), shares) for _ in range(round(n * share))]
        return list(rng.permutation(tasks))

    reference = _profile_of(list(zip(mix_of(2000, (0.6, 0.25, 0.15)), bullets[:2000])))
    mix = _profile_of(list(zip(mix_of(400, (0.2, 0.7, 0.1)), bullets[2000:])))
    symbols = _profile_of(list(zip(mix_of(400, (0.6, 0.25, 0.15)), [b + " #### $$$ 12/34 ***" for b in bullets[2000:]])))
    spec = MonitorSpec()
    by_mix = compare_profiles(reference, mix, spec, seed=0)
    assert by_mix.feature("task").drifted and not by_mix.feature("non_letter_share").drifted
    assert by_mix.feature("task").current["tailor_section"] > 0.6
    by_symbols = compare_profiles(reference, symbols, spec, seed=0)
    assert by_symbols.feature("non_letter_share").drifted and not by_symbols.feature("task").drifted
    assert by_symbols.feature("non_letter_share").threshold_source == "calibrated"


def test_a_variant_that_regresses_alerts_in_its_own_scope():
    window = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
    rng = np.random.default_rng(9)
    reference = [_request(i, variant="ab"[i % 2], fabrication=bool(rng.random() < 0.03)) for i in range(4000)]
    current = [_request(i, variant="ab"[i % 2], fabrication=bool(rng.random() < (0.03 if i % 2 == 0 else 0.12)))
               for i in range(2000)]  # fmt: skip
    result = assess_quality(current, reference, MonitorSpec(), window)
    assert set(result.scopes) == {"all", "a", "b"} and set(result.over_time["series"]) == {"all", "a", "b"}
    scopes = {t.scope for t in result.alerts if t.rate == "fabrication_rate"}
    assert "b" in scopes and "a" not in scopes
