"""The synthetic city's studies: deterministic, truthful ground truth, valid DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pydicom
import pytest

from services.synth.cxr_phantom import render_chest_xray
from services.synth.generate import StudyTruth, generate_studies, load_ground_truth


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudyTruth]]:
    out = tmp_path_factory.mktemp("city")
    return out, generate_studies(out, 40, seed=11, lesion_rate=0.5, hospitals=3)


def test_deterministic_for_a_seed(tmp_path: Path, studies: tuple[Path, list[StudyTruth]]) -> None:
    _, truths = studies
    again = generate_studies(tmp_path, 5, seed=11, lesion_rate=0.5, hospitals=3)
    for a, b in zip(truths[:5], again, strict=True):
        assert (a.study_uid, a.lesion, a.lesion_truth, a.device_id) == (
            b.study_uid, b.lesion, b.lesion_truth, b.device_id,
        )
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    other = generate_studies(tmp_path / "other", 5, seed=12, lesion_rate=0.5, hospitals=3)
    assert {t.study_uid for t in other}.isdisjoint(t.study_uid for t in truths)


def test_phantom_is_12bit_and_seeded() -> None:
    a, _ = render_chest_xray(np.random.default_rng(1), lesion=False, size=128)
    b, _ = render_chest_xray(np.random.default_rng(1), lesion=False, size=128)
    assert a.dtype == np.uint16 and a.max() <= 4095 and a.std() > 100
    np.testing.assert_array_equal(a, b)
    _, truth = render_chest_xray(np.random.default_rng(2), lesion=True, size=128)
    assert truth is not None and 0 <= truth.center_x < 128 and truth.radius_px > 0


def test_ground_truth_file(studies: tuple[Path, list[StudyTruth]]) -> None:
    out, truths = studies
    lines = (out / "ground_truth.jsonl").read_bytes().splitlines()
    assert len(lines) == len(truths)
    first = orjson.loads(lines[0])
    assert {"study_uid", "hospital_id", "device_id", "lesion", "path", "lesion_truth"} <= set(first)
    assert load_ground_truth(out) == truths
    for t in truths:
        assert (t.lesion_truth is not None) == t.lesion
        assert t.device_id.startswith(t.hospital_id + "-D")
        assert t.hospital_id in {"H001", "H002", "H003"}
        path = Path(t.path)
        assert path.is_file() and path.name == "1.dcm"
        assert path.relative_to(out).parts[:3] == (t.hospital_id, t.study_uid, t.series_uid)


def test_lesion_rate_roughly_respected(tmp_path: Path) -> None:
    truths = generate_studies(tmp_path, 100, seed=5, lesion_rate=0.3)
    assert 15 <= sum(t.lesion for t in truths) <= 45


def test_dicom_headers(studies: tuple[Path, list[StudyTruth]]) -> None:
    _, truths = studies
    t = truths[3]
    ds = pydicom.dcmread(t.path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.StudyInstanceUID == t.study_uid and ds.SeriesInstanceUID == t.series_uid
    assert (ds.Modality, ds.BodyPartExamined) == ("DX", "CHEST")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.StationName == ds.DeviceSerialNumber == t.device_id
    assert str(ds.PatientName) == "SYNTH^PATIENT0003"
    assert len(ds.PixelSpacing) == 2 and float(ds.WindowWidth) > 0
    assert ds.StudyDate and ds.StudyTime and ds.SeriesNumber == 1 and ds.InstanceNumber == 1
    assert ds.pixel_array.shape == (512, 512) and int(ds.pixel_array.max()) <= 4095
