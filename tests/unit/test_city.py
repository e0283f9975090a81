"""The simulated city: layout, load arithmetic, mix, and DICOM files that are what the truth
says (normal studies route to their service, defects are really defective, not-applicable
studies match no service). Only services whose phantom module exists are exercised."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from services.publisher.announce import build_announcement
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import StudyGroup, group_instances, scan_tree
from services.synth.city import (
    DAY_CURVE,
    IMPLAUSIBLE_SPACING_MM,
    REAL_RATE_PER_S,
    SERVICE_MIX,
    CityModel,
    CityTruth,
    Load,
    apply_announcement_overrides,
    arrival_offsets,
    build_city,
    expected_outcomes,
    generate_city,
    load_city_truth,
    plan_city,
    rate_for,
)
from services.synth.phantoms.base import Phantom
from services.synth.phantoms.registry import (
    PhantomModuleMissing,
    available_services,
    phantom_module,
)
from services.synth.series_writer import SeriesHeader, write_series
from streams.contract.catalog import catalog, service
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import read_image
from streams.rules.routing import route

KEY = b"k" * 32
AVAILABLE = available_services()
MULTI_SLICE = [s for s in AVAILABLE if service(s).checks.max_slices > 1]


def _studies(root: Path) -> dict[str, StudyGroup]:
    return {g.study_uid: g for g in group_instances(scan_tree(root))}


def _announce(group: StudyGroup, truth: CityTruth, *, override: bool = True) -> dict:
    event = build_announcement(group, hospital_id=truth.hospital_id,
                               pseudonymizer=Pseudonymizer(KEY), priority=truth.priority,
                               root=Path("/srv/radstream/dicom"),
                               published_at="2024-03-04T00:00:00Z")
    return apply_announcement_overrides(event, truth) if override else event


def _z(path: Path) -> float:
    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


# ------------------------------------------------------------------ pure model and arithmetic


def test_real_rate_and_load_arithmetic() -> None:
    assert abs(REAL_RATE_PER_S * 604_800 - 80_000) < 1e-6
    assert round(REAL_RATE_PER_S, 4) == 0.1323
    assert Load(times_real=10).rate == pytest.approx(10 * REAL_RATE_PER_S) == rate_for(10)
    assert Load(rate_per_s=2.5).rate == 2.5
    for bad in (Load(), Load(rate_per_s=1, times_real=1), Load(rate_per_s=0)):
        with pytest.raises(ValueError):
            _ = bad.rate


def test_arrivals_follow_rate_and_day_curve() -> None:
    day = 240.0
    load = Load(rate_per_s=50.0, compress_day_s=day)
    t = arrival_offsets(60_000, load, seed=3)
    assert np.all(np.diff(t) > 0) and t[0] > 0
    # Prefix-stable: study i is announced at the same time whatever n is.
    np.testing.assert_array_equal(arrival_offsets(500, load, seed=3), t[:500])
    # Mean rate over whole days, and the hourly shape of the curve.
    whole = t[t < 4 * day]
    assert len(whole) / (4 * day) == pytest.approx(50.0, rel=0.03)
    hours = Counter((whole % day // (day / 24)).astype(int).tolist())
    expected = np.asarray(DAY_CURVE) / np.mean(DAY_CURVE) * 50.0 * 4 * day / 24
    observed = np.asarray([hours[h] for h in range(24)])
    assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected) + 5)
    # Starting at the 10 o'clock peak gives more early arrivals than starting at 3 am.
    peak = arrival_offsets(2000, dataclasses.replace(load, start_hour=10), seed=3)
    night = arrival_offsets(2000, dataclasses.replace(load, start_hour=3), seed=3)
    assert np.sum(peak < day / 24) > 3 * np.sum(night < day / 24)


def test_city_layout() -> None:
    city = build_city(CityModel())
    assert len(city.hospitals) == 150 and len(city.devices) == 1200
    assert len({d.id for d in city.devices}) == 1200
    for h in city.hospitals:
        assert any(d.hospital_id == h and "chest-xray" in d.services for d in city.devices)
    by_modality = Counter(d.modality for d in city.devices)
    assert by_modality["DX"] > by_modality["CT"] > by_modality["MR"] > 0
    assert by_modality["MG"] > 0 and by_modality["US"] > 0
    for s in catalog():
        devices = city.devices_for_service(s.id)
        assert devices and all(d.modality in s.modalities for d in devices)
    assert build_city(CityModel()) is build_city(CityModel())


def test_mix_proportions_on_500_plans() -> None:
    plans = plan_city(500, seed=21, defect_rate=0.05, not_applicable_rate=0.05,
                      services=AVAILABLE)
    n = len(plans)
    services = Counter(p.service for p in plans)
    assert 0.02 <= services["none"] / n <= 0.09
    assert 0.02 <= sum(p.defect is not None for p in plans) / n <= 0.09
    shares = dict(SERVICE_MIX)
    total = sum(shares[s] for s in AVAILABLE)
    applicable = n - services["none"]
    for sid in AVAILABLE:
        expected = shares[sid] / total * applicable
        assert abs(services[sid] - expected) <= 4 * np.sqrt(expected) + 3, sid
    assert services["chest-xray"] == max(services.values())
    priorities = Counter(p.priority for p in plans)
    assert 0.78 <= priorities["routine"] / n <= 0.92
    assert 0.05 <= priorities["urgent"] / n <= 0.16
    assert 0.02 <= priorities["emergency"] / n <= 0.10
    for p in plans:
        if p.service == "mammography":
            assert p.patient_sex == "F" and 40 <= p.patient_age_years <= 75
        if p.service == "ldct-screening":
            assert 50 <= p.patient_age_years <= 80
        if p.service != "none":
            assert p.service in p.device.services


def test_expected_outcomes_from_planted_truth() -> None:
    base = CityTruth("1.2", "H001", "H001-DX01", "chest-xray", "DX", "CHEST", "routine", None,
                     {}, {}, 0.0, 50, "F", None, "/x")
    assert expected_outcomes(base) == {"chest-xray": "ok"}
    assert expected_outcomes(dataclasses.replace(base, defect="series_incomplete")) == {
        "chest-xray": "technical_defect:series_incomplete"}
    assert expected_outcomes(dataclasses.replace(base, service="none")) == {
        "none": "not_applicable"}


def test_registry() -> None:
    assert "chest-xray" in AVAILABLE
    assert phantom_module("chest-xray").FINDINGS == ("lung_nodule",)
    with pytest.raises(PhantomModuleMissing, match=r"services\.synth\.phantoms\.no_such_service"):
        phantom_module("no-such-service")


# ------------------------------------------------------------------------- files on disk


def test_series_writer_matches_pydicom_and_is_contiguous(tmp_path: Path) -> None:
    from datetime import UTC, datetime
    rng = np.random.default_rng(0)
    pixels = rng.integers(-1000, 1000, size=(5, 16, 12)).astype(np.int16)
    ph = Phantom(pixels=pixels, modality="CT", body_part="CHEST", series_description="AX",
                 pixel_spacing=(0.7, 0.8), slice_spacing=2.5, window=(40.0, 400.0))
    header = SeriesHeader(study_uid="1.2.3", series_uid="1.2.3.4", patient_name="SYNTH^A",
                          patient_id="SYNTH-A", birth_date="19700101", accession="ACC1",
                          institution="Synthetic", station="H001-CT01",
                          acquired_at=datetime(2024, 3, 4, 9, 30, tzinfo=UTC), sex="F",
                          age_years=54)
    paths = write_series(tmp_path, "H001", ph, header)
    assert [p.name for p in paths] == [f"{i}.dcm" for i in range(1, 6)]
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        # Our per-slice encoding is byte-identical to pydicom writing the same dataset.
        ds.save_as(tmp_path / "again.dcm", enforce_file_format=True)
        assert (tmp_path / "again.dcm").read_bytes() == path.read_bytes()
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.InstanceNumber == i + 1 and float(ds.ImagePositionPatient[2]) == 2.5 * i
        assert (ds.PixelRepresentation, ds.BitsAllocated, ds.PatientAge) == (1, 16, "054Y")
        assert ds.StationName == "H001-CT01" and float(ds.SpacingBetweenSlices) == 2.5
        np.testing.assert_array_equal(ds.pixel_array, pixels[i])


@pytest.fixture(scope="module")
def normal_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CityTruth]]:
    """One defect-free study of every available service."""
    root = tmp_path_factory.mktemp("normal")
    truths = []
    for i, sid in enumerate(AVAILABLE):
        truths += generate_city(root / sid, 1, seed=100 + i, services=[sid], defect_rate=0.0,
                                not_applicable_rate=0.0)
    return root, truths


def test_normal_studies_route_to_their_service_with_contiguous_series(
        normal_city: tuple[Path, list[CityTruth]]) -> None:
    root, truths = normal_city
    groups = _studies(root)
    specs = catalog()
    out_of_limits: list[str] = []
    for t in truths:
        spec = service(t.service)
        assert [s.id for s in route(_announce(groups[t.study_uid], t), specs)] == [t.service]
        files = sorted(Path(t.series_dir).iterdir(), key=lambda p: int(p.stem))
        assert [int(p.stem) for p in files] == list(range(1, len(files) + 1))
        assert len(files) == t.instance_count
        assert spec.checks.min_slices <= len(files) <= spec.checks.max_slices
        zs = [_z(p) for p in files]
        if len(zs) > 1:
            assert np.allclose(np.diff(zs), zs[1] - zs[0], atol=1e-3) and zs[1] > zs[0]
        image = read_image(files[len(files) // 2])
        lo, hi = spec.checks.pixel_spacing_mm
        assert image.geometry.pixel_spacing is not None
        if not lo <= image.geometry.pixel_spacing[0] <= hi:
            # A normal study must pass the worker's defect checks (else it ends as a defect).
            out_of_limits.append(f"{t.service}: pixel spacing {image.geometry.pixel_spacing[0]}"
                                 f" outside the catalog's [{lo}, {hi}]")
        assert set(t.labels) == {f.code for f in spec.findings}
        assert expected_outcomes(t) == {t.service: "ok"}
    assert not out_of_limits, out_of_limits
    assert any(t.instance_count == 1 for t in truths)
    if MULTI_SLICE:
        assert any(t.instance_count > 1 for t in truths)


def test_deterministic(tmp_path: Path) -> None:
    a = generate_city(tmp_path / "a", 6, seed=5, services=["chest-xray"], defect_rate=0.3,
                      not_applicable_rate=0.3)
    b = generate_city(tmp_path / "b", 4, seed=5, services=["chest-xray"], defect_rate=0.3,
                      not_applicable_rate=0.3)
    for x, y in zip(a, b, strict=False):
        assert dataclasses.replace(x, series_dir="") == dataclasses.replace(y, series_dir="")
        fx = sorted(Path(x.series_dir).iterdir())
        fy = sorted(Path(y.series_dir).iterdir())
        assert [f.read_bytes() for f in fx] == [f.read_bytes() for f in fy]
    assert load_city_truth(tmp_path / "a") == a
    plans = plan_city(6, seed=5, services=["chest-xray"], defect_rate=0.3,
                      not_applicable_rate=0.3)
    assert [(p.service, p.device.id, p.priority, p.defect) for p in plans] == [
        (t.service, t.device_id, t.priority, t.defect) for t in a]


def test_not_applicable_studies_match_no_service(tmp_path: Path) -> None:
    truths = generate_city(tmp_path, 16, seed=8, not_applicable_rate=1.0)
    groups = _studies(tmp_path)
    assert len({t.body_part for t in truths}) >= 3
    for t in truths:
        assert t.service == "none" and expected_outcomes(t) == {"none": "not_applicable"}
        assert route(_announce(groups[t.study_uid], t), catalog()) == []


def _check_defect(t: CityTruth, groups: dict[str, StudyGroup]) -> None:
    spec = service(t.service)
    files = sorted(Path(t.series_dir).iterdir(), key=lambda p: int(p.stem))
    event = _announce(groups[t.study_uid], t)
    assert [s.id for s in route(event, catalog())] == [t.service]
    assert expected_outcomes(t) == {t.service: f"technical_defect:{t.defect}"}
    if t.defect == Reason.PIXELS_UNREADABLE:
        for f in files:
            ds = pydicom.dcmread(f)  # the file parses ...
            assert len(ds.PixelData) < ds.Rows * ds.Columns * 2
            with pytest.raises(InputRejected) as err:  # ... but its pixels do not decode
                read_image(f)
            assert err.value.reason == Reason.PIXELS_UNREADABLE
    elif t.defect == Reason.GEOMETRY_IMPLAUSIBLE:
        geometry = read_image(files[0]).geometry
        if t.defect_detail["variant"] == "pixel_spacing":
            assert geometry.pixel_spacing is not None
            assert geometry.pixel_spacing[0] in IMPLAUSIBLE_SPACING_MM
            lo, hi = spec.checks.pixel_spacing_mm
            assert not lo <= geometry.pixel_spacing[0] <= hi
        else:
            assert len(files) > 1 and {_z(f) for f in files} == {0.0}
    elif t.defect == Reason.CONTRAST_INVERTED:
        image = read_image(files[len(files) // 2])
        px = image.pixels.astype(np.float64)
        ring = max(2, px.shape[0] // 16)
        border = np.concatenate([px[:ring].ravel(), px[-ring:].ravel()])
        centre = px[px.shape[0] // 3: 2 * px.shape[0] // 3, px.shape[1] // 3: 2 * px.shape[1] // 3]
        assert image.photometric == "MONOCHROME2" and border.mean() > centre.mean()
    elif t.defect == Reason.BODY_PART_MISMATCH:
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert header.BodyPartExamined not in spec.body_parts
        assert t.body_part_override in spec.body_parts
        # Without the RIS's override the announcement would not reach this service.
        assert t.service not in [s.id for s in route(_announce(groups[t.study_uid], t,
                                                                override=False), catalog())]
    elif t.defect == Reason.SERIES_INCOMPLETE:
        numbers = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber)
                   for f in files]
        zs = [_z(f) for f in files]
        gap = numbers != list(range(1, len(numbers) + 1)) and len(set(np.round(np.diff(zs), 3))) > 1
        assert gap or len(files) < spec.checks.min_slices
    else:
        raise AssertionError(f"unexpected defect {t.defect}")


def test_two_d_defects_are_really_defective(tmp_path: Path) -> None:
    truths = generate_city(tmp_path, 16, seed=31, services=["chest-xray"], defect_rate=1.0,
                           not_applicable_rate=0.0)
    kinds = {t.defect for t in truths}
    assert kinds == {Reason.BODY_PART_MISMATCH, Reason.PIXELS_UNREADABLE,
                     Reason.GEOMETRY_IMPLAUSIBLE, Reason.CONTRAST_INVERTED}
    groups = _studies(tmp_path)
    for t in truths:
        assert t.instance_count == 1
        _check_defect(t, groups)


@pytest.mark.skipif(not MULTI_SLICE, reason="no multi-slice phantom module exists yet")
def test_multi_slice_defects_are_really_defective(tmp_path: Path) -> None:
    sid = MULTI_SLICE[0]
    truths = generate_city(tmp_path, 14, seed=41, services=[sid], defect_rate=1.0,
                           not_applicable_rate=0.0)
    assert Reason.SERIES_INCOMPLETE in {t.defect for t in truths}
    groups = _studies(tmp_path)
    for t in truths:
        _check_defect(t, groups)
