"""Clinical quality monitoring: AUC and its DeLong interval against independent references,
the alert rules and their hysteresis, the review/finding join, the review simulator and the
device faults of the drift demonstration (checked with the committed ONNX model)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pydicom
import pytest

from services.demo.reviews import ReviewConfig, reviewer_ref, simulate_city_reviews
from services.synth.city import CityModel, CityTruth, generate_service_studies
from services.synth.faults import DeviceFault, apply_fault, parse_faults
from services.synth.phantoms.chest_xray import render_chest_xray
from streams.analytics.agreement import (
    auc_with_ci,
    delong_components,
    delong_variance,
    sensitivity_specificity,
)
from streams.analytics.auc import roc_auc
from streams.analytics.quality_monitor import QualityMonitor, QualityThresholds
from streams.analytics.review_join import parse_review, record_finding, record_review
from streams.analytics.review_windows import Observation, Subject, summarize_reviews
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate
from streams.imaging.preprocess import to_model_input

MODEL = (Path(__file__).resolve().parents[2] / "services" / "triton" / "model_repository"
         / "cxr_lesion" / "1" / "model.onnx")
AT = "2024-05-14T09:00:00Z"
THRESHOLDS = QualityThresholds(auc_floor=0.81, auc_z=1.96, min_reviews=20, window=100,
                               device_window=40,
                               defect_ceiling=0.05, defect_window=50, defect_min_findings=50,
                               rearm_margin=0.02)


def bits(*values: int) -> list[bool]:
    return [bool(v) for v in values]


# --- AUC, DeLong ---------------------------------------------------------------------------

def test_auc_hand_computed_cases() -> None:
    # Pairs (pos, neg): (.9,.1) (.9,.5) (.4,.1) win, (.4,.5) loses: 3 of 4.
    assert roc_auc(bits(1, 0, 1, 0), [0.9, 0.1, 0.4, 0.5]) == 0.75
    assert roc_auc(bits(1, 1, 0, 0), [0.3, 0.3, 0.3, 0.3]) == 0.5  # ties count one half
    assert roc_auc(bits(0, 1), [0.2, 0.8]) == 1.0 and roc_auc(bits(1, 0), [0.2, 0.8]) == 0.0
    # One tie among 2 x 3 pairs: (.7 > .2, .7 = .7, .7 > .5, .4 > .2, .4 < .7, .4 < .5) = 3.5/6.
    assert roc_auc(bits(1, 1, 0, 0, 0), [0.7, 0.4, 0.2, 0.7, 0.5]) == pytest.approx(3.5 / 6)


def test_delong_variance_hand_computed() -> None:
    # Positives .9, .4; negatives .1, .5. V10 = [1, .5], V01 = [1, .5]; S10 = S01 = .125.
    labels, scores = bits(1, 1, 0, 0), [0.9, 0.4, 0.1, 0.5]
    v10, v01 = delong_components(labels, scores)
    np.testing.assert_allclose(v10, [1.0, 0.5])
    np.testing.assert_allclose(v01, [1.0, 0.5])
    assert delong_variance(labels, scores) == pytest.approx(0.125 / 2 + 0.125 / 2)


def _naive_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong variance from the full m x n kernel matrix, no ranks."""
    pos, neg = scores[labels], scores[~labels]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = 0.0
    for comp in (v10, v01):
        var += float(((comp - comp.mean()) ** 2).sum() / (comp.size - 1) / comp.size)
    return float(psi.mean()), var


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_delong_matches_brute_force_structural_components(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(150) < 0.35
    # Rounded scores: plenty of ties, within and across classes.
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)
    auc, var = _naive_delong(labels, scores)
    assert roc_auc(labels, scores) == pytest.approx(auc, abs=1e-12)
    assert delong_variance(labels, scores) == pytest.approx(var, rel=1e-10)
    v10, v01 = delong_components(labels, scores)
    assert v10.mean() == pytest.approx(auc) and v01.mean() == pytest.approx(auc)


def test_delong_variance_agrees_with_a_stratified_bootstrap() -> None:
    rng = np.random.default_rng(20240)
    labels = np.r_[np.ones(60, bool), np.zeros(140, bool)]
    scores = rng.normal(labels * 1.2, 1.0)
    pos, neg = scores[labels], scores[~labels]
    boot = []
    for _ in range(2000):
        p = rng.choice(pos, pos.size)
        n = rng.choice(neg, neg.size)
        boot.append(roc_auc(np.r_[np.ones(p.size, bool), np.zeros(n.size, bool)], np.r_[p, n]))
    assert delong_variance(labels, scores) == pytest.approx(np.var(boot), rel=0.15)


def test_auc_interval_contains_the_estimate_and_needs_two_per_class() -> None:
    est = auc_with_ci(bits(1, 1, 1, 0, 0, 0, 0), [0.9, 0.8, 0.3, 0.4, 0.2, 0.1, 0.35])
    assert est.ci is not None and est.ci[0] <= est.auc <= est.ci[1] <= 1.0
    perfect = auc_with_ci(bits(1, 1, 0, 0), [0.9, 0.8, 0.1, 0.2])
    assert perfect.auc == 1.0 and perfect.ci == (1.0, 1.0)
    assert auc_with_ci(bits(1, 0, 0), [0.9, 0.1, 0.2]).ci is None


def test_sensitivity_specificity() -> None:
    truth = [True, True, True, True, False, False, False, False, False]
    called = [True, True, True, False, False, False, False, True, False]
    assert sensitivity_specificity(truth, called) == (0.75, 0.8)
    assert sensitivity_specificity([False, False], [True, False]) == (None, 0.5)


# --- the monitor -------------------------------------------------------------------------------

def _obs(score: float, positive: bool) -> Observation:
    return Observation(score, positive, score >= 0.5, AT)


def _good(i: int) -> Observation:
    positive = i % 3 == 0
    return _obs(0.8 if positive else 0.2, positive)


def _bad(i: int) -> Observation:
    positive = i % 3 == 0
    return _obs(1.0 if i % 2 else 0.0, positive)  # unrelated to the truth: AUC about 0.5


def test_device_auc_alert_names_the_device_once_after_min_reviews() -> None:
    monitor = QualityMonitor(THRESHOLDS)
    raised: list[tuple[int, dict]] = []
    for i in range(120):
        for device, obs in (("DEV-OK", _good(i)), ("DEV-BAD", _bad(i))):
            for alert in monitor.add_review(Subject("chest-xray", "lung_nodule", device), obs,
                                            now=AT):
                raised.append((i, alert))
    device_alerts = [(i, a) for i, a in raised if "device_id" in a]
    assert {a["device_id"] for _, a in device_alerts} == {"DEV-BAD"}
    first_at, first = device_alerts[0]
    assert first_at + 1 == THRESHOLDS.min_reviews  # not before M reviews of that device
    assert first["kind"] == "auc_below_floor" and first["finding"] == "lung_nodule"
    assert first["value"] < 0.81 and first["threshold"] == 0.81
    assert first["samples"] == THRESHOLDS.min_reviews
    assert first["window"] == {"kind": "reviews", "start": AT, "size": 40}
    validate(EventKind.QUALITY_ALERT, first)
    # Still failing: once per device window of new reviews, not on every review.
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(device_alerts)]
    assert gaps and all(g == THRESHOLDS.device_window for g in gaps)


def test_auc_alert_rearms_only_after_recovery() -> None:
    monitor = QualityMonitor(THRESHOLDS)
    subject = Subject("chest-xray", "lung_nodule", "DEV")
    alerts = [a for i in range(25) for a in monitor.add_review(subject, _bad(i), now=AT)
              if "device_id" in a]
    assert len(alerts) == 1
    for i in range(40):  # a fixed device: the window fills with good reads and recovers
        assert not [a for a in monitor.add_review(subject, _good(i), now=AT)
                    if "device_id" in a]
    assert monitor.summary(subject).auc == 1.0
    again = [a for i in range(40) for a in monitor.add_review(subject, _bad(i), now=AT)
             if "device_id" in a]
    assert len(again) == 1


def test_a_dip_inside_the_confidence_interval_alerts_only_without_the_margin() -> None:
    # 10 positives, 20 negatives; positive k outscores 10 + k negatives: AUC 14.5 / 20.
    negatives = iter(j / 100 for j in range(20))
    positives = iter((10 + k) / 100 - 0.005 for k in range(10))
    reads = [_obs(next(positives), True) if i % 3 == 0 else _obs(next(negatives), False)
             for i in range(30)]
    s = summarize_reviews(reads)
    assert s.auc is not None and s.auc_ci is not None
    assert s.auc == pytest.approx(0.725) and s.auc_ci[1] >= 0.81  # not confidently below
    subject = Subject("chest-xray", "lung_nodule", "DEV")
    cautious = QualityMonitor(THRESHOLDS)
    assert not [a for o in reads for a in cautious.add_review(subject, o, now=AT)
                if "device_id" in a]
    eager = QualityMonitor(dataclasses.replace(THRESHOLDS, auc_z=0.0))
    assert [a for o in reads for a in eager.add_review(subject, o, now=AT) if "device_id" in a]


def test_no_auc_alert_without_both_classes() -> None:
    monitor = QualityMonitor(THRESHOLDS)
    subject = Subject("chest-xray", "lung_nodule", "DEV")
    for _ in range(50):
        assert monitor.add_review(subject, _obs(0.9, False), now=AT) == []
    assert monitor.summary(subject).auc is None


def test_defect_rate_alert_above_ceiling_over_last_k_findings() -> None:
    monitor = QualityMonitor(THRESHOLDS)
    alerts = []
    for i in range(50):  # 2 defects in 50 = 4 %: fine
        alerts += monitor.add_finding("chest-xray", "DEV", defective=i in (10, 20), at=AT,
                                      now=AT)
    assert alerts == [] and monitor.defect_rate("chest-xray") == 0.04
    alerts += monitor.add_finding("chest-xray", "DEV", defective=True, at=AT, now=AT)
    # The window slides (50 findings): 3 defects in the last 50 = 6 %, service and device.
    assert sorted(a.get("device_id", "") for a in alerts) == ["", "DEV"]
    for alert in alerts:
        assert alert["kind"] == "defect_rate_high" and alert["value"] == 0.06
        assert alert["window"]["kind"] == "findings"
        validate(EventKind.QUALITY_ALERT, alert)
    assert monitor.add_finding("chest-xray", "DEV", defective=True, at=AT, now=AT) == []


def test_report_shape_before_and_after_reviews() -> None:
    monitor = QualityMonitor(THRESHOLDS)
    empty = monitor.report([("chest-xray", "lung_nodule", 0.48)], [])
    assert empty == {"services": [{
        "service": "chest-xray", "finding": "lung_nodule", "reviews": 0, "auc": None,
        "auc_ci": None, "sensitivity": None, "specificity": None, "threshold": 0.48,
        "defect_rate": None}], "devices": [], "alerts": []}
    for i in range(30):
        monitor.add_review(Subject("chest-xray", "lung_nodule", "D1"), _good(i), now=AT)
    report = monitor.report([("chest-xray", "lung_nodule", 0.48)], [{"kind": "x"}])
    (row,) = report["services"]
    assert row["reviews"] == 30 and row["auc"] == 1.0 and row["auc_ci"] == [1.0, 1.0]
    assert row["sensitivity"] == 1.0 and row["specificity"] == 1.0
    assert report["devices"] == [{"service": "chest-xray", "finding": "lung_nodule",
                                  "device_id": "D1", "reviews": 30, "auc": 1.0}]
    assert report["alerts"] == [{"kind": "x"}]


def test_summary_window_start_is_the_oldest_review() -> None:
    s = summarize_reviews([Observation(0.9, True, True, "2024-01-01T00:00:00Z"),
                           Observation(0.1, False, False, "2024-01-02T00:00:00Z")])
    assert s.start == "2024-01-01T00:00:00Z" and s.reviews == 2 and s.positives == 1


# --- joining reviews with findings -----------------------------------------------------------

def _finding(status: str = "ok", score: float = 0.7) -> dict:
    findings = [] if status != "ok" else [
        {"code": "lung_nodule", "score": score, "positive": score >= 0.48, "threshold": 0.48}]
    return {"study_uid": "1.2.3", "service": "chest-xray", "device_id": "H001-D01",
            "status": status, "findings": findings}


def _review(positive: bool = True, code: str = "lung_nodule") -> dict:
    return {"study_uid": "1.2.3", "service": "chest-xray", "code": code,
            "radiologist_positive": positive, "reviewer_ref": "ab" * 16, "reviewed_at": AT}


def test_review_before_its_finding_waits_then_joins() -> None:
    entry, joined = record_review(None, _review(positive=False))
    assert joined == [] and len(entry["pending"]) == 1
    entry, joined, new = record_finding(entry, _finding(score=0.7))
    assert new and "pending" not in entry
    (j,) = joined
    assert j.subject == Subject("chest-xray", "lung_nodule", "H001-D01")
    assert j.observation == Observation(0.7, False, True, AT)
    # A redelivered finding or review changes nothing and counts nothing.
    assert record_finding(entry, _finding())[1:] == ([], False)
    assert record_review(entry, _review())[1] == []


def test_review_after_its_finding_joins_at_once_and_counts_once() -> None:
    entry, _, _ = record_finding(None, _finding(score=0.2))
    entry, joined = record_review(entry, _review(positive=True))
    assert [j.observation.score for j in joined] == [0.2]
    assert record_review(entry, _review(positive=False))[1] == []


def test_reviews_of_defective_studies_or_unknown_codes_give_no_observation() -> None:
    entry, _ = record_review(None, _review())
    entry, joined, new = record_finding(entry, _finding(status="technical_defect"))
    assert new and joined == [] and entry["joined"] == ["lung_nodule"]
    entry, _, _ = record_finding(None, _finding())
    assert record_review(entry, _review(code="pleural_effusion"))[1] == []


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", Reason.INVALID_JSON), (b"{not json", Reason.INVALID_JSON),
    (b'{"study_uid": "1.2"}', Reason.SCHEMA_VIOLATION),
    (b" " * 70_000, Reason.PAYLOAD_TOO_LARGE),
])
def test_bad_reviews_are_rejected_with_a_reason(raw: bytes, reason: Reason) -> None:
    with pytest.raises(InputRejected) as caught:
        parse_review(raw)
    assert caught.value.reason is reason


# --- the simulated radiologists ----------------------------------------------------------------

def test_simulated_reviews_sample_disagree_and_stay_pseudonymous() -> None:
    truths = [CityTruth(study_uid=f"1.2.3.{i}", hospital_id="H001", device_id="H001-DX01",
                        service="chest-xray", modality="DX", body_part="CHEST",
                        priority="routine", defect=None, labels={"lung_nodule": i % 2 == 0},
                        measurements={}, announce_at_s=float(i), patient_age_years=50,
                        patient_sex="F", body_part_override=None, series_dir="",
                        patient_id=f"SYNTH-5-{i:06d}") for i in range(60)]
    lesion = [t.labels["lung_nodule"] for t in truths]
    everyone = simulate_city_reviews(
        truths, ReviewConfig(sample_fraction=1.0, disagreement_rate=0.0), reviewed_at=AT)
    assert [r["radiologist_positive"] for r in everyone] == lesion
    flipped = simulate_city_reviews(
        truths, ReviewConfig(sample_fraction=1.0, disagreement_rate=1.0), reviewed_at=AT)
    assert [r["radiologist_positive"] for r in flipped] == [not x for x in lesion]
    sample = simulate_city_reviews(truths, ReviewConfig(sample_fraction=0.3, seed=9),
                                   reviewed_at=AT)
    assert 8 <= len(sample) <= 30
    assert sample == simulate_city_reviews(truths, ReviewConfig(sample_fraction=0.3, seed=9),
                                           reviewed_at=AT)
    refs = {reviewer_ref(1, i) for i in range(12)}
    for review in everyone:
        validate(EventKind.REVIEW, review)
        assert review["reviewer_ref"] in refs
        assert "SYNTH" not in str(review)  # no patient identifier of the phantom


# --- the faulty device of the drift demonstration ----------------------------------------------

def test_faults_touch_only_the_named_device(tmp_path: Path) -> None:
    city = CityModel(hospitals=1, devices=2, device_mix=(("DX", 1.0),))
    clean = generate_service_studies(tmp_path / "clean", 12, seed=31, model=city)
    faulty = generate_service_studies(tmp_path / "faulty", 12, seed=31, model=city,
                                      device_faults=parse_faults(["H001-DX01=wrong_window"]))
    assert {t.device_id for t in clean} == {"H001-DX01", "H001-DX02"}
    for a, b in zip(clean, faulty, strict=True):
        assert (a.study_uid, a.labels, a.planted) == (b.study_uid, b.labels, b.planted)
        same = a.files[0].read_bytes() == b.files[0].read_bytes()
        assert same == (a.device_id != "H001-DX01")
        if not same:
            da, db = pydicom.dcmread(a.files[0]), pydicom.dcmread(b.files[0])
            np.testing.assert_array_equal(da.pixel_array, db.pixel_array)
            assert float(db.WindowCenter) > float(da.WindowCenter)
    with pytest.raises(ValueError, match="unknown device fault"):
        parse_faults(["H001-D01=sunburn"])


def test_faults_drop_the_committed_models_auc_far_below_the_floor() -> None:
    """The committed model, the worker's preprocessing: a faulty device's studies become
    unreadable to it, a healthy device's stay well separated."""
    images, labels = [], []
    for i in range(160):
        rng = np.random.default_rng(np.random.SeedSequence([9001, i]))
        lesion = bool(rng.random() < 0.4)
        pixels, _ = render_chest_xray(rng, lesion=lesion)
        images.append(pixels)
        labels.append(lesion)
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])

    def auc(fault: DeviceFault | None) -> float:
        batch = []
        for pixels in images:
            window = None
            if fault is not None:
                f = apply_fault(fault, pixels)
                pixels, window = f.pixels, f.window
            center, width = window if window else (None, None)
            batch.append(to_model_input(pixels, window_center=center, window_width=width))
        (scores,) = session.run(["lesion_score"], {"image": np.stack(batch)})
        return roc_auc(labels, np.asarray(scores)[:, 0])

    assert auc(None) >= 0.85
    assert auc(DeviceFault.WRONG_WINDOW) <= 0.65
    assert auc(DeviceFault.BLUR) <= 0.7
