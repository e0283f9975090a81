"""Low-dose screening chest CT phantom for the ``ldct-screening`` service.

Series: axial low-dose CT, 32-40 slices of 128x128, stored int16 HU (slope 1, intercept 0),
pixel spacing 2.6-2.9 mm, 240-290 mm covered (6-9 mm slices), BodyPartExamined CHEST, a
description matching the catalog's screening regex ("LOW DOSE CHEST", "LDCT LUNG SCREENING").
Low dose means noisy: sigma 35-60 HU (the standard chest CT has 12-22 HU). Normal anatomy as in
:mod:`services.synth.phantoms.thorax`, plus distractors that are NOT findings: in 50 % of
series 1-2 small solid nodules of 3-5 mm (Lung-RADS 2, not suspicious) and in 30 % a
calcified granuloma (3-6 mm, 250-600 HU).

Finding:
- ``ldct_suspicious_nodule``: one solid nodule of 8-30 mm diameter (log-uniform; Lung-RADS 4A
  starts at 8 mm, above 30 mm it is a mass), -20..60 HU, slightly ellipsoidal, 40 % lobulated
  by a 50-80 % satellite, anywhere in either lung at least its radius from the
  pleura/mediastinum.
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms import thorax
from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import child_rngs, paint, to_stored

SERVICE = "ldct-screening"
FINDINGS: tuple[str, ...] = ("ldct_suspicious_nodule",)
PREVALENCE: dict[str, float] = {"ldct_suspicious_nodule": 0.35}
DESCRIPTIONS = ("LOW DOSE CHEST", "LDCT LUNG SCREENING", "CHEST LOW DOSE 1.25")


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One screening series with exactly ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}")
    geo, anat, lesion, noise_rng = child_rngs(rng, 4)
    slices = int(geo.integers(32, 41))
    pixel_mm = float(geo.uniform(2.6, 2.9))
    slice_mm = float(geo.uniform(240, 290)) / slices
    chest = thorax.build_chest(anat, slices=slices, pixel_mm=pixel_mm, slice_mm=slice_mm)
    thorax.add_heart(chest, anat, rim_mm=chest.info["epicardial_fat_mm"], rim_hu=-90.0)
    thorax.add_vessels(chest, anat, aorta_asc_mm=float(anat.uniform(28, 36)),
                       aorta_desc_mm=float(anat.uniform(20, 28)),
                       trunk_mm=float(anat.uniform(20, 27)))
    thorax.add_spine(chest, anat)
    thorax.add_lung_vessels(chest, anat, int(anat.integers(120, 181)))
    truth: dict[str, object] = {"distractors": _distractors(chest, anat)}
    if "ldct_suspicious_nodule" in positives:
        truth["ldct_suspicious_nodule"] = plant_nodule(chest, lesion, 8.0, 30.0)
    noise = float(noise_rng.uniform(35, 60))
    pixels = to_stored(chest.vol, noise_rng, noise=noise, dtype=np.int16)
    return Phantom(
        pixels=pixels, modality="CT", body_part="CHEST",
        series_description=str(DESCRIPTIONS[int(geo.integers(len(DESCRIPTIONS)))]),
        pixel_spacing=(pixel_mm, pixel_mm), slice_spacing=slice_mm, window=(-600.0, 1500.0),
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def plant_nodule(chest: thorax.Chest, rng: np.random.Generator, lo_mm: float,
                 hi_mm: float) -> dict[str, object]:
    """A solid nodule of lo..hi mm (log-uniform) in the lungs; returns what was planted."""
    diameter = float(np.exp(rng.uniform(np.log(lo_mm), np.log(hi_mm))))
    r = diameter / 2
    point = thorax.lung_point(chest, rng, margin=r + 2) or thorax.lung_point(chest, rng, margin=2)
    if point is None:  # pragma: no cover - lungs always have room for a 2 mm margin
        point = chest.lungs["right"][0]
    hu = float(rng.uniform(-20, 60))
    semi = (r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15), r)
    paint(chest.vol, chest.g, hu, point, semi, edge_mm=1.0)
    if rng.random() < 0.4:
        off = rng.normal(0, 1, 3)
        off *= r / max(float(np.linalg.norm(off)), 1e-6)
        sat = (point[0] + off[0], point[1] + off[1], point[2] + off[2])
        paint(chest.vol, chest.g, hu, sat, (r * 0.6, r * 0.6, r * 0.6), edge_mm=1.0)
    return {"diameter_mm": round(diameter, 1), "hu": round(hu, 1),
            "position_mm": [round(v, 1) for v in point]}


def _distractors(chest: thorax.Chest, rng: np.random.Generator) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            info = plant_nodule(chest, rng, 3.0, 5.0)
            out.append({"kind": "small_nodule", "diameter_mm": info["diameter_mm"]})
    if rng.random() < 0.3:
        point = thorax.lung_point(chest, rng, margin=4)
        if point is not None:
            d = float(rng.uniform(3, 6))
            paint(chest.vol, chest.g, float(rng.uniform(250, 600)), point, (d / 2,) * 3,
                  edge_mm=0.7)
            out.append({"kind": "calcified_granuloma", "diameter_mm": round(d, 1)})
    return out
