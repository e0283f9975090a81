"""StudyAnnounced bodies built from real DICOM files: valid against the contract, free of PHI,
with keyed UIDs, configured hospital and device ids, and URIs of staged copies."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from services.publisher.announce import build_announcement, sanitize_id
from services.publisher.cli import build_announcements, register
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import (
    ScanStats,
    group_instances,
    header_from_dataset,
    read_dataset_header,
    read_header,
    scan_tree,
)
from services.publisher.stage import stage_announcement
from streams.contract.cloudevents import parse_rfc3339
from streams.contract.schemas import EventKind, validate

KEY = b"unit-test-key-0123456789abcdef"
PUBLISHED = "2024-05-14T09:30:02.518000Z"
#: Synthetic PHI written into every test file; none of it may reach the event.
PHI = {"name": "SYNTH^PATIENT0042", "id": "PID-778899", "birth": "19790301",
       "accession": "ACC-555123"}


def write_instance(root: Path, *, study_uid: str, series_uid: str, sop_uid: str,
                   number: int = 1, hospital: str = "H001", station: str = "H001-D01",
                   modality: str = "DX", body_part: str = "CHEST", age: str = "045Y",
                   acquired: str = "20240514092841", folder: Path | None = None,
                   name: str | None = None, **tags: Any) -> Path:
    """A small but complete DX instance with synthetic PHI, at <hospital>/<study>/<series>/
    (or ``folder``/``name``); ``tags`` set further header values."""
    path = (folder or root / hospital / study_uid / series_uid) / (name or f"{number}.dcm")
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
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
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


@pytest.fixture
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dicom-root")


def announce(source: Path, root: Path, hospital_id: str = "H001",
             **kwargs: Any) -> dict[str, Any]:
    [study] = group_instances(scan_tree(source))
    return build_announcement(study, hospital_id=hospital_id, pseudonymizer=Pseudonymizer(KEY),
                              root=root, published_at=PUBLISHED, **kwargs)


def test_event_is_valid_against_the_contract(study_dir: Path, root: Path) -> None:
    event = announce(study_dir, root)
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert event["study_uid"] == Pseudonymizer(KEY).uid("1.2.3", hospital_id="H001")
    assert (event["modality"], event["body_part"]) == ("DX", "CHEST")
    assert event["acquired_at"] == "2024-05-14T09:28:41.000000Z"
    assert event["published_at"] == PUBLISHED
    assert event["patient_age_years"] == 45
    assert event["patient_sex"] == "F"
    assert event["schema_version"] == "1"
    assert (event["study_description"], event["series"][0]["description"]) == ("CHEST PA", "PA")


def test_uids_on_the_bus_are_keyed_valid_and_stable(study_dir: Path, root: Path) -> None:
    event = announce(study_dir, root)
    uids = [event["study_uid"], *(s["series_uid"] for s in event["series"])]
    for uid in uids:
        assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
        assert not uid.startswith("1.2.3")
    assert len(set(uids)) == 3
    # Redelivery: the same study announced again carries the same UIDs (dedup still works).
    again = announce(study_dir, root)
    assert [again["study_uid"], *(s["series_uid"] for s in again["series"])] == uids
    # Another hospital (or another key) gets other UIDs for the same DICOM UIDs.
    assert announce(study_dir, root, hospital_id="H002")["study_uid"] != event["study_uid"]


def test_series_uris_name_the_staged_first_instance(study_dir: Path, root: Path) -> None:
    [study] = group_instances(scan_tree(study_dir))
    event = announce(study_dir, root)
    stage_announcement(root, study, event)
    series = event["series"]
    assert [s["instance_count"] for s in series] == [2, 1]
    for item, group in zip(series, study.series, strict=True):
        assert item["uri"] == (root / "H001" / event["study_uid"] / item["series_uid"]
                               / "00001.dcm").as_uri()
        staged = Path(item["uri"].removeprefix("file://"))
        # The first instance (lowest InstanceNumber) is the one the URI names, linked not copied.
        assert os.path.samefile(staged, group.first.path)
        assert sorted(p.name for p in staged.parent.iterdir()) == [
            f"{i:05d}.dcm" for i in range(1, len(group.instances) + 1)]


def test_no_phi_anywhere_in_the_event(study_dir: Path, root: Path) -> None:
    body = orjson.dumps(announce(study_dir, root)).decode()
    for value in (*PHI.values(), "SYNTH", "PATIENT0042", "778899", "555123", "1979",
                  str(study_dir)):
        assert value not in body


def test_patient_ref_is_the_hospital_scoped_keyed_pseudonym(study_dir: Path, root: Path) -> None:
    p = Pseudonymizer(KEY)
    event = announce(study_dir, root)
    assert event["patient_ref"] == p.patient_ref(PHI["id"], hospital_id="H001")
    assert event["accession_ref"] == p.accession_ref(PHI["accession"], "H001")
    # One key across two hospitals links nobody: the same PatientID gets two refs.
    assert announce(study_dir, root, hospital_id="H002")["patient_ref"] != event["patient_ref"]


@pytest.mark.parametrize("placeholder", ["", "UNKNOWN", "unknown", "ANONYMOUS", "0", "000000",
                                         "N/A", "n.a.", "NONE", "  ", "-", "?"])
def test_placeholder_patient_ids_link_no_studies(tmp_path: Path, root: Path,
                                                 placeholder: str) -> None:
    for study in ("1.8.1", "1.8.2"):
        write_instance(tmp_path, study_uid=study, series_uid=f"{study}.1",
                       sop_uid=f"{study}.1.1", PatientID=placeholder, AccessionNumber=placeholder)
    studies = group_instances(scan_tree(tmp_path))
    events = [build_announcement(s, hospital_id="H001", pseudonymizer=Pseudonymizer(KEY),
                                 root=root, published_at=PUBLISHED) for s in studies]
    for event in events:
        validate(EventKind.STUDY_ANNOUNCED, event)
        assert "accession_ref" not in event
    # Each study gets a ref of its own: two UNKNOWN patients are not one patient.
    assert events[0]["patient_ref"] != events[1]["patient_ref"]
    for hospital in ("H001", "H002"):
        assert events[0]["patient_ref"] != Pseudonymizer(KEY).patient_ref(
            placeholder, hospital_id=hospital)


def test_device_id_is_configured_or_keyed_never_the_station_name(study_dir: Path,
                                                                root: Path) -> None:
    assert announce(study_dir, root, device_id="CT room 2/east")["device_id"] == "CT-room-2-east"
    assert announce(study_dir, root, devices={"H001-D01": "dx-h001-02"})["device_id"] == (
        "dx-h001-02")
    keyed = announce(study_dir, root)["device_id"]
    assert re.fullmatch(r"dev-[0-9a-f]{20}", keyed)
    assert keyed == announce(study_dir, root)["device_id"]
    assert keyed != announce(study_dir, root, hospital_id="H002")["device_id"]
    assert sanitize_id("§§§") == "unknown"


def test_unknown_priority_and_malformed_hospital_id_are_refused(study_dir: Path,
                                                              root: Path) -> None:
    with pytest.raises(ValueError, match="priority"):
        announce(study_dir, root, priority="asap")
    for bad in ("", "City Hospital #1", "../H002", "x" * 33):
        with pytest.raises(ValueError, match="hospital id"):
            announce(study_dir, root, hospital_id=bad)


def test_missing_dates_fall_back_to_publication_time(tmp_path: Path, root: Path) -> None:
    path = write_instance(tmp_path, study_uid="1.5", series_uid="1.5.1", sop_uid="1.5.1.1",
                          acquired="")
    assert read_header(path).acquired_at is None
    assert announce(tmp_path, root)["acquired_at"] == PUBLISHED


def test_odd_modality_and_body_part_still_validate(tmp_path: Path, root: Path) -> None:
    write_instance(tmp_path, study_uid="1.6", series_uid="1.6.1", sop_uid="1.6.1.1",
                   modality="SR", body_part="", age="", station="")
    event = announce(tmp_path, root)
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert (event["modality"], event["body_part"]) == ("OT", "UNKNOWN")
    assert event["patient_age_years"] == 45  # from the birth date and the acquisition date


def test_scan_skips_and_counts_non_dicom_files(study_dir: Path) -> None:
    stats = ScanStats()
    headers = list(scan_tree(study_dir, stats))
    assert (len(headers), stats.files, stats.dicom, stats.skipped) == (3, 4, 3, 1)
    assert stats.reasons == {"not_dicom": 1} and stats.bad == 0


# ------------------------------------------------------------ planted PHI in every tag read

#: Planted identifiers: a name, an MRN, a birth date in two spellings.
CANARIES = ("ZELDA", "SMITH", "778899", "19610312", "1961-03-12", "12.03.1961")
#: A value carrying every canary, for free-text tags.
TEXT = "ZELDA^SMITH MRN778899 19610312"
#: One planted value per header tag the publisher reads. A tag the publisher starts reading
#: must be added here (test_every_tag_the_publisher_reads_is_planted fails until it is).
PLANTED: dict[str, Any] = {
    "StudyInstanceUID": "1.2.840.19610312.778899.1",
    "SeriesInstanceUID": "1.2.840.19610312.778899.1.1",
    "SOPInstanceUID": "1.2.840.19610312.778899.1.1.1",
    "InstanceNumber": "778899",
    "Modality": "ZELDA 778899",
    "BodyPartExamined": "ZELDA 19610312",
    "PatientID": "MRN778899",
    "IssuerOfPatientID": TEXT,
    "AccessionNumber": "ZELDA778899",
    "StudyDescription": "Chest PA " + TEXT,
    "SeriesDescription": "SAG T2 " + TEXT + " 1961-03-12",
    "PatientSex": "ZELDA",
    "PatientAge": "101Y",
    "PatientBirthDate": "19610312",
    "TimezoneOffsetFromUTC": "ZELDA",
    "AcquisitionDateTime": "ZELDA 19610312",
    "AcquisitionDate": "ZELDA778899",
    "AcquisitionTime": "ZELDA",
    "ContentDate": "SMITH",
    "ContentTime": "778899.ZELDA",
    "SeriesDate": "12.03.1961",
    "SeriesTime": "ZELDA",
    "StudyDate": "1961-03-12",
    "StudyTime": "SMITH",
    "StationName": "ZELDA ROOM 778899",
    "DeviceSerialNumber": "SN778899",
    "Manufacturer": TEXT,
    "ManufacturerModelName": TEXT,
    "InstitutionName": TEXT,
}


class ReadRecorder(Dataset):
    """A dataset that notes the keyword of every element looked up in it."""

    def __init__(self, source: Dataset) -> None:
        super().__init__(source)
        object.__setattr__(self, "looked_up", set())

    def _note(self, key: Any) -> None:
        if isinstance(key, str) and key[:1].isupper():
            self.looked_up.add(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __getattr__(self, name: str) -> Any:
        self._note(name)
        return super().__getattr__(name)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)


def planted_tree(tmp_path: Path) -> Path:
    """One study whose every read tag carries PHI, in folders and a file named after it."""
    source = tmp_path / "ZELDA_SMITH_19610312" / "MRN778899"
    write_instance(tmp_path, study_uid=PLANTED["StudyInstanceUID"],
                   series_uid=PLANTED["SeriesInstanceUID"], sop_uid=PLANTED["SOPInstanceUID"],
                   folder=source, name="ZELDA_SMITH.dcm", age=PLANTED["PatientAge"],
                   modality=PLANTED["Modality"], body_part=PLANTED["BodyPartExamined"],
                   station=PLANTED["StationName"], acquired="",
                   **{k: v for k, v in PLANTED.items()
                      if k not in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                   "Modality", "BodyPartExamined", "StationName",
                                   "PatientAge")})
    return tmp_path


def test_every_tag_the_publisher_reads_is_planted(tmp_path: Path) -> None:
    path = next(planted_tree(tmp_path).rglob("*.dcm"))
    spy = ReadRecorder(read_dataset_header(path))
    assert header_from_dataset(spy, path) is not None
    assert {"StudyInstanceUID", "PatientID", "StationName"} <= spy.looked_up  # it records
    unplanted = spy.looked_up - set(PLANTED)
    assert not unplanted, f"the publisher reads {sorted(unplanted)}: plant PHI there too"


def test_planted_phi_in_every_tag_uid_and_folder_stays_home(tmp_path: Path, root: Path) -> None:
    source = planted_tree(tmp_path)
    found = build_announcements(source, root=root, hospital_id="H001", priority="routine",
                                key=KEY, log=lambda _line: None)
    [event] = found.events
    validate(EventKind.STUDY_ANNOUNCED, event)
    stage_announcement(root.resolve(), found.studies[0], event)
    staged = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    body = orjson.dumps(event).decode()
    for canary in CANARIES:
        assert canary.lower() not in body.lower(), f"{canary} on the bus: {body}"
        assert not [p for p in staged if canary.lower() in p.lower()], (canary, staged)
    # What survives is the closed vocabulary and the contract's own derived values.
    assert (event["modality"], event["body_part"]) == ("OT", "UNKNOWN")
    assert event["study_description"] == "CHEST PA"
    assert event["series"][0]["description"] == "SAG T2"
    assert event["patient_age_years"] == 90  # exact high ages identify people
    assert "patient_sex" not in event
    # Every date tag held text, not a date: the acquisition time falls back to publication.
    assert parse_rfc3339(event["acquired_at"]) == parse_rfc3339(event["published_at"])
    assert re.fullmatch(r"dev-[0-9a-f]{20}", event["device_id"])


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="radstream")
    register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def test_cli_dry_run_prints_valid_events_and_a_summary(
        study_dir: Path, root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    args = _cli("publish", str(study_dir), "--dry-run", "--hospital-id", "gkb-67",
                "--root", str(root))
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    [event] = [orjson.loads(line) for line in out.splitlines()]
    validate(EventKind.STUDY_ANNOUNCED, event)
    assert event["hospital_id"] == "gkb-67"
    assert ("would publish 1 studies (2 series, 3 instances) from 4 files; "
            "1 non-DICOM files skipped") in err
    assert not list(root.iterdir()), "a dry run stages nothing"


def test_cli_never_takes_the_hospital_from_institution_name(
        study_dir: Path, root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    monkeypatch.delenv("RADSTREAM_HOSPITAL_ID", raising=False)
    args = _cli("publish", str(study_dir), "--dry-run", "--root", str(root))
    assert args.func(args) == 1
    assert capsys.readouterr().err.startswith("error: no hospital id")


def test_cli_reads_hospital_root_and_devices_from_a_config_file(
        study_dir: Path, root: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    config = tmp_path_factory.mktemp("etc") / "publisher.toml"
    config.write_text(f'hospital_id = "gkb-67"\ndicom_root = "{root}"\n'
                      '[devices]\n"H001-D01" = "dx-gkb67-02"\n')
    args = _cli("publish", str(study_dir), "--dry-run", "--config", str(config))
    assert args.func(args) == 0
    [event] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (event["hospital_id"], event["device_id"]) == ("gkb-67", "dx-gkb67-02")
    assert event["series"][0]["uri"].startswith((root.resolve() / "gkb-67").as_uri() + "/")


def test_cli_without_key_fails_with_one_clear_line(
        study_dir: Path, root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RADSTREAM_PSEUDONYM_KEY", raising=False)
    args = _cli("publish", str(study_dir), "--dry-run", "--hospital-id", "H001",
                "--root", str(root))
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: RADSTREAM_PSEUDONYM_KEY is not set") and err.count("\n") == 1


def test_a_symlink_leaving_the_folder_rejects_its_study(
        study_dir: Path, root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    target = write_instance(outside, study_uid="1.7", series_uid="1.7.1", sop_uid="1.7.1.1")
    (study_dir / "H001" / "link.dcm").symlink_to(target)
    lines: list[str] = []
    found = build_announcements(study_dir, root=root, hospital_id="H001",
                                priority="routine", key=KEY, log=lines.append)
    assert list(found.study_uids) == ["1.2.3"]
    assert found.rejected == 1 and "outside the published folder" in lines[0]
    assert "1.7" not in lines[0] and str(outside) not in lines[0]
