"""The multi-slice phantom generators (head CT, lumbar MRI, brain MRI, abdomen CT) keep the
catalog contract: codes in output order, geometry inside the defect checks, an air border,
determinism, and each finding changing the image where its module docstring says."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from services.synth.phantoms import abdomen_ct, brain_mri, head_ct, lumbar_mri
from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import border_ring
from streams.contract.catalog import service
from streams.imaging.preprocess import to_series_input

MODULES = (head_ct, lumbar_mri, brain_mri, abdomen_ct)
SEEDS = (0, 1, 2)


def _render(module: ModuleType, seed: int, positives: frozenset[str]) -> Phantom:
    phantom: Phantom = module.render(np.random.default_rng(seed), positives)
    return phantom


def _values(ph: Phantom) -> np.ndarray:
    return ph.pixels.astype(np.float32) * np.float32(ph.slope) + np.float32(ph.intercept)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SERVICE)
def test_codes_and_prevalence_follow_the_catalog(module: ModuleType) -> None:
    spec = service(module.SERVICE)
    assert tuple(f.code for f in spec.findings) == module.FINDINGS
    assert set(module.PREVALENCE) == set(module.FINDINGS)
    assert all(0.2 <= p <= 0.4 for p in module.PREVALENCE.values())
    with pytest.raises(ValueError):
        module.render(np.random.default_rng(0), frozenset({"not_a_finding"}))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SERVICE)
@pytest.mark.parametrize("seed", SEEDS)
def test_series_passes_the_catalog_checks_and_selection(module: ModuleType, seed: int) -> None:
    spec = service(module.SERVICE)
    positives = frozenset(module.FINDINGS[: seed % (len(module.FINDINGS) + 1)])
    ph = _render(module, seed, positives)
    assert ph.labels == {code: code in positives for code in module.FINDINGS}
    slices, rows, cols = ph.pixels.shape
    assert (rows, cols) == (128, 128) and 32 <= slices <= 40
    assert spec.checks.min_slices <= slices <= spec.checks.max_slices
    lo, hi = spec.checks.pixel_spacing_mm
    assert all(lo <= s <= hi for s in ph.pixel_spacing)
    lo, hi = spec.checks.slice_spacing_mm
    assert lo <= ph.slice_spacing <= hi
    assert ph.modality in spec.select.modalities and ph.body_part in spec.select.body_parts
    if spec.select.series_description is not None:
        assert spec.select.series_description.search(ph.series_description)
    if spec.select.exclude_series_description is not None:
        assert not spec.select.exclude_series_description.search(ph.series_description)
    assert ph.pixels.dtype == (np.int16 if ph.modality == "CT" else np.uint16)
    if ph.modality == "CT":
        assert (ph.slope, ph.intercept) == (1.0, 0.0)
    for code in positives:
        assert code in ph.truth


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SERVICE)
@pytest.mark.parametrize("seed", SEEDS)
def test_every_slice_has_an_air_border_darker_than_its_centre(module: ModuleType,
                                                              seed: int) -> None:
    ph = _render(module, seed, frozenset(module.FINDINGS))
    values = _values(ph)
    ring = border_ring(values.shape[1:], 0.06)
    border = values[:, ring]
    if ph.modality == "CT":
        assert border.max() < -850.0
    else:
        bright = float(np.percentile(values, 99))
        assert border.max() < 0.15 * bright and border.mean() < 0.05 * bright
    # After the worker's preprocessing too: every channel's border is darker than its centre.
    spec = service(module.SERVICE).preprocess
    window = ph.window or (None, None)
    tensor = to_series_input(ph.pixels, spec, photometric=ph.photometric, slope=ph.slope,
                             intercept=ph.intercept, window_center=window[0],
                             window_width=window[1])
    ring_in = border_ring(tensor.shape[1:], 0.06)
    c = tensor.shape[1] // 4
    centre = tensor[:, c:-c, c:-c]
    assert (tensor[:, ring_in].mean(axis=1) < centre.mean(axis=(1, 2))).all()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SERVICE)
def test_same_seed_same_series(module: ModuleType) -> None:
    a = _render(module, 5, frozenset(module.FINDINGS))
    b = _render(module, 5, frozenset(module.FINDINGS))
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.truth == b.truth
    c = _render(module, 6, frozenset(module.FINDINGS))
    assert a.pixels.shape != c.pixels.shape or not np.array_equal(a.pixels, c.pixels)


def _lesion_diff(module: ModuleType, seed: int, code: str) -> tuple[np.ndarray, np.ndarray,
                                                                     Phantom]:
    """(positive - negative) values and the negative's values: the same anatomy and noise, so
    the difference is the planted lesion alone."""
    neg = _render(module, seed, frozenset())
    pos = _render(module, seed, frozenset({code}))
    assert pos.pixels.shape == neg.pixels.shape
    return _values(pos) - _values(neg), _values(neg), pos


@pytest.mark.parametrize("seed", SEEDS)
def test_haemorrhage_is_hyperdense_inside_the_skull(seed: int) -> None:
    diff, neg, pos = _lesion_diff(head_ct, seed, "intracranial_haemorrhage")
    changed = diff > 10.0
    assert changed.sum() > 20
    # Brain (or CSF) replaced by blood of 55-90 HU: never air, never bone.
    assert neg[changed].min() > -50.0 and neg[changed].max() < 300.0
    after = neg + diff
    assert 50.0 < float(np.median(after[diff > 20.0])) < 100.0
    assert pos.truth["intracranial_haemorrhage"]["type"] in {"intraparenchymal", "subdural"}


@pytest.mark.parametrize("seed", SEEDS)
def test_stroke_is_a_hypodense_wedge_over_several_slices(seed: int) -> None:
    diff, neg, _ = _lesion_diff(head_ct, seed, "ischaemic_stroke")
    changed = diff < -3.0
    assert diff.max() <= 0.0 and diff.min() <= -6.0
    assert neg[changed].min() > -50.0 and neg[changed].max() < 100.0   # brain only
    assert np.unique(np.nonzero(changed)[0]).size >= 3
    # One hemisphere: the changed columns lie on one side of the head's midline.
    cols = np.nonzero(changed)[2]
    head_cols = np.nonzero((neg > -500).any(axis=(0, 1)))[0]
    mid = (head_cols.min() + head_cols.max()) / 2
    assert (cols < mid).all() or (cols > mid).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_ms_lesions_are_several_bright_white_matter_foci(seed: int) -> None:
    diff, neg, pos = _lesion_diff(brain_mri, seed, "ms_lesions")
    assert diff.min() >= -80.0   # only brightening beyond noise-scale rounding
    bright = diff > 100.0
    assert bright.sum() > 10
    white = np.median(neg[bright])
    assert 250.0 < white < 550.0   # the foci sit in brain tissue, not CSF, skull or air
    assert pos.truth["ms_lesions"]["count"] >= 3
    assert np.unique(np.nonzero(bright)[0]).size >= 2


@pytest.mark.parametrize("seed", SEEDS)
def test_herniation_darkens_the_canal_on_central_slices(seed: int) -> None:
    diff, neg, _ = _lesion_diff(lumbar_mri, seed, "disc_herniation")
    darker = diff < -200.0
    assert darker.sum() > 10
    # It displaces bright CSF (the brightest tissue of a T2 spine) ...
    assert np.median(neg[darker]) > 700.0
    # ... on central sagittal slices only.
    z = np.nonzero(darker)[0]
    n = diff.shape[0]
    assert z.min() >= n // 5 and z.max() <= n - 1 - n // 5


@pytest.mark.parametrize("seed", SEEDS)
def test_kidney_stone_is_a_dense_focus_in_a_kidney_on_one_to_three_slices(seed: int) -> None:
    diff, neg, pos = _lesion_diff(abdomen_ct, seed, "kidney_stone")
    dense = diff > 100.0
    assert dense.any() and diff.min() >= 0.0
    # Kidney tissue or sinus fat before, above 300 HU-ish after (partial volume aside).
    assert -100.0 < np.median(neg[dense]) < 80.0
    assert (neg + diff).max() > 250.0
    stones = pos.truth["kidney_stone"]["stones"]
    for stone in stones:
        assert 1 <= len(stone["slices"]) <= 3 and 2.0 <= stone["diameter_mm"] <= 8.0
    assert np.unique(np.nonzero(dense)[0]).size <= 3 * len(stones)


def test_distractors_alone_are_not_findings() -> None:
    """Negative abdomens still contain dense calcified foci (aorta, ribs, spine), so density
    alone does not give a stone away."""
    dense_negatives = sum(
        bool((_values(_render(abdomen_ct, s, frozenset())) > 300.0).any()) for s in range(5)
    )
    assert dense_negatives == 5
