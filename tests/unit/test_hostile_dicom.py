"""Every hostile file in the generated corpus is rejected by the worker's reader with its
precise reason, cheaply: nothing is decoded, inflated or allocated beyond the configured caps."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from services.synth.hostile import (
    HostileFile,
    deflated_copy,
    hostile_uris,
    phantom_dicom,
    write_hostile_files,
)
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import pixel_bytes, read_image, read_image_from_uri, resolve_uri
from streams.imaging.series import read_series
from streams.imaging.wado import is_archive_uri, target

#: A small file cap keeps the sparse and deflate-bomb cases quick to write.
MAX_FILE_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[HostileFile]]:
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "root", base / "outside"
    return root, outside, write_hostile_files(root, outside, max_file_bytes=MAX_FILE_BYTES)


def _read(path: Path, root: Path) -> None:
    read_image_from_uri(path.as_uri(), [root], max_bytes=MAX_FILE_BYTES)


def test_corpus_covers_every_file_reason(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    _, _, cases = corpus
    assert {c.reason for c in cases} >= {
        Reason.NOT_DICOM, Reason.DICOM_TRUNCATED, Reason.IMAGE_TOO_LARGE, Reason.FILE_TOO_LARGE,
        Reason.TRANSFER_SYNTAX_UNSUPPORTED, Reason.FILE_OUTSIDE_ROOT, Reason.FILE_MISSING}


def test_each_hostile_file_has_its_reason(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    root, _, cases = corpus
    got = {}
    for case in cases:
        with pytest.raises(InputRejected) as exc:
            _read(case.path, root)
        got[case.name] = exc.value.reason
    assert got == {c.name: c.reason for c in cases}


def test_each_hostile_file_has_its_reason_through_the_series_reader(
        corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    """As the worker reads it: a one-instance series named by its file, in a folder full of
    other files (the rest of the corpus), under a keyed series UID."""
    root, _, cases = corpus
    got = {}
    for case in cases:
        with pytest.raises(InputRejected) as exc:
            read_series(case.path.as_uri(), 1, [root], max_slices=1, max_bytes=MAX_FILE_BYTES,
                        series_uid="2.25.1", modality="DX")
        got[case.name] = exc.value.reason
    assert got == {c.name: c.reason for c in cases}


def test_each_hostile_uri_has_its_reason(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    root, outside, _ = corpus
    for name, uri, reason in hostile_uris(root, outside):
        with pytest.raises(InputRejected) as exc:
            # The worker's dispatch: archive URIs to the allow-list, the rest to the file roots.
            if is_archive_uri(uri):
                target(uri, ())
            else:
                resolve_uri(uri, [root])
        assert exc.value.reason is reason, name


def test_template_is_valid(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    root, _, _ = corpus
    image = read_image(root / "template.dcm")
    assert image.pixels.shape == (64, 80)


def test_deflate_bomb_stays_within_the_cap(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    """The bomb inflates to 4x the cap; the reader stops at the cap, so peak memory grows by
    far less than the full inflated size."""
    root, _, _ = corpus
    bomb = root / "deflate-bomb.dcm"
    assert bomb.stat().st_size < MAX_FILE_BYTES // 8
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputRejected) as exc:
        read_image(bomb, max_bytes=MAX_FILE_BYTES)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert exc.value.reason is Reason.FILE_TOO_LARGE
    assert grown_kib * 1024 < 2 * MAX_FILE_BYTES


def test_valid_deflated_file_is_read(tmp_path: Path) -> None:
    template = phantom_dicom(tmp_path / "t.dcm")
    deflated = deflated_copy(template, tmp_path / "deflated.dcm")
    np.testing.assert_array_equal(read_image(deflated).pixels, read_image(template).pixels)


def test_implicit_vr_file_is_read(tmp_path: Path) -> None:
    template = phantom_dicom(tmp_path / "t.dcm")
    ds = pydicom.dcmread(template)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(tmp_path / "implicit.dcm", implicit_vr=True, little_endian=True)
    image = read_image(tmp_path / "implicit.dcm")
    np.testing.assert_array_equal(image.pixels, read_image(template).pixels)


def test_pixel_budget_is_checked_before_decoding(tmp_path: Path) -> None:
    path = phantom_dicom(tmp_path / "t.dcm")
    ds = pydicom.dcmread(path)
    assert pixel_bytes(ds, path) == 64 * 80 * 2
    with pytest.raises(InputRejected) as exc:
        read_image(path, max_pixel_bytes=64 * 80 * 2 - 1)
    assert exc.value.reason is Reason.IMAGE_TOO_LARGE


@pytest.mark.parametrize(("value", "reason"), [
    (b"lots", Reason.DICOM_UNREADABLE),
    (b"-3  ", Reason.PIXELS_UNREADABLE),
    (None, Reason.PIXELS_UNREADABLE),
])
def test_bad_pixel_module_values(tmp_path: Path, value: bytes | None, reason: Reason) -> None:
    path = phantom_dicom(tmp_path / "t.dcm")
    ds = pydicom.dcmread(path)
    if value is None:
        del ds.BitsAllocated
    else:
        ds.NumberOfFrames = 7777  # then overwritten in the bytes: pydicom would refuse to write it
    ds.save_as(path, enforce_file_format=True)
    if value is not None:
        data = path.read_bytes()
        assert data.count(b"7777") == 1
        path.write_bytes(data.replace(b"7777", value))
    with pytest.raises(InputRejected) as exc:
        read_image(path)
    assert exc.value.reason is reason


@pytest.mark.parametrize("name", ["tiny-elements", "tiny-elements-deflated"])
def test_millions_of_tiny_elements_stop_at_the_element_cap(
        corpus: tuple[Path, Path, list[HostileFile]], name: str) -> None:
    """Each parsed element costs pydicom about 300 bytes: a file of 8-byte elements at the
    file cap would cost ~40x the cap in memory without the element cap (2.7 GiB for 64 MiB)."""
    root, _, _ = corpus
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputRejected) as exc:
        read_image(root / f"{name}.dcm", max_bytes=MAX_FILE_BYTES, max_elements=10_000)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert exc.value.reason is Reason.DICOM_TOO_MANY_ELEMENTS
    assert grown_kib * 1024 < 3 * MAX_FILE_BYTES


def test_parsing_has_a_deadline(corpus: tuple[Path, Path, list[HostileFile]]) -> None:
    root, _, _ = corpus
    with pytest.raises(InputRejected) as exc:
        read_image(root / "tiny-elements.dcm", max_bytes=MAX_FILE_BYTES, max_parse_s=0.0)
    assert exc.value.reason is Reason.DICOM_PARSE_TIMEOUT


def test_a_header_value_of_megabytes_is_refused_before_conversion(tmp_path: Path) -> None:
    """A multi-valued header string costs ~100 bytes per value as Python objects: within the
    file cap, PixelSpacing as 30 million values would cost gigabytes. The worker converts no
    value longer than dicom_io.MAX_USED_VALUE_BYTES (here 5,000 values, 10 KB)."""
    path = phantom_dicom(tmp_path / "t.dcm")
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["1"] * 5_000
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputRejected) as exc:
        read_image(path)
    assert exc.value.reason is Reason.DICOM_UNREADABLE
