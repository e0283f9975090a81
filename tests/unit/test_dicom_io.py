"""The worker's DICOM reader: every bad input maps to one stable Reason, and roots hold."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from services.synth.phantoms.base import Phantom
from services.synth.series_writer import SeriesHeader, write_instance
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import read_image, read_image_from_uri, resolve_uri
from streams.imaging.preprocess import robust_window

HEADER = SeriesHeader(
    study_uid="1.2.826.0.1.3680043.8.498.1",
    series_uid="1.2.826.0.1.3680043.8.498.2",
    patient_name="SYNTH^PATIENT0001",
    patient_id="SYNTH-1",
    birth_date="19700101",
    accession="ACC1",
    institution="Synthetic City Hospital H001",
    station="H001-DX01",
    acquired_at=datetime(2024, 3, 1, 11, 30, tzinfo=UTC),
)


def _write(path: Path, pixels: np.ndarray) -> Path:
    """A chest radiograph file as the city's series writer writes it, with the robust window."""
    phantom = Phantom(pixels=pixels[None], modality="DX", body_part="CHEST",
                      series_description="CHEST PA", pixel_spacing=(0.7, 0.7),
                      window=robust_window(pixels.astype(np.float32)))
    return write_instance(path, phantom, HEADER)


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4096, (64, 80)).astype(np.uint16)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def _reason(exc: pytest.ExceptionInfo[InputRejected]) -> Reason:
    return exc.value.reason


def test_round_trip(root: Path, pixels: np.ndarray) -> None:
    path = _write(root / "a b" / "1.dcm", pixels)
    image = read_image_from_uri("file://" + quote(str(path)), [root])
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.photometric == "MONOCHROME2"
    assert (image.slope, image.intercept) == (1.0, 0.0)
    assert image.window_center is not None and image.window_width is not None
    assert image.window_width > 0


def test_multivalued_window_takes_first(root: Path, pixels: np.ndarray) -> None:
    import pydicom

    path = _write(root / "1.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.WindowCenter = ["100", "2000"]
    ds.WindowWidth = ["50", "4000"]
    ds.save_as(path)
    image = read_image(path)
    assert (image.window_center, image.window_width) == (100.0, 50.0)


def test_dotdot_escape(root: Path, tmp_path: Path, pixels: np.ndarray) -> None:
    _write(tmp_path / "secret.dcm", pixels)
    with pytest.raises(InputRejected) as exc:
        resolve_uri(f"file://{root}/../secret.dcm", [root])
    assert _reason(exc) is Reason.FILE_OUTSIDE_ROOT


def test_symlink_escape(root: Path, tmp_path: Path, pixels: np.ndarray) -> None:
    target = _write(tmp_path / "outside.dcm", pixels)
    link = root / "link.dcm"
    os.symlink(target, link)
    with pytest.raises(InputRejected) as exc:
        resolve_uri(f"file://{link}", [root])
    assert _reason(exc) is Reason.FILE_OUTSIDE_ROOT


def test_missing(root: Path) -> None:
    with pytest.raises(InputRejected) as exc:
        resolve_uri(f"file://{root}/nope.dcm", [root])
    assert _reason(exc) is Reason.FILE_MISSING


@pytest.mark.parametrize("uri", ["http://pacs/x.dcm", "https://a/b", "s3://b/k", "/plain/path"])
def test_unsupported_scheme(root: Path, uri: str) -> None:
    with pytest.raises(InputRejected) as exc:
        resolve_uri(uri, [root])
    assert _reason(exc) is Reason.URI_UNSUPPORTED


def test_not_dicom(root: Path) -> None:
    path = root / "x.dcm"
    path.write_bytes(b"this is a PNG, honestly" * 20)
    with pytest.raises(InputRejected) as exc:
        read_image(path)
    assert _reason(exc) is Reason.NOT_DICOM


def test_truncated_in_pixel_data(root: Path, pixels: np.ndarray) -> None:
    path = _write(root / "1.dcm", pixels)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - pixels.nbytes // 2])
    with pytest.raises(InputRejected) as exc:
        read_image(path)
    assert _reason(exc) is Reason.DICOM_TRUNCATED


def test_too_large(root: Path, pixels: np.ndarray) -> None:
    path = _write(root / "1.dcm", pixels)
    with pytest.raises(InputRejected) as exc:
        read_image(path, max_bytes=1000)
    assert _reason(exc) is Reason.FILE_TOO_LARGE
