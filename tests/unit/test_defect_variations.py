"""The technical-defect checks on images drawn apart from the phantoms they were tuned on
(tests/unit/defect_variations.py), through the worker's own path: radiographs as DICOM files
through load_and_preprocess, CT and MR volumes through check_series on the decoded series (as
preparation.py calls it), files again for pixel data cut short.

Per service: at most 1 % of well-formed studies called defective, at least 95 % of injected
defects caught with their reason. The figures are printed (pytest -s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from streams.contract.catalog import ServiceSpec, catalog, service
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.defects import check_contrast, check_series
from streams.imaging.dicom_io import Geometry
from streams.imaging.preparation import ReadLimits, load_and_preprocess
from streams.imaging.series import DicomSeries
from tests.unit.defect_variations import (
    Variation,
    six_films,
    study_event,
    variations,
    write_series,
)

N_WELL, N_INJECTED = 100, 80
MAX_FALSE, MIN_CAUGHT = 0.01, 0.95
#: Services whose figures on this family do not yet meet the bar. An AP pelvis film often has
#: no air the detector burned out (the body fills the field) and the hip profile is weak on
#: raw (FOR PROCESSING) films and on some habitus: the check abstains on those inversions
#: (90 % of injected defects caught, 1 % of well-formed called defective at seed 19).
SHORT: dict[str, str] = {
    "pelvis-xray": "inverted pelvis films without burned-out air or a clear hip profile "
                   "are abstained on",
}


def _decoded(v: Variation) -> DicomSeries:
    geometries = tuple(
        Geometry(modality=v.modality, body_part=v.body_part.strip().upper(), series_uid="1",
                 instance_number=v.numbers[j], pixel_spacing=v.spacing,
                 position_z=None if v.positions is None else v.positions[j])
        for j in range(v.pixels.shape[0]))
    return DicomSeries(pixels=v.pixels, photometric=v.reported_photometric, slope=v.slope,
                       intercept=v.intercept, window_center=None, window_width=None,
                       geometries=geometries)


def verdict(spec: ServiceSpec, v: Variation, root: Path, i: int) -> Reason | None:
    """The reason the worker's checks give ``v``, None when it reaches the model."""
    try:
        if spec.checks.max_slices <= 1 or v.truncate:
            first = write_series(v, root / "H001" / f"s{i}" / "1")
            load_and_preprocess(spec, study_event(v, first, "H001"),
                                ReadLimits((root,), 64 << 20, 256 << 20))
        else:
            check_series(spec.checks, spec.select, _decoded(v), v.announced)
    except InputRejected as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("service_id", [
    pytest.param(s.id, marks=pytest.mark.xfail(reason=SHORT[s.id], strict=True))
    if s.id in SHORT else s.id for s in catalog()])
def test_well_formed_studies_pass_and_injected_defects_are_caught(service_id: str,
                                                                   tmp_path: Path) -> None:
    spec = service(service_id)
    false: list[str] = []
    missed: list[str] = []
    wells = injected = 0
    for i, v in enumerate(variations(spec, N_WELL, N_INJECTED)):
        got = verdict(spec, v, tmp_path, i)
        if v.expected is None:
            wells += 1
            if got is not None:
                false.append(f"{v.style}: {got}")
        else:
            injected += 1
            if got is not v.expected:
                missed.append(f"{v.style}: {got}")
    false_rate, caught = len(false) / wells, 1 - len(missed) / injected
    print(f"\n{service_id}: false defects {len(false)}/{wells} ({false_rate:.1%}), "
          f"injected caught {injected - len(missed)}/{injected} ({caught:.1%})")
    assert false_rate <= MAX_FALSE, false
    assert caught >= MIN_CAUGHT, missed


def test_the_six_films_of_issue_19_reach_the_model(tmp_path: Path) -> None:
    """MONOCHROME2, 12 bits, bright collimated edges, lungs darker than the tissue around."""
    spec = service("chest-xray")
    films = six_films()
    assert len(films) == 6
    for i, film in enumerate(films):
        border = np.concatenate([film.pixels[0, :3].ravel(), film.pixels[0, -3:].ravel()])
        assert float(border.mean()) > float(np.median(film.pixels))  # the border is bright
        assert verdict(spec, film, tmp_path, i) is None


@pytest.mark.parametrize(("name", "evidence"), [
    ("CT_small.dcm", ("hounsfield", "air")), ("MR_small.dcm", ("air",)),
    ("MR_small_RLE.dcm", ("air",)), ("MR_small_implicit.dcm", ("air",)),
    ("examples_overlay.dcm", ("air",))])
def test_real_ct_and_mr_images_are_not_called_defective(name: str,
                                                         evidence: tuple[str, ...]) -> None:
    """pydicom's bundled real images, decoded as they are, with the evidence of the CT and MR
    services; their values mirrored are (the contrast check has evidence in real images)."""
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    photometric = str(ds.PhotometricInterpretation)
    check_contrast(pixels, photometric, evidence=evidence, slope=slope, intercept=intercept)
    wide = pixels.astype(np.int64)
    mirrored = (wide.max() + wide.min() - wide).astype(pixels.dtype)
    with pytest.raises(InputRejected) as err:
        check_contrast(mirrored, photometric, evidence=("air",))
    assert err.value.reason is Reason.CONTRAST_INVERTED


def test_real_ct_slice_as_a_chest_ct_series_passes_every_check() -> None:
    """CT_small's one real slice, stacked at 2.5 mm steps into a series the size chest-ct
    reads: identity (no BodyPartExamined), geometry and contrast all let it through."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    spec = service("chest-ct")
    n = spec.checks.min_slices + 4
    pixels = np.repeat(ds.pixel_array[np.newaxis], n, axis=0)
    spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    geometries = tuple(Geometry(modality=str(ds.Modality), body_part="", series_uid="1",
                                instance_number=i + 1, pixel_spacing=spacing,
                                position_z=2.5 * i) for i in range(n))
    series = DicomSeries(pixels=pixels, photometric=str(ds.PhotometricInterpretation),
                         slope=float(ds.RescaleSlope), intercept=float(ds.RescaleIntercept),
                         window_center=None, window_width=None, geometries=geometries)
    check_series(spec.checks, spec.select, series, n)
