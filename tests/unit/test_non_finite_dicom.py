"""A DICOM file whose rescale or window attribute reads as NaN or infinity: from the file, through
the worker's reader and preprocessing, the study is refused as its own `non_finite_input`
technical defect instead of sending Triton a NaN tensor (which fails the whole micro-batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from services.synth.hostile import phantom_dicom
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.imaging.dicom_io import read_image
from streams.imaging.preprocess import to_model_input

#: A DS value written in place of the attribute, then overwritten in the bytes with the same
#: length (pydicom would not write a non-finite decimal string itself).
PLACEHOLDER = "12345.6789"


def _file_with(tmp_path: Path, keyword: str, text: bytes) -> Path:
    path = phantom_dicom(tmp_path / "t.dcm")
    ds = pydicom.dcmread(path)
    setattr(ds, keyword, PLACEHOLDER)
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert data.count(PLACEHOLDER.encode()) == 1
    path.write_bytes(data.replace(PLACEHOLDER.encode(), text.ljust(len(PLACEHOLDER))))
    return path


@pytest.mark.parametrize("keyword", ["RescaleSlope", "RescaleIntercept", "WindowCenter",
                                     "WindowWidth"])
@pytest.mark.parametrize("text", [b"NaN", b"inf", b"-inf", b"1e39"])
def test_non_finite_attribute_is_the_studys_defect(tmp_path: Path, keyword: str,
                                                   text: bytes) -> None:
    image = read_image(_file_with(tmp_path, keyword, text))
    with pytest.raises(InputRejected) as info:
        to_model_input(image.pixels, photometric=image.photometric, slope=image.slope,
                       intercept=image.intercept, window_center=image.window_center,
                       window_width=image.window_width)
    assert info.value.reason is Reason.NON_FINITE_INPUT
    assert info.value.reason in TECHNICAL_DEFECTS


def test_the_same_file_with_finite_values_is_a_finite_tensor(tmp_path: Path) -> None:
    image = read_image(_file_with(tmp_path, "WindowWidth", b"400"))
    assert image.window_width == 400.0
    out = to_model_input(image.pixels, photometric=image.photometric, slope=image.slope,
                         intercept=image.intercept, window_center=image.window_center,
                         window_width=image.window_width)
    assert np.isfinite(out).all()
