"""The five 2-D radiography phantom generators keep the catalog contract (issue #3).

Per service: finding codes equal the catalog's, labels follow ``positives``, geometry and
tags satisfy the catalog's select rules and defect checks, the outer ring is air, a seed is
deterministic, and each finding changes the image where its module docstring says it does.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from streams.contract.catalog import CATALOG_FILE
from streams.imaging.preprocess import PreprocessSpec, to_series_input

CATALOG = CATALOG_FILE
#: Service id -> (module name, stored image shape (rows, cols)).
SERVICES: dict[str, tuple[str, tuple[int, int]]] = {
    "mammography": ("mammography", (256, 192)),
    "knee-xray": ("knee_xray", (256, 256)),
    "pelvis-xray": ("pelvis_xray", (256, 256)),
    "wrist-xray": ("wrist_xray", (256, 256)),
    "foot-xray": ("foot_xray", (256, 256)),
}
SEEDS = range(6)


def _catalog() -> dict[str, dict[str, Any]]:
    data = tomllib.loads(CATALOG.read_text())
    return {s["id"]: s for s in data["service"]}


def _module(service: str) -> ModuleType:
    return importlib.import_module(f"services.synth.phantoms.{SERVICES[service][0]}")


def _subsets(findings: tuple[str, ...]) -> list[frozenset[str]]:
    return [frozenset(), frozenset(findings), *(frozenset([f]) for f in findings)]


@pytest.fixture(scope="module")
def catalog() -> dict[str, dict[str, Any]]:
    return _catalog()


@pytest.mark.parametrize("service", SERVICES)
def test_module_declares_the_catalog_findings(service: str,
                                              catalog: dict[str, dict[str, Any]]) -> None:
    mod = _module(service)
    codes = tuple(f["code"] for f in catalog[service]["findings"])
    assert (service, codes) == (mod.SERVICE, mod.FINDINGS)
    assert set(mod.PREVALENCE) == set(mod.FINDINGS)
    assert all(0.2 <= p <= 0.4 for p in mod.PREVALENCE.values())
    assert mod.__doc__ and all(code in mod.__doc__ for code in mod.FINDINGS)


@pytest.mark.parametrize("service", SERVICES)
def test_geometry_tags_and_labels_satisfy_the_catalog(
        service: str, catalog: dict[str, dict[str, Any]]) -> None:
    mod, entry = _module(service), catalog[service]
    select, checks = entry["select"], entry["checks"]
    for seed in SEEDS:
        for positives in _subsets(mod.FINDINGS):
            ph = mod.render(np.random.default_rng(seed), positives)
            assert ph.labels == {code: code in positives for code in mod.FINDINGS}
            assert ph.pixels.dtype == np.uint16 and int(ph.pixels.max()) <= 4095
            assert ph.pixels.shape == (1, *SERVICES[service][1])
            assert checks["min_slices"] <= ph.pixels.shape[0] <= checks["max_slices"]
            lo, hi = checks["pixel_spacing_mm"]
            assert all(lo <= v <= hi for v in ph.pixel_spacing)
            assert ph.modality in select["modalities"]
            assert ph.body_part in select["body_parts"]
            assert ph.photometric == "MONOCHROME2" and (ph.slope, ph.intercept) == (1.0, 0.0)
            if "series_description" in select:
                assert re.search(select["series_description"], ph.series_description)
            if "exclude_series_description" in select:
                assert not re.search(select["exclude_series_description"],
                                     ph.series_description)
            assert ph.pixels.std() > 100  # an image, not a flat field


@pytest.mark.parametrize("service", SERVICES)
def test_outer_ring_is_air_and_darker_than_the_centre(service: str) -> None:
    mod = _module(service)
    for seed in SEEDS:
        ph = mod.render(np.random.default_rng(seed), frozenset(mod.FINDINGS))
        img = ph.pixels[0].astype(np.float32)
        rows, cols = img.shape
        br, bc = int(np.ceil(0.06 * rows)), int(np.ceil(0.06 * cols))
        ring = np.ones_like(img, dtype=bool)
        ring[br:rows - br, bc:cols - bc] = False
        tissue = np.percentile(img[~ring], 90)
        assert np.percentile(img[ring], 99.9) < 0.15 * tissue
        center, width = ph.window if ph.window is not None else (None, None)
        x = to_series_input(ph.pixels, PreprocessSpec(size=128), window_center=center,
                            window_width=width)[0]
        centre = x[32:96, 32:96].mean()
        assert x[ring[::rows // 128, ::cols // 128][:128, :128]].mean() < 0.5 * centre


@pytest.mark.parametrize("service", SERVICES)
def test_same_seed_same_pixels(service: str) -> None:
    mod = _module(service)
    for positives in _subsets(mod.FINDINGS):
        a = mod.render(np.random.default_rng(42), positives)
        b = mod.render(np.random.default_rng(42), positives)
        np.testing.assert_array_equal(a.pixels, b.pixels)
        assert a.truth == b.truth
    c = mod.render(np.random.default_rng(43), frozenset())
    assert not np.array_equal(a.pixels, c.pixels)


def _finding_diff(mod: ModuleType, seed: int, code: str) -> tuple[np.ndarray, dict[str, Any]]:
    """|with - without| for one finding on otherwise the same image, and the truth."""
    with_it = mod.render(np.random.default_rng(seed), frozenset([code]))
    without = mod.render(np.random.default_rng(seed), frozenset())
    diff = np.abs(with_it.pixels[0].astype(np.float32) - without.pixels[0].astype(np.float32))
    return diff, with_it.truth


def _share_within(diff: np.ndarray, region: np.ndarray) -> float:
    return float(diff[region].sum() / max(diff.sum(), 1e-6))


@pytest.mark.parametrize(("service", "code"), [
    ("mammography", "breast_mass"), ("mammography", "breast_calcifications"),
    ("pelvis-xray", "hip_fracture"), ("wrist-xray", "distal_radius_fracture"),
])
def test_lesion_changes_the_image_only_around_its_documented_place(service: str,
                                                                   code: str) -> None:
    mod = _module(service)
    for seed in SEEDS:
        diff, truth = _finding_diff(mod, seed, code)
        assert diff.max() > 40  # visible above the noise
        rows, cols = np.indices(diff.shape)
        info = truth.get(code, truth)
        cx, cy = info["center"]
        if code == "breast_mass":
            reach = 2.3 * info["radius_px"] + 3  # lobulated margin and spicules
        elif code == "breast_calcifications":
            reach = info["radius_px"] + 4  # speck blur
        elif code == "hip_fracture":
            reach = 50.0  # a displaced fracture moves the whole head-neck fragment
        else:
            reach = 60.0  # a displaced distal radius fragment moves the metaphysis
        near = (rows - cy) ** 2 + (cols - cx) ** 2 <= reach**2
        assert _share_within(diff, near) > 0.99, (seed, truth)


def test_knee_osteoarthritis_narrows_one_compartment_with_spurs() -> None:
    mod = _module("knee-xray")
    for seed in SEEDS:
        diff, truth = _finding_diff(mod, seed, "knee_osteoarthritis")
        cx, j = truth["joint_center"]
        side = truth["image_side"]
        rows, cols = np.indices(diff.shape)
        # Narrowing, sclerosis and osteophytes: all at the joint line of that compartment
        # (the tibial spines near the midline follow the mean gap).
        zone = (np.abs(rows - j) < 30) & (side * (cols - cx) > -16)
        assert diff.max() > 40
        assert _share_within(diff, zone) > 0.99, (seed, truth)
        assert truth["gap_px"] < 0.8 * 9.0 * 1.1


def test_foot_angle_is_planted_on_the_labelled_side_and_geometrically_exact() -> None:
    mod = _module("foot-xray")
    for seed in range(20):
        for positives in (frozenset(), frozenset(["flat_foot"])):
            ph = mod.render(np.random.default_rng(seed), positives)
            angle = ph.measurements["flat_foot"]
            assert ph.labels["flat_foot"] == (angle > mod.ANGLE_THRESHOLD_DEG)
            assert 115.0 <= angle <= 165.0
            c, a, m = (np.array(ph.truth[k]) for k in ("calcaneal_contact", "apex",
                                                       "metatarsal_contact"))
            v1, v2 = c - a, m - a
            cos = v1 @ v2 / (np.linalg.norm(v1) * np.linalg.norm(v2))
            assert np.degrees(np.arccos(cos)) == pytest.approx(angle, abs=0.05)
            assert a[1] < min(c[1], m[1])  # the apex is the highest point (rows grow down)
