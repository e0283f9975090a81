"""Reading an announced series from a folder as hospitals export it (streams/imaging/series.py):
other files beside the slices are skipped, only the announced series is decoded, every file is
opened under the hospital's own folder without following a link, and no detail names a file."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit

import streams.imaging.dicom_io as dicom_io
from services.synth.hostile import export_extras, phantom_dicom
from services.synth.phantoms.base import Phantom
from services.synth.series_writer import SeriesHeader, write_series
from streams.contract.catalog import service
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.preparation import ReadLimits, load_and_preprocess
from streams.imaging.series import read_series

STUDY = "1.2.826.0.1.3680043.8.498.50"
SERIES_A = "1.2.826.0.1.3680043.8.498.51"
SERIES_B = "1.2.826.0.1.3680043.8.498.52"
#: What a hospital's folder and file names may hold: none of it may reach a detail.
PHI_FOLDER = "DOE^JOHN_MRN4455667_19610312"
PHI_FILE = "DOE_JOHN_4455667.dcm"
KEYED = "2.25.123456789"


def _series(root: Path, hospital: str, series_uid: str, n: int, seed: int,
            modality: str = "CT") -> tuple[list[Path], np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 2000, (n, 24, 20)).astype(np.uint16)
    phantom = Phantom(pixels=pixels, modality=modality, body_part="CHEST",
                      series_description="AXIAL", pixel_spacing=(0.7, 0.7), slice_spacing=2.5)
    header = SeriesHeader(study_uid=STUDY, series_uid=series_uid, patient_name="DOE^JOHN",
                          patient_id="4455667", birth_date="19610312", accession="ACC9",
                          institution="Synthetic City Hospital", station="H001-D01",
                          acquired_at=datetime(2024, 3, 1, 11, 0, tzinfo=UTC))
    return write_series(root, hospital, phantom, header), pixels


def _extras(folder: Path) -> None:
    """What an export puts beside the slices."""
    export_extras(folder, STUDY)


def _beside(files: list[Path], folder: Path, prefix: str) -> None:
    for f in files:
        f.rename(folder / f"{prefix}{f.name}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def mixed(root: Path, tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    """Series A (4 CT slices), series B (3 CT slices) and every kind of extra in one folder."""
    files, pixels = _series(root, "H001", SERIES_A, 4, seed=1)
    other, _ = _series(tmp_path / "b", "H001", SERIES_B, 3, seed=2)
    _beside(other, files[0].parent, "b")
    _extras(files[0].parent)
    return files, pixels


def test_a_mixed_folder_reads_the_announced_series_only(
        root: Path, mixed: tuple[list[Path], np.ndarray]) -> None:
    files, pixels = mixed
    series = read_series(files[0].as_uri(), 4, [root], max_slices=8)
    np.testing.assert_array_equal(series.pixels, pixels)
    assert {g.series_uid for g in series.geometries} == {SERIES_A}
    assert series.skipped == {"not_dicom": 1, "not_image": 3, "other_series": 4}


def test_the_announced_series_uid_chooses_when_the_announced_file_is_not_an_image(
        root: Path, mixed: tuple[list[Path], np.ndarray]) -> None:
    files, _ = mixed
    folder = files[0].parent
    series = read_series((folder / "DICOMDIR").as_uri(), 3, [root], max_slices=8,
                         series_uid=SERIES_B, modality="CT", hospital_id="H001")
    assert series.pixels.shape == (3, 24, 20)
    assert {g.series_uid for g in series.geometries} == {SERIES_B}


def test_keyed_uids_take_the_series_of_the_announced_image(
        root: Path, mixed: tuple[list[Path], np.ndarray]) -> None:
    """The publisher announces keyed UIDs, which no header carries."""
    files, pixels = mixed
    series = read_series(files[1].as_uri(), 4, [root], max_slices=8, series_uid=KEYED,
                         modality="CT", hospital_id="H001")
    np.testing.assert_array_equal(series.pixels, pixels)


def test_keyed_uids_take_the_one_image_series_of_the_announced_modality(root: Path) -> None:
    files, pixels = _series(root, "H001", SERIES_A, 4, seed=1)
    _extras(files[0].parent)
    series = read_series((files[0].parent / "DICOMDIR").as_uri(), 4, [root], max_slices=8,
                         series_uid=KEYED, modality="CT", hospital_id="H001")
    np.testing.assert_array_equal(series.pixels, pixels)


def test_two_image_series_and_no_way_to_choose_is_series_ambiguous(
        root: Path, mixed: tuple[list[Path], np.ndarray]) -> None:
    files, _ = mixed
    with pytest.raises(InputRejected) as err:
        read_series((files[0].parent / "SR000001").as_uri(), 4, [root], max_slices=8,
                    series_uid=KEYED, modality="CT", hospital_id="H001")
    assert err.value.reason is Reason.SERIES_AMBIGUOUS


def test_a_folder_without_images_is_series_not_found(root: Path) -> None:
    folder = root / "H001" / "s"
    folder.mkdir(parents=True)
    _extras(folder)
    (folder / "SC000001").unlink()
    with pytest.raises(InputRejected) as err:
        read_series((folder / "SR000001").as_uri(), 2, [root], max_slices=8,
                    series_uid=KEYED, modality="CT", hospital_id="H001")
    assert err.value.reason is Reason.SERIES_NOT_FOUND


def test_a_broken_announced_file_keeps_its_own_reason(root: Path) -> None:
    files, _ = _series(root, "H001", SERIES_A, 3, seed=1)
    files[0].write_bytes(b"not DICOM at all" * 10)
    with pytest.raises(InputRejected) as err:
        read_series(files[0].as_uri(), 3, [root], max_slices=8, hospital_id="H001")
    assert err.value.reason is Reason.NOT_DICOM


def test_a_slice_of_the_series_that_is_cut_short_is_still_dead_lettered(root: Path) -> None:
    files, _ = _series(root, "H001", SERIES_A, 3, seed=1)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 300])
    with pytest.raises(InputRejected) as err:
        read_series(files[0].as_uri(), 3, [root], max_slices=8, hospital_id="H001")
    assert err.value.reason is Reason.DICOM_TRUNCATED


# --- Roots, hospitals and links -------------------------------------------------------------

def test_a_hospital_reads_only_its_own_folder(root: Path) -> None:
    """A study of H002 may not point at H001's files, though both lie under the root."""
    path = phantom_dicom(root / "H001" / "study" / "series" / "1.dcm")
    study = {"study_uid": "2.25.1", "hospital_id": "H002", "device_id": "H002-D01",
             "modality": "DX", "body_part": "CHEST", "priority": "routine",
             "acquired_at": "2024-03-01T11:00:00Z", "published_at": "2024-03-01T11:00:00Z",
             "patient_ref": "ab" * 16,
             "series": [{"series_uid": KEYED, "modality": "DX", "body_part": "CHEST",
                         "instance_count": 1, "uri": path.as_uri()}]}
    limits = ReadLimits((root,), 64 << 20, 128 << 20)
    with pytest.raises(InputRejected) as err:
        load_and_preprocess(service("chest-xray"), study, limits)
    assert err.value.reason is Reason.FILE_OUTSIDE_ROOT
    study["hospital_id"] = "H001"
    assert load_and_preprocess(service("chest-xray"), study, limits)[0].shape == (1, 128, 128)


def test_a_folder_swapped_for_a_link_mid_read_still_reads_inside(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the first file is checked, then the folder becomes a symlink to slices
    elsewhere. Every file must still come from the folder that was checked."""
    files, pixels = _series(root, "H001", SERIES_A, 4, seed=1)
    decoys, _ = _series(tmp_path / "outside", "H001", SERIES_A, 4, seed=9)
    folder = files[0].parent
    parse = dicom_io._parse
    swapped: list[bool] = []

    def swap_then_parse(*args: object, **kwargs: object) -> object:
        if not swapped:
            folder.rename(folder.with_name("moved"))
            folder.symlink_to(decoys[0].parent, target_is_directory=True)
            swapped.append(True)
        return parse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dicom_io, "_parse", swap_then_parse)
    try:
        series = read_series(files[0].as_uri(), 4, [root], max_slices=8)
    except InputRejected as exc:  # refusing is as good as reading inside
        assert exc.reason is Reason.FILE_OUTSIDE_ROOT
    else:
        np.testing.assert_array_equal(series.pixels, pixels)
    assert swapped


def test_a_link_among_the_slices_is_file_outside_root(root: Path, tmp_path: Path) -> None:
    files, _ = _series(root, "H001", SERIES_A, 3, seed=1)
    decoys, _ = _series(tmp_path / "outside", "H001", SERIES_A, 4, seed=9)
    (files[0].parent / "4.dcm").symlink_to(decoys[3])
    with pytest.raises(InputRejected) as err:
        read_series(files[0].as_uri(), 4, [root], max_slices=8)
    assert err.value.reason is Reason.FILE_OUTSIDE_ROOT


def test_a_linked_folder_on_the_way_is_file_outside_root(root: Path, tmp_path: Path) -> None:
    decoys, _ = _series(tmp_path / "outside", "H001", SERIES_A, 2, seed=9)
    (root / "H001").mkdir()
    (root / "H001" / "study").symlink_to(decoys[0].parent.parent, target_is_directory=True)
    uri = (root / "H001" / "study" / SERIES_A / "1.dcm").as_uri()
    with pytest.raises(InputRejected) as err:
        read_series(uri, 2, [root], max_slices=8, hospital_id="H001")
    assert err.value.reason is Reason.FILE_OUTSIDE_ROOT


def test_a_name_too_long_is_file_missing(root: Path) -> None:
    uri = (root / "H001" / ("x" * 300) / "1.dcm").as_uri()
    with pytest.raises(InputRejected) as err:
        read_series(uri, 1, [root], max_slices=1, hospital_id="H001")
    assert err.value.reason is Reason.FILE_MISSING


@pytest.mark.parametrize(("code", "reason"), [
    (errno.EACCES, Reason.FILE_UNREADABLE), (errno.EPERM, Reason.FILE_UNREADABLE),
    (errno.EIO, Reason.FILE_UNREADABLE), (errno.ENAMETOOLONG, Reason.FILE_MISSING),
    (errno.ENOENT, Reason.FILE_MISSING), (errno.ELOOP, Reason.FILE_OUTSIDE_ROOT)])
def test_os_errors_have_precise_reasons(code: int, reason: Reason) -> None:
    assert dicom_io._os_rejection(OSError(code, os.strerror(code)), "x").reason is reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_an_unreadable_folder_is_file_unreadable(root: Path) -> None:
    files, _ = _series(root, "H001", SERIES_A, 2, seed=1)
    files[0].parent.chmod(0)
    try:
        with pytest.raises(InputRejected) as err:
            read_series(files[0].as_uri(), 2, [root], max_slices=8, hospital_id="H001")
    finally:
        files[0].parent.chmod(0o755)
    assert err.value.reason is Reason.FILE_UNREADABLE


# --- Details analysts read never name the hospital's folders or files ----------------------

def _details(root: Path, folder: Path, tmp_path: Path) -> list[str]:
    from services.synth.hostile import write_hostile_files

    cases = write_hostile_files(folder, tmp_path / "outside", max_file_bytes=1 << 20)
    details = []
    for case in cases:
        named = case.path.with_name(f"{case.name}-{PHI_FILE}")
        case.path.rename(named)
        for count in (1, 3):
            try:
                read_series(named.as_uri(), count, [root], max_slices=4,
                            max_bytes=1 << 20, hospital_id="H001")
            except InputRejected as exc:
                details.append(exc.detail)
        named.rename(case.path)
    return details


def test_no_detail_names_a_folder_or_a_file(root: Path, tmp_path: Path) -> None:
    folder = root / "H001" / PHI_FOLDER
    details = _details(root, folder, tmp_path)
    assert len(details) > 20
    leaks = [d for d in details
             if any(s in d for s in ("DOE", "4455667", "19610312", str(tmp_path), ".dcm"))]
    assert not leaks
    files, _ = _series(root, "H001", SERIES_A, 2, seed=1)
    for uri in (f"file://{root}/../{PHI_FOLDER}/x.dcm", f"file://{root}/H002/{PHI_FILE}",
                f"https://pacs/{PHI_FOLDER}", (files[0].parent / PHI_FILE).as_uri()):
        with pytest.raises(InputRejected) as err:
            read_series(uri, 1, [root], max_slices=1, hospital_id="H001")
        assert "DOE" not in err.value.detail and str(root) not in err.value.detail


# --- Bounds --------------------------------------------------------------------------------

def test_the_series_pixel_budget_is_checked_before_any_pixel_is_decoded(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, pixels = _series(root, "H001", SERIES_A, 4, seed=1)
    decoded: list[int] = []
    real = dicom_io._plain_pixels

    def counted(ds: Dataset) -> np.ndarray | None:
        decoded.append(1)
        return real(ds)

    monkeypatch.setattr(dicom_io, "_plain_pixels", counted)
    with pytest.raises(InputRejected) as err:
        read_series(files[0].as_uri(), 4, [root], max_slices=8,
                    max_pixel_bytes=pixels.nbytes - 1)
    assert err.value.reason is Reason.IMAGE_TOO_LARGE and not decoded
    assert read_series(files[0].as_uri(), 4, [root], max_slices=8,
                       max_pixel_bytes=pixels.nbytes).pixels.shape == pixels.shape


def test_a_folder_of_too_many_files_is_refused_before_reading_them(root: Path) -> None:
    files, _ = _series(root, "H001", SERIES_A, 2, seed=1)
    for i in range(4 * 2 + 64):
        (files[0].parent / f"note{i}.txt").write_text("x")
    with pytest.raises(InputRejected) as err:
        read_series(files[0].as_uri(), 2, [root], max_slices=2)
    assert err.value.reason is Reason.GEOMETRY_IMPLAUSIBLE


def test_pydicom_reads_the_extras_we_write() -> None:
    """The fixtures are what they claim: real DICOM that pydicom parses (header only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        _extras(Path(d))
        sr = pydicom.dcmread(Path(d) / "SR000001", stop_before_pixels=True)
        assert sr.Modality == "SR"
        sc = pydicom.dcmread(Path(d) / "SC000001")
        assert sc.file_meta.TransferSyntaxUID == JPEGBaseline8Bit and "PixelData" in sc


def test_a_note_named_by_a_series_announcement_gives_way_to_the_series_uid(
        root: Path, mixed: tuple[list[Path], np.ndarray]) -> None:
    files, pixels = mixed
    readme = (files[0].parent / "README.TXT").as_uri()
    series = read_series(readme, 4, [root], max_slices=8, series_uid=SERIES_A, modality="CT",
                         hospital_id="H001")
    np.testing.assert_array_equal(series.pixels, pixels)
    with pytest.raises(InputRejected) as err:  # no UID to go by: the note's own reason
        read_series(readme, 4, [root], max_slices=8, series_uid=KEYED, modality="CT",
                    hospital_id="H001")
    assert err.value.reason is Reason.NOT_DICOM
