"""The chest-ct and ldct-screening phantoms: catalog agreement, geometry, determinism, and
that each planted finding changes the image where its module docstring says it does."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import numpy as np
import pytest

from services.synth.phantoms import chest_ct, ldct_screening
from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import border_ring
from streams.contract.catalog import CATALOG_FILE

CATALOG = CATALOG_FILE
MODULES = {"chest-ct": chest_ct, "ldct-screening": ldct_screening}


def _service(service_id: str) -> dict[str, Any]:
    services = tomllib.loads(CATALOG.read_text())["service"]
    return next(s for s in services if s["id"] == service_id)


def _render(module: Any, seed: int, positives: frozenset[str]) -> Phantom:
    ph: Phantom = module.render(np.random.default_rng(seed), positives)
    return ph


@pytest.mark.parametrize("service_id", sorted(MODULES))
def test_module_matches_catalog(service_id: str) -> None:
    module, spec = MODULES[service_id], _service(service_id)
    assert service_id == module.SERVICE
    assert tuple(module.FINDINGS) == tuple(f["code"] for f in spec["findings"])
    assert set(module.PREVALENCE) == set(module.FINDINGS)
    assert all(0.2 <= p <= 0.4 for p in module.PREVALENCE.values())


@pytest.mark.parametrize("service_id", sorted(MODULES))
@pytest.mark.parametrize("seed", [1, 2])
def test_series_satisfies_selection_and_checks(service_id: str, seed: int) -> None:
    module, spec = MODULES[service_id], _service(service_id)
    positives = frozenset(module.FINDINGS[seed % len(module.FINDINGS) :])
    ph = _render(module, seed, positives)
    assert ph.labels == {code: code in positives for code in module.FINDINGS}
    assert ph.modality in spec["select"]["modalities"]
    assert ph.body_part in spec["select"]["body_parts"]
    if "series_description" in spec["select"]:
        assert re.search(spec["select"]["series_description"], ph.series_description)
    if "exclude_series_description" in spec["select"]:
        assert not re.search(spec["select"]["exclude_series_description"],
                             ph.series_description)
    checks = spec["checks"]
    slices, rows, cols = ph.pixels.shape
    assert ph.pixels.dtype == np.int16 and (rows, cols) == (128, 128)
    assert checks["min_slices"] <= slices <= checks["max_slices"] and 32 <= slices <= 40
    lo, hi = checks["pixel_spacing_mm"]
    assert all(lo <= s <= hi for s in ph.pixel_spacing)
    lo, hi = checks["slice_spacing_mm"]
    assert lo <= ph.slice_spacing <= hi
    assert (ph.slope, ph.intercept) == (1.0, 0.0)


@pytest.mark.parametrize("service_id", sorted(MODULES))
def test_air_border_and_bright_centre(service_id: str) -> None:
    module = MODULES[service_id]
    ph = _render(module, 5, frozenset(module.FINDINGS))
    ring = border_ring(ph.pixels.shape[1:])
    assert ph.pixels[:, ring].max() < -800  # air plus noise everywhere on the border ring
    centre = ph.pixels[:, 48:80, 48:80].mean()
    assert centre > ph.pixels[:, ring].mean() + 500


@pytest.mark.parametrize("service_id", sorted(MODULES))
def test_same_seed_same_pixels(service_id: str) -> None:
    module = MODULES[service_id]
    a = _render(module, 11, frozenset(module.FINDINGS[:1]))
    b = _render(module, 11, frozenset(module.FINDINGS[:1]))
    c = _render(module, 12, frozenset(module.FINDINGS[:1]))
    assert np.array_equal(a.pixels, b.pixels) and a.truth == b.truth
    assert not np.array_equal(a.pixels, c.pixels)


def _diff(module: Any, code: str, seed: int = 21) -> tuple[np.ndarray, Phantom]:
    """Planted minus clean render of the same seed (same anatomy and noise)."""
    clean = _render(module, seed, frozenset())
    ph = _render(module, seed, frozenset({code}))
    assert code in ph.truth
    return ph.pixels.astype(np.float32) - clean.pixels.astype(np.float32), ph


def _centroid(mask: np.ndarray) -> np.ndarray:
    """Centroid (slice, row, col) of a boolean mask, as fractions of the volume's extent."""
    idx = np.argwhere(mask)
    assert len(idx), "the finding changed nothing"
    return idx.mean(0) / np.array(mask.shape)


def _nodule_voxel(ph: Phantom, info: dict[str, Any]) -> tuple[int, int, int]:
    z, y, x = info["position_mm"]
    d, h, w = ph.pixels.shape
    return (round(z / ph.slice_spacing + (d - 1) / 2),
            round(y / ph.pixel_spacing[0] + (h - 1) / 2),
            round(x / ph.pixel_spacing[1] + (w - 1) / 2))


def test_lung_nodules_are_solid_where_recorded() -> None:
    for module, code in ((chest_ct, "ct_lung_nodule"), (ldct_screening, "ldct_suspicious_nodule")):
        diff, ph = _diff(module, code)
        info = ph.truth[code]
        assert diff[_nodule_voxel(ph, info)] > 500  # lung (~-850 HU) became soft tissue
        assert (np.abs(diff) > 100).sum() < 2000  # a focal lesion, not a global change


@pytest.mark.parametrize("code", chest_ct.FINDINGS)
def test_each_chest_ct_finding_changes_its_documented_region(code: str) -> None:
    diff, _ = _diff(chest_ct, code)
    up, down = diff > 60, diff < -60
    if code == "ct_lung_nodule":
        assert up.any()
    elif code == "covid19_pattern":  # bilateral: both halves of the image denser
        assert up[:, :, :64].sum() > 20 and up[:, :, 64:].sum() > 20
        assert not down.any()
    elif code == "emphysema":  # lung below -950 HU, mostly upper zones
        assert down.sum() > 200 and not up.any()
        assert _centroid(down)[0] < 0.5
    elif code == "pleural_effusion":  # dependent: posterior, lower
        assert up.sum() > 100 and _centroid(up)[1] > 0.5 and _centroid(up)[0] > 0.4
    elif code in ("pulmonary_trunk_dilation", "thoracic_aortic_dilation",
                  "pericardial_effusion"):  # mediastinal soft tissue grows
        c = _centroid(np.abs(diff) > 60)
        assert up.sum() > 20 and 0.3 < c[2] < 0.7
    elif code == "coronary_calcium":
        assert diff.max() > 150 and up.sum() < 300
    elif code == "vertebral_compression":  # the spine: midline, posterior, bone lost
        c = _centroid(down)
        assert down.sum() > 20 and 0.45 < c[2] < 0.55 and c[1] > 0.55
    elif code == "pneumothorax":  # anterior pleural air
        air = diff < -300
        assert air.sum() > 50 and _centroid(air)[1] < 0.5
    else:  # pragma: no cover - a new finding needs its own expectation
        pytest.fail(f"no expectation for {code}")
