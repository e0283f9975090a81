"""The simulated city's chest X-ray studies: deterministic, truthful ground truth, valid DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pydicom
import pytest

from services.synth.city import (
    CITY_TRUTH_FILE,
    CityModel,
    CityTruth,
    generate_service_studies,
    load_city_truth,
)
from services.synth.phantoms.chest_xray import SIZE, render_chest_xray

#: A three-hospital city of DX rooms, so every study's hospital is one of three.
SMALL_CITY = CityModel(hospitals=3, devices=6, device_mix=(("DX", 1.0),))


def _chest(out: Path, n: int, seed: int, rate: float = 0.5) -> list[CityTruth]:
    return generate_service_studies(out, n, seed=seed, model=SMALL_CITY,
                                    prevalence={"lung_nodule": rate})


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CityTruth]]:
    out = tmp_path_factory.mktemp("city")
    return out, _chest(out, 40, seed=11)


def test_deterministic_for_a_seed(tmp_path: Path, studies: tuple[Path, list[CityTruth]]) -> None:
    _, truths = studies
    again = _chest(tmp_path, 5, seed=11)
    for a, b in zip(truths[:5], again, strict=True):
        assert (a.study_uid, a.labels, a.planted, a.device_id) == (
            b.study_uid, b.labels, b.planted, b.device_id,
        )
        assert a.files[0].read_bytes() == b.files[0].read_bytes()
    other = _chest(tmp_path / "other", 5, seed=12)
    assert {t.study_uid for t in other}.isdisjoint(t.study_uid for t in truths)


def test_phantom_is_12bit_and_seeded() -> None:
    a, _ = render_chest_xray(np.random.default_rng(1), lesion=False, size=128)
    b, _ = render_chest_xray(np.random.default_rng(1), lesion=False, size=128)
    assert a.dtype == np.uint16 and a.max() <= 4095 and a.std() > 100
    np.testing.assert_array_equal(a, b)
    _, truth = render_chest_xray(np.random.default_rng(2), lesion=True, size=128)
    assert truth is not None and 0 <= truth.center_x < 128 and truth.radius_px > 0


def test_ground_truth_file(studies: tuple[Path, list[CityTruth]]) -> None:
    out, truths = studies
    lines = (out / CITY_TRUTH_FILE).read_bytes().splitlines()
    assert len(lines) == len(truths)
    first = orjson.loads(lines[0])
    assert {"study_uid", "hospital_id", "device_id", "labels", "series_dir",
            "planted"} <= set(first)
    assert load_city_truth(out) == truths
    for t in truths:
        assert (t.service, t.defect, set(t.labels)) == ("chest-xray", None, {"lung_nodule"})
        assert ("lung_nodule" in t.planted) == t.labels["lung_nodule"]
        assert t.device_id.startswith(t.hospital_id + "-DX")
        assert t.hospital_id in {"H001", "H002", "H003"}
        (path,) = t.files
        assert path.is_file() and path.name == "1.dcm" and t.instance_count == 1
        assert path.relative_to(out).parts[:3] == (t.hospital_id, t.study_uid, t.series_uid)


def test_prevalence_roughly_respected(tmp_path: Path) -> None:
    # The phantom module's own prevalence (0.3) unless the caller names the finding's rate.
    own = generate_service_studies(tmp_path / "own", 100, seed=5, model=SMALL_CITY)
    assert 15 <= sum(t.labels["lung_nodule"] for t in own) <= 45
    assert {t.labels["lung_nodule"] for t in _chest(tmp_path / "all", 20, seed=5, rate=1.0)} \
        == {True}
    assert {t.labels["lung_nodule"] for t in _chest(tmp_path / "none", 20, seed=5, rate=0.0)} \
        == {False}
    # A finding the simulated services do not have is refused rather than ignored.
    with pytest.raises(ValueError, match="not a finding"):
        generate_service_studies(tmp_path / "x", 1, seed=5, prevalence={"hemorrhage": 0.5})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        generate_service_studies(tmp_path / "y", 1, seed=5, prevalence={"lung_nodule": 1.5})


def test_dicom_headers(studies: tuple[Path, list[CityTruth]]) -> None:
    _, truths = studies
    t = truths[3]
    ds = pydicom.dcmread(t.files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.StudyInstanceUID == t.study_uid and ds.SeriesInstanceUID == t.series_uid
    assert (ds.Modality, ds.BodyPartExamined) == ("DX", "CHEST")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.StationName == ds.DeviceSerialNumber == t.device_id
    assert str(ds.PatientName) == "SYNTH^CITIZEN00003" and ds.PatientID == t.patient_id
    assert len(ds.PixelSpacing) == 2 and float(ds.WindowWidth) > 0
    assert ds.StudyDate and ds.StudyTime and ds.SeriesNumber == 1 and ds.InstanceNumber == 1
    assert ds.pixel_array.shape == (SIZE, SIZE) and int(ds.pixel_array.max()) <= 4095


def test_radstream_synth_writes_city_studies(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli import main

    out = tmp_path / "synth"
    assert main(["synth", str(out), "-n", "6", "--seed", "3", "--service", "chest-xray",
                 "--defect-rate", "0", "--not-applicable-rate", "0",
                 "--prevalence", "lung_nodule=1.0"]) == 0
    truths = load_city_truth(out)
    assert [t.labels for t in truths] == [{"lung_nodule": True}] * 6
    assert all(t.files for t in truths)
    # Bad option values are refused with the reason, not a traceback.
    assert main(["synth", str(tmp_path / "x"), "-n", "1", "--fault", "H001-D01=blur"]) == 2
    assert main(["synth", str(tmp_path / "y"), "-n", "1", "--prevalence", "lung_nodule"]) == 2
    err = capsys.readouterr().err
    assert "devices the city does not have: ['H001-D01']" in err
    assert "expected CODE=RATE" in err


def test_device_faults_reach_multi_slice_series(tmp_path: Path) -> None:
    """A faulty CT keeps its stored values (wrong window) or its dtype (blur); the window is
    written in rescaled units, so it lands inside the series' own HU range."""
    ct = CityModel(hospitals=1, devices=2, device_mix=(("CT", 1.0),))
    clean = generate_service_studies(tmp_path / "clean", 1, seed=2, service="chest-ct", model=ct)
    device = clean[0].device_id
    wrong = generate_service_studies(tmp_path / "wrong", 1, seed=2, service="chest-ct", model=ct,
                                     device_faults={device: "wrong_window"})
    blur = generate_service_studies(tmp_path / "blur", 1, seed=2, service="chest-ct", model=ct,
                                    device_faults={device: "blur"})
    a, w, b = (pydicom.dcmread(t[0].files[len(t[0].files) // 2]) for t in (clean, wrong, blur))
    np.testing.assert_array_equal(a.pixel_array, w.pixel_array)
    hu = a.pixel_array * float(a.RescaleSlope) + float(a.RescaleIntercept)
    assert float(w.WindowCenter) != float(a.WindowCenter)
    assert hu.min() < float(w.WindowCenter) < hu.max()
    assert b.pixel_array.dtype == a.pixel_array.dtype
    assert b.pixel_array.std() < a.pixel_array.std()
    assert (clean[0].labels, clean[0].planted) == (blur[0].labels, blur[0].planted)
