"""StudyAnnounced bodies built from real DICOM files: valid against the contract, free of PHI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from services.publisher.announce import build_announcement, sanitize_id
from services.publisher.cli import build_announcements, register
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import ScanStats, group_instances, read_header, scan_tree
from streams.contract.schemas import EventKind, validate

KEY = b"unit-test-key-0123456789abcdef"
PUBLISHED = "2024-05-14T09:30:02.518000Z"
#: Synthetic PHI written into every test file; none of it may reach the event.
PHI = {"name": "SYNTH^PATIENT0042", "id": "PID-778899", "birth": "19790301",
       "accession": "ACC-555123"}


def write_instance(root: Path, *, study_uid: str, series_uid: str, sop_uid: str,
                   number: int = 1, hospital: str = "H001", station: str = "H001-D01",
                   modality: str = "DX", body_part: str = "CHEST", age: str = "045Y",
                   acquired: str = "20240514092841") -> Path:
    """A small but complete DX instance with synthetic PHI, at <hospital>/<study>/<series>/."""
    path = root / hospital / study_uid / series_uid / f"{number}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = number
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.PatientName = PHI["name"]
    ds.PatientID = PHI["id"]
    ds.PatientBirthDate = PHI["birth"]
    ds.PatientSex = "F"
    ds.PatientAge = age
    ds.AccessionNumber = PHI["accession"]
    ds.InstitutionName = hospital
    ds.StationName = station
    ds.StudyDescription = "CHEST PA"
    ds.SeriesDescription = "PA"
    ds.StudyDate = acquired[:8]
    ds.StudyTime = acquired[8:]
    ds.AcquisitionDateTime = acquired
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.zeros((8, 8), dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    for number in (2, 1):
        write_instance(tmp_path, study_uid="1.2.3", series_uid="1.2.3.1",
                       sop_uid=f"1.2.3.1.{number}", number=number)
    write_instance(tmp_path, study_uid="1.2.3", series_uid="1.2.3.2", sop_uid="1.2.3.2.1")
    (tmp_path / "H001" / "README.txt").write_text("not DICOM")
    return tmp_path


def announce(root: Path, **kwargs: object) -> dict[str, object]:
    [study] = group_instances(scan_tree(root))
    return build_announcement(study, hospital_id="H001", pseudonymizer=Pseudonymizer(KEY),
                              published_at=PUBLISHED, **kwargs)  # type: ignore[arg-type]


def test_event_is_valid_against_the_contract(study_dir: Path) -> None:
    event = announce(study_dir)
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert event["study_uid"] == "1.2.3"
    assert event["device_id"] == "H001-D01"
    assert (event["modality"], event["body_part"]) == ("DX", "CHEST")
    assert event["acquired_at"] == "2024-05-14T09:28:41.000000Z"
    assert event["published_at"] == PUBLISHED
    assert event["patient_age_years"] == 45
    assert event["patient_sex"] == "F"
    assert event["schema_version"] == "1"


def test_series_point_at_their_first_instance(study_dir: Path) -> None:
    series = announce(study_dir)["series"]
    assert isinstance(series, list)
    assert [(s["series_uid"], s["instance_count"]) for s in series] == [
        ("1.2.3.1", 2), ("1.2.3.2", 1)]
    first = study_dir / "H001" / "1.2.3" / "1.2.3.1" / "1.dcm"
    assert series[0]["uri"] == first.as_uri()
    assert series[0]["uri"].startswith("file:///")


def test_no_phi_anywhere_in_the_event(study_dir: Path) -> None:
    body = orjson.dumps(announce(study_dir)).decode()
    for value in (*PHI.values(), "SYNTH", "PATIENT0042", "778899", "555123", "1979"):
        assert value not in body


def test_patient_ref_is_the_keyed_pseudonym(study_dir: Path) -> None:
    event = announce(study_dir)
    assert event["patient_ref"] == Pseudonymizer(KEY).patient_ref(PHI["id"])
    assert event["accession_ref"] == Pseudonymizer(KEY).accession_ref(PHI["accession"], "H001")


def test_device_id_can_be_given_and_is_sanitized(study_dir: Path) -> None:
    assert announce(study_dir, device_id="CT room 2/east")["device_id"] == "CT-room-2-east"
    assert sanitize_id("§§§") == "unknown"


def test_unknown_priority_is_refused(study_dir: Path) -> None:
    with pytest.raises(ValueError, match="priority"):
        announce(study_dir, priority="asap")


def test_missing_dates_fall_back_to_publication_time(tmp_path: Path) -> None:
    path = write_instance(tmp_path, study_uid="1.5", series_uid="1.5.1", sop_uid="1.5.1.1",
                          acquired="")
    header = read_header(path)
    assert header is not None and header.acquired_at is None
    assert announce(tmp_path)["acquired_at"] == PUBLISHED


def test_odd_modality_and_body_part_still_validate(tmp_path: Path) -> None:
    write_instance(tmp_path, study_uid="1.6", series_uid="1.6.1", sop_uid="1.6.1.1",
                   modality="SR", body_part="", age="", station="")
    event = announce(tmp_path)
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert (event["modality"], event["body_part"], event["device_id"]) == (
        "OT", "UNKNOWN", "unknown")
    assert event["patient_age_years"] == 45  # from the birth date and the acquisition date


def test_scan_skips_and_counts_non_dicom_files(study_dir: Path) -> None:
    stats = ScanStats()
    headers = list(scan_tree(study_dir, stats))
    assert (len(headers), stats.files, stats.dicom, stats.skipped) == (3, 4, 3, 1)
    assert read_header(study_dir / "H001" / "README.txt") is None


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="radstream")
    register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def test_cli_dry_run_prints_valid_events_and_a_summary(
        study_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    args = _cli("publish", str(study_dir), "--dry-run", "--hospital-id", "gkb-67")
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    [event] = [orjson.loads(line) for line in out.splitlines()]
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert event["hospital_id"] == "gkb-67"
    assert ("would publish 1 studies (2 series, 3 instances) from 4 files; "
            "1 non-DICOM files skipped") in err


def test_cli_without_key_fails_with_one_clear_line(
        study_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RADSTREAM_PSEUDONYM_KEY", raising=False)
    args = _cli("publish", str(study_dir), "--dry-run")
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: RADSTREAM_PSEUDONYM_KEY is not set") and err.count("\n") == 1


def test_cli_refuses_a_path_outside_the_root(
        study_dir: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    other_root = tmp_path_factory.mktemp("elsewhere")
    args = _cli("publish", str(study_dir), "--root", str(other_root), "--dry-run")
    assert args.func(args) == 1
    assert "is not under the DICOM root" in capsys.readouterr().err


def test_a_symlink_leaving_the_root_rejects_its_study(
        study_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    target = write_instance(outside, study_uid="1.7", series_uid="1.7.1", sop_uid="1.7.1.1")
    (study_dir / "H001" / "link.dcm").symlink_to(target)
    lines: list[str] = []
    found = build_announcements(study_dir, root=study_dir, hospital_id=None,
                                priority="routine", key=KEY, log=lines.append)
    assert [e["study_uid"] for e in found.events] == ["1.2.3"]
    assert found.events[0]["hospital_id"] == "H001"  # from InstitutionName
    assert found.rejected == 1 and "1.7" in lines[0] and "outside the DICOM root" in lines[0]
