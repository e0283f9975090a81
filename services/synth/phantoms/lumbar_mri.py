"""Sagittal T2 lumbar-spine MRI phantom for the ``lumbar-mri`` service (disc herniation).

Series: MR "SAG T2 TSE", 32-40 sagittal slices (left to right) of 128x128, stored uint16
magnitude signal, pixel spacing 1.7-1.85 mm, slice spacing 1.5-2 mm, "LSPINE" body part. On a
slice rows run head to feet, columns front (left of the image) to back.

Anatomy (jittered per series), T2 TSE contrast: air ~0 (Rician floor) with >= 12 mm of air on
every side; a torso section with 8-15 mm of bright subcutaneous fat (700-850), muscle
(200-280), abdominal content (300-450, textured). The lumbar column follows a lordotic curve
(8-15 mm sag): six vertebral bodies (24-30 mm high, 32-38 mm deep, marrow 380-480 with dark
1.5 mm endplates), discs 7-12 mm high with a bright nucleus (650-900) inside a dark annulus
(~150); 30 % of discs are degenerated (nucleus 250-400, 30 % lower) -- a distractor. Behind
them the canal (14-17 mm AP, 20 mm wide) holds bright CSF (1000-1200) with darker nerve
roots; lateral slices show pedicles and foraminal fat, the outermost psoas/paraspinal muscle.
Every disc bulges 0.5-2.5 mm behind the vertebral line (a normal bulge, not a finding).

Lesion ``disc_herniation``: at one level (L4-5 45 %, L5-S1 35 %, L3-4 12 %, L2-3 / L1-2 8 %)
disc material protrudes 7-12 mm posteriorly beyond the vertebral line into the canal: an
ellipsoid 16-24 mm wide (left-right, central or paracentral: centre within 5 mm of the
midline, so it is seen on the central slices), 12-18 mm high (may migrate up to 3 mm), signal
150-400, i.e. dark against the CSF it displaces.
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import (
    child_rngs,
    make_grid,
    paint,
    smooth_field,
    to_stored,
)

SERVICE = "lumbar-mri"
FINDINGS: tuple[str, ...] = ("disc_herniation",)
PREVALENCE: dict[str, float] = {"disc_herniation": 0.3}

SIZE = 128
#: Discs from the top of the field down; index = level in LEVEL_NAMES.
LEVEL_NAMES = ("T12-L1", "L1-2", "L2-3", "L3-4", "L4-5", "L5-S1")
LEVEL_WEIGHTS = (0.0, 0.04, 0.04, 0.12, 0.45, 0.35)


def _band(t: np.ndarray, lo: float, hi: float, edge: float) -> np.ndarray:
    """Soft indicator of lo <= t <= hi with linear ramps ``edge`` wide."""
    e = np.float32(edge)
    return (np.clip((t - np.float32(lo)) / e + 0.5, 0.0, 1.0)
            * np.clip((np.float32(hi) - t) / e + 0.5, 0.0, 1.0)).astype(np.float32)


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One sagittal T2 lumbar series with exactly the findings in ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"not findings of {SERVICE}: {sorted(unknown)}")
    anat, lesion_rng, noise_rng = child_rngs(rng, 3)

    slices = int(anat.integers(32, 41))
    pixel = float(anat.uniform(1.7, 1.85))
    slice_mm = float(anat.uniform(1.5, 2.0))
    g = make_grid(slices, SIZE, SIZE, pixel, slice_mm)
    y = g.y[0]          # (H, 1) head (-) to feet (+)
    x = g.x[0]          # (1, W) front (-) to back (+)
    z = g.z[:, 0, 0]    # (D,)   right to left

    # Torso section and its layers (2-D, the same on every sagittal slice).
    by, bx = float(anat.uniform(-3, 3)), float(anat.uniform(-3, 3))
    semi_y, semi_x = float(anat.uniform(80, 88)), float(anat.uniform(72, 80))
    fat_th = float(anat.uniform(8, 15))
    rr = np.sqrt(((y - by) / semi_y) ** 2 + ((x - bx) / semi_x) ** 2)
    body = np.clip(0.5 - (rr - 1.0) * np.float32(semi_x / 1.5), 0.0, 1.0)
    inner = np.clip(0.5 - (rr - 1.0 + fat_th / semi_x) * np.float32(semi_x / 1.5), 0.0, 1.0)
    fat = float(anat.uniform(700, 850))
    muscle = float(anat.uniform(200, 280))
    gut = float(anat.uniform(300, 450))
    tex = smooth_field(anat, (1, SIZE, SIZE), (1, 10, 10))[0]
    base = body * (fat + inner * (gut + 60.0 * tex - fat))

    # Lumbar column: t = AP distance behind the posterior vertebral line, which curves.
    xs = bx + float(anat.uniform(10, 18))
    sag = float(anat.uniform(8, 15))
    line = xs + sag * (y / 80.0) ** 2 + float(anat.uniform(-0.08, 0.08)) * y
    t = x - line                                                      # (H, W)
    depth = float(anat.uniform(32, 38))
    canal_ap = float(anat.uniform(14, 17))
    vb_h = float(anat.uniform(24, 30))
    discs_h = anat.uniform(7, 12, size=len(LEVEL_NAMES))
    discs_h[-1] *= 0.8
    # Level centres from the bottom (L5-S1) upwards.
    y_bottom = by + float(anat.uniform(45, 60))
    disc_y = np.empty(len(LEVEL_NAMES))
    cur = y_bottom
    for k in range(len(LEVEL_NAMES) - 1, -1, -1):
        disc_y[k] = cur
        cur -= discs_h[k] / 2 + vb_h + (discs_h[k - 1] / 2 if k else 0)
    marrow = float(anat.uniform(380, 480))
    csf = float(anat.uniform(1000, 1200))

    column = _band(t, -depth, 0.0, 1.5)          # vertebral bodies and discs, AP band
    vert = np.full(y.shape, marrow, dtype=np.float32) + 30.0 * tex[:, :1]
    disc_occ = np.zeros_like(t)
    disc_val = np.zeros_like(t)
    degenerated = []
    for k in range(len(LEVEL_NAMES)):
        h = float(discs_h[k])
        is_degen = anat.random() < 0.3
        if is_degen:
            h *= 0.7
        degenerated.append(bool(is_degen))
        nucleus = float(anat.uniform(250, 400) if is_degen else anat.uniform(650, 900))
        bulge = float(anat.uniform(0.5, 2.5))
        dy = np.abs(y - np.float32(disc_y[k]))
        # The disc: an AP band from the front of the column to its (bulging) back.
        back = bulge * np.clip(1.0 - (dy / (h / 2)) ** 2, 0.0, 1.0)
        occ = _band(dy, -1.0, h / 2, 1.0) * _band(t, -depth, back, 1.2)
        core = _band(dy, -1.0, h / 2 - 2.0, 1.5) * _band(t, -depth + 4, -4.0, 2.0)
        disc_occ = np.maximum(disc_occ, occ)
        disc_val = np.where(occ > 0, 150.0 + (nucleus - 150.0) * core, disc_val)
        # Dark endplates just above and below the disc.
        plate = _band(dy, h / 2, h / 2 + 1.5, 0.8)
        vert = vert - (marrow - 80.0) * plate
    vert2d = column * vert                                           # (H, W) bodies only
    canal = _band(t, 1.5, 1.5 + canal_ap, 1.2)
    post = _band(t, 3.5 + canal_ap, 30.0 + canal_ap, 3.0)
    levels_y = disc_y[:, None, None] - (vb_h + discs_h[:, None, None]) / 2
    spinous = np.clip((np.abs((y[None] - levels_y)) < vb_h * 0.4).any(axis=0), 0, 1) * post

    # The column's part of three sagittal sections, blended across slices by LR position.
    spine_mask = np.clip(column + disc_occ, 0.0, 1.0)
    bodies = disc_occ * disc_val + (1.0 - disc_occ) * vert2d
    roots = 1.0 - 0.25 * _band(np.abs(t - 1.5 - canal_ap * 0.65), -1, 1.0, 1.0) \
        * (y > disc_y[1]).astype(np.float32)
    mid = spine_mask * bodies + canal * csf * roots + spinous * (marrow - 50)
    mid_mask = np.clip(spine_mask + canal + spinous, 0.0, 1.0)
    ped = spine_mask * bodies + canal * (fat * 0.9) + post * (marrow - 60)
    ped_mask = np.clip(spine_mask + canal + post, 0.0, 1.0)
    zs = float(anat.uniform(-3, 3))
    half_body = float(anat.uniform(20, 25))
    w_mid = _band(z - zs, -10.0, 10.0, 3.0)
    w_ped = _band(np.abs(z - zs), 10.0, half_body, 3.0)
    w_mid3, w_ped3 = w_mid[:, None, None], w_ped[:, None, None]
    lat_val = muscle
    spine_val = w_mid3 * mid + w_ped3 * ped
    spine_occ = w_mid3 * mid_mask + w_ped3 * ped_mask
    rest = 1.0 - spine_occ
    near = _band(t, -depth - 10, 32.0 + canal_ap, 6.0)              # psoas/paraspinal zone
    vol = body * (spine_val + rest * (near * lat_val + (1.0 - near) * base / np.maximum(body,
                                                                                        1e-3)))
    vol = vol.astype(np.float32)

    truth: dict[str, object] = {"slices": slices, "degenerated_discs": [
        name for name, d in zip(LEVEL_NAMES, degenerated, strict=True) if d]}
    if "disc_herniation" in positives:
        k = int(lesion_rng.choice(len(LEVEL_NAMES), p=LEVEL_WEIGHTS))
        ext = float(lesion_rng.uniform(7, 12))
        width = float(lesion_rng.uniform(16, 24))
        height = float(lesion_rng.uniform(12, 18))
        zc = zs + float(lesion_rng.uniform(-5, 5))
        yc = float(disc_y[k]) + float(lesion_rng.uniform(-3, 3))
        # The vertebral line at that height, so the ellipsoid starts at the disc's back.
        xc = float(np.interp(yc, y[:, 0], line[:, 0])) + ext / 2
        signal = float(lesion_rng.uniform(150, 400))
        paint(vol, g, signal, (zc, yc, xc), (width / 2, height / 2, ext / 2 + 1.0),
              edge_mm=1.2)
        truth["disc_herniation"] = {"level": LEVEL_NAMES[k], "protrusion_mm": round(ext, 1),
                                    "width_mm": round(width, 1), "height_mm": round(height, 1),
                                    "lr_offset_mm": round(zc - zs, 1), "signal": round(signal)}

    vol *= 1.0 + smooth_field(anat, g.shape, (2, 3, 3)) * np.float32(0.06)
    pixels = to_stored(vol, noise_rng, noise=float(noise_rng.uniform(8, 14)), dtype=np.uint16,
                       rician=True)
    return Phantom(
        pixels=pixels, modality="MR", body_part="LSPINE", series_description="SAG T2 TSE",
        pixel_spacing=(pixel, pixel), slice_spacing=slice_mm,
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )
