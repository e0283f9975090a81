"""Non-contrast head CT phantom for the ``head-ct`` service (haemorrhage, ischaemic stroke).

Series: axial CT, 32-40 slices of 128x128, stored int16 HU (slope 1, intercept 0), pixel
spacing 1.75-1.95 mm, 125-135 mm covered (slice spacing 3.1-4.2 mm), "HEAD" body part. Slices
run from just above the skull base (bottom slices: partial-volume bony ridges) to the vertex.

Anatomy (all jittered per series): air (-1000 HU) around the head, with at least 14 mm of air
on every side; scalp 3-5 mm at ~25 HU; skull ring 5-8 mm thick at 900-1400 HU; a 1.5-3 mm
subarachnoid CSF rim at ~8 HU; grey matter 36-42 HU; white matter (inner ellipsoid) 4-7 HU
darker; two lateral ventricles (CSF 3-8 HU, size x0.8-1.5 for age) and a thin falx (~55 HU).
Distractors that are NOT findings: choroid-plexus calcifications (2-4 mm, 100-300 HU, in the
ventricular atria, 50 %), a pineal calcification (2-4 mm, 80-250 HU, midline, 40 %), bony
ridges of the skull base in the lowest slices, smooth +-1.5 HU texture, noise sigma 3.5-6 HU.

Lesions:
- ``intracranial_haemorrhage`` (one of):
  * intraparenchymal haematoma (60 %): a lobulated ellipsoid of 6-35 mm diameter (log-uniform,
    so many are small), 60-90 HU, anywhere in one hemisphere's parenchyma, 50 % with a 3-6 mm
    oedema halo 6-10 HU below brain;
  * subdural haematoma (40 %): a crescent along the inner table of one hemisphere, maximum
    thickness 3-12 mm, 55-85 HU, 40-80 mm high (about 10-25 slices), tapering at its ends.
- ``ischaemic_stroke``: an MCA-territory wedge in one hemisphere: cortex-based sector of
  30-70 degrees, from 35-55 % of the brain radius out to the cortex, 24-60 mm high (several
  slices), parenchyma 8-15 HU darker than normal (grey-white differentiation lost inside).
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import (
    Grid3,
    Vec3,
    child_rngs,
    ellipsoid,
    make_grid,
    paint,
    smooth_field,
    to_stored,
)

SERVICE = "head-ct"
FINDINGS: tuple[str, ...] = ("intracranial_haemorrhage", "ischaemic_stroke")
PREVALENCE: dict[str, float] = {"intracranial_haemorrhage": 0.3, "ischaemic_stroke": 0.3}

SIZE = 128
AIR = -1000.0


def _full(shape: tuple[int, int, int], box: tuple[slice, slice, slice],
          occ: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    out[box] = occ
    return out


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One head CT series with exactly the findings in ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"not findings of {SERVICE}: {sorted(unknown)}")
    anat, bleed_rng, stroke_rng, noise_rng = child_rngs(rng, 4)

    # The scan covers a fixed anatomical range (as a protocol does): spacing = range / slices.
    slices = int(anat.integers(32, 41))
    pixel = float(anat.uniform(1.75, 1.95))
    slice_mm = float(anat.uniform(125, 135)) / slices
    g = make_grid(slices, SIZE, SIZE, pixel, slice_mm)
    shape = g.shape

    # Head: outer skull semi-axes (z, y=AP, x=LR); its centre sits below the volume centre so
    # the top slices approach the vertex.
    outer = (float(anat.uniform(85, 95)), float(anat.uniform(80, 86)), float(anat.uniform(64, 72)))
    c = (float(-anat.uniform(8, 12)), float(anat.uniform(-3, 3)), float(anat.uniform(-3, 3)))
    tilt = float(anat.uniform(-0.08, 0.08))
    scalp_th, skull_th = float(anat.uniform(3, 5)), float(anat.uniform(5, 8))
    csf_th = float(anat.uniform(1.5, 3.0))
    grey = float(anat.uniform(38, 41))
    white = grey - float(anat.uniform(4, 6))
    csf = float(anat.uniform(4, 7))

    vol = np.full(shape, AIR, dtype=np.float32)
    paint(vol, g, 25.0, c, tuple(s + scalp_th for s in outer), edge_mm=1.5, angle=tilt)
    paint(vol, g, float(anat.uniform(900, 1400)), c, outer, edge_mm=1.5, angle=tilt)
    inner = tuple(s - skull_th for s in outer)
    paint(vol, g, 8.0, c, inner, edge_mm=1.5, angle=tilt)
    brain_semi = tuple(s - csf_th for s in inner)
    box, occ = ellipsoid(g, c, brain_semi, edge_mm=1.5, angle=tilt)
    brain = _full(shape, box, occ)
    vol += (np.float32(grey) - vol) * brain
    wm_semi = (brain_semi[0] * 0.7, brain_semi[1] * 0.72, brain_semi[2] * 0.7)
    paint(vol, g, white, (c[0] + 8.0, c[1], c[2]), wm_semi, edge_mm=4.0, angle=tilt)
    # Interhemispheric falx: a thin dense sheet in the midline.
    paint(vol, g, 55.0, (c[0] + 10.0, c[1], c[2]), (brain_semi[0] * 0.8, brain_semi[1] * 0.95,
          0.9), edge_mm=0.8, angle=tilt, weight=0.7)
    # Lateral ventricles (and a slit third ventricle).
    vscale = float(anat.uniform(0.8, 1.5))
    vz = c[0] + float(anat.uniform(5, 15))
    for side in (-1.0, 1.0):
        paint(vol, g, csf, (vz, c[1] - 8.0, c[2] + side * 6.0 * vscale),
              (18.0 * vscale, 26.0 * vscale, 5.0 * vscale), edge_mm=1.5,
              angle=tilt - side * 0.18)
    paint(vol, g, csf, (vz - 15.0, c[1] + 2.0, c[2]), (8.0, 10.0, 1.5 * vscale), edge_mm=1.0)
    # Distractors: calcifications and the skull base.
    if anat.random() < 0.5:
        for side in (-1.0, 1.0):
            r = float(anat.uniform(1.0, 2.0))
            paint(vol, g, float(anat.uniform(100, 300)),
                  (vz, c[1] + 14.0 * vscale, c[2] + side * 9.0 * vscale), (r, r, r), edge_mm=1.0)
    if anat.random() < 0.4:
        r = float(anat.uniform(1.0, 2.0))
        paint(vol, g, float(anat.uniform(80, 250)), (vz - 12.0, c[1] + 22.0, c[2]), (r, r, r),
              edge_mm=1.0)
    z_base = float(g.z[0, 0, 0])
    for side in (-1.0, 1.0):
        paint(vol, g, float(anat.uniform(500, 900)),
              (z_base - 4.0, c[1] + float(anat.uniform(-5, 15)), c[2] + side * 38.0),
              (float(anat.uniform(5, 10)), 30.0, 8.0), edge_mm=2.0,
              angle=side * float(anat.uniform(0.4, 0.8)), weight=0.6)
    vol += smooth_field(anat, shape, (4, 8, 8)) * np.float32(1.5) * brain

    truth: dict[str, object] = {"slices": slices}
    if "intracranial_haemorrhage" in positives:
        truth["intracranial_haemorrhage"] = _haemorrhage(vol, g, bleed_rng, c, brain_semi,
                                                         brain, tilt)
    if "ischaemic_stroke" in positives:
        truth["ischaemic_stroke"] = _stroke(vol, g, stroke_rng, c, brain_semi, brain)

    pixels = to_stored(vol, noise_rng, noise=float(noise_rng.uniform(3.5, 6.0)), dtype=np.int16)
    return Phantom(
        pixels=pixels, modality="CT", body_part="HEAD", series_description="HEAD NC AXIAL 4MM",
        pixel_spacing=(pixel, pixel), slice_spacing=slice_mm, window=(40.0, 80.0),
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def _brain_point(rng: np.random.Generator, g: Grid3, c: tuple[float, float, float],
                 semi: Vec3, depth: float) -> tuple[float, float, float]:
    """A point inside the brain at up to ``depth`` of its radius, on an imaged slice where the
    brain cross-section is still large."""
    z_lo, z_hi = float(g.z[0, 0, 0]), float(g.z[-1, 0, 0])
    z = float(rng.uniform(max(z_lo + 8.0, c[0] - 0.55 * semi[0]),
                          min(z_hi - 8.0, c[0] + 0.55 * semi[0])))
    s = float(np.sqrt(max(1.0 - ((z - c[0]) / semi[0]) ** 2, 0.05)))
    ang = float(rng.uniform(0, 2 * np.pi))
    rad = depth * float(np.sqrt(rng.uniform(0.05, 1.0)))
    return z, c[1] + semi[1] * s * rad * float(np.sin(ang)), c[2] + semi[2] * s * rad * float(
        np.cos(ang))


def _haemorrhage(vol: np.ndarray, g: Grid3, rng: np.random.Generator,
                 c: tuple[float, float, float], semi: Vec3,
                 brain: np.ndarray, tilt: float) -> dict[str, object]:
    hu = float(rng.uniform(60, 90))
    if rng.random() < 0.65:
        diameter = float(np.exp(rng.uniform(np.log(14.0), np.log(40.0))))
        centre = _brain_point(rng, g, c, semi, 0.6 - diameter / 200.0)
        r = diameter / 2
        if rng.random() < 0.5:
            halo = float(rng.uniform(3, 6))
            box, occ = ellipsoid(g, centre, (r + halo, r + halo, r + halo), edge_mm=2.0)
            vol[box] -= np.float32(rng.uniform(6, 10)) * occ * brain[box]
        lobes = int(rng.integers(1, 4))
        for k in range(lobes):
            off = (0.0, 0.0, 0.0) if k == 0 else tuple(float(v) for v in
                                                       rng.uniform(-0.4, 0.4, 3) * r)
            axes = tuple(r * float(v) for v in rng.uniform(0.7, 1.0, 3))
            paint(vol, g, hu, (centre[0] + off[0], centre[1] + off[1], centre[2] + off[2]),
                  axes, edge_mm=1.2, angle=float(rng.uniform(0, np.pi)))
        return {"type": "intraparenchymal", "center_mm": [round(v, 1) for v in centre],
                "diameter_mm": round(diameter, 1), "hu": round(hu, 1)}
    # Subdural crescent: inside the brain envelope but outside the same ellipsoid shifted
    # medially by the thickness, limited to a band of slices.
    thick = float(rng.uniform(7, 16))
    side = float(rng.choice([-1.0, 1.0]))
    ap = float(rng.uniform(-0.3, 0.3))
    zc = float(rng.uniform(max(float(g.z[0, 0, 0]) + 10, c[0] - 0.4 * semi[0]),
                           min(float(g.z[-1, 0, 0]) - 10, c[0] + 0.5 * semi[0])))
    height = float(rng.uniform(30, 50))
    dirx, diry = -side * float(np.cos(ap)), -float(np.sin(ap))
    shifted = (c[0], c[1] + diry * thick, c[2] + dirx * thick)
    box, occ = ellipsoid(g, shifted, semi, edge_mm=1.2, angle=tilt)
    inside_shift = _full(g.shape, box, occ)
    zt = np.clip(1.0 - np.abs(g.z - np.float32(zc)) / np.float32(height), 0.0, 1.0)
    sided = (g.x - np.float32(c[2])) * np.float32(side) > 0
    crescent = np.clip(brain - inside_shift, 0.0, 1.0) * np.minimum(zt * 3.0, 1.0) * sided
    vol += (np.float32(hu) - vol) * crescent
    return {"type": "subdural", "side": "left" if side > 0 else "right",
            "max_thickness_mm": round(thick, 1), "center_z_mm": round(zc, 1),
            "height_mm": round(2 * height, 1), "hu": round(hu, 1)}


def _stroke(vol: np.ndarray, g: Grid3, rng: np.random.Generator,
            c: tuple[float, float, float], semi: Vec3,
            brain: np.ndarray) -> dict[str, object]:
    side = float(rng.choice([-1.0, 1.0]))
    centre_angle = (0.0 if side > 0 else np.pi) + float(rng.uniform(-0.5, 0.5))
    half = float(np.radians(rng.uniform(15, 35)))
    r_in = float(rng.uniform(0.3, 0.5))
    zc = float(rng.uniform(max(float(g.z[0, 0, 0]) + 10, c[0] - 0.3 * semi[0]),
                           min(float(g.z[-1, 0, 0]) - 10, c[0] + 0.45 * semi[0])))
    height = float(rng.uniform(12, 30))
    drop = float(rng.uniform(6, 12))
    s = np.sqrt(np.clip(1.0 - ((g.z - np.float32(c[0])) / np.float32(semi[0])) ** 2, 0.05, 1.0))
    px = (g.x - np.float32(c[2])) / np.float32(semi[2])
    py = (g.y - np.float32(c[1])) / np.float32(semi[1])
    rho = np.sqrt(px * px + py * py) / s
    diff = np.angle(np.exp(1j * (np.arctan2(py, px) - centre_angle))).astype(np.float32)
    w_ang = np.clip((half - np.abs(diff)) / np.float32(0.12) + 0.5, 0.0, 1.0)
    w_rad = np.clip((rho - np.float32(r_in)) / np.float32(0.08) + 0.5, 0.0, 1.0)
    w_z = np.clip((np.float32(height) - np.abs(g.z - np.float32(zc))) / np.float32(4.0) + 0.5,
                  0.0, 1.0)
    vol -= np.float32(drop) * (w_ang * w_rad * w_z * brain)
    return {"side": "left" if side > 0 else "right", "sector_deg": round(np.degrees(2 * half), 1),
            "inner_radius_fraction": round(r_in, 2), "center_z_mm": round(zc, 1),
            "height_mm": round(2 * height, 1), "drop_hu": round(drop, 1)}
