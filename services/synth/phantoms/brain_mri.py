"""Axial FLAIR brain MRI phantom for the ``brain-mri`` service (multiple-sclerosis lesions).

Series: MR "AX FLAIR", 32-40 axial slices of 128x128, stored uint16 magnitude signal
(MONOCHROME2, no rescale), pixel spacing 1.7-1.9 mm, 125-135 mm covered (slice spacing
3.1-4.2 mm), "HEAD" body part.

Anatomy (jittered per series), FLAIR contrast: air ~0 (Rician noise floor) with >= 14 mm of air
on every side; scalp fat 5-7 mm at 750-900; skull ~30 (dark); CSF suppressed (60-90) in the
subarachnoid rim and the ventricles; grey matter 420-480; white matter 8-16 % darker than grey;
lateral ventricles scaled x0.8-1.4. A smooth multiplicative bias field (+-6-12 %) and Rician
noise (sigma 8-14) as on a real magnitude image. Distractors that are NOT findings: thin
periventricular "caps" at the frontal horns (3-5 mm, 1.15-1.3 x white matter, 50 %) and 0-2
punctate non-specific white-matter hyperintensities (1.5-3 mm, 1.2-1.45 x white matter, 40 %).

Lesion ``ms_lesions``: 3-10 ovoid hyperintense foci ("Dawson's fingers"): long axis 5-12 mm
oriented radially, away from the ventricle, short axes 3.5-6 mm, signal 1.3-1.8 x white
matter, each centred 1-8 mm outside a lateral-ventricle wall at the ventricles' levels; with
20 % probability per lesion it is juxtacortical instead (deep white matter near the cortex).
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.volume import (
    Grid3,
    child_rngs,
    make_grid,
    paint,
    smooth_field,
    to_stored,
)

SERVICE = "brain-mri"
FINDINGS: tuple[str, ...] = ("ms_lesions",)
PREVALENCE: dict[str, float] = {"ms_lesions": 0.3}

SIZE = 128


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One axial FLAIR series with exactly the findings in ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"not findings of {SERVICE}: {sorted(unknown)}")
    anat, lesion_rng, noise_rng = child_rngs(rng, 3)

    # The scan covers a fixed anatomical range (as a protocol does): spacing = range / slices.
    slices = int(anat.integers(32, 41))
    pixel = float(anat.uniform(1.7, 1.9))
    slice_mm = float(anat.uniform(125, 135)) / slices
    g = make_grid(slices, SIZE, SIZE, pixel, slice_mm)
    shape = g.shape

    outer = (float(anat.uniform(85, 95)), float(anat.uniform(80, 86)), float(anat.uniform(64, 72)))
    c = (float(-anat.uniform(8, 12)), float(anat.uniform(-3, 3)), float(anat.uniform(-3, 3)))
    tilt = float(anat.uniform(-0.08, 0.08))
    grey = float(anat.uniform(420, 480))
    white = grey * float(anat.uniform(0.84, 0.92))
    csf = float(anat.uniform(60, 90))

    vol = np.zeros(shape, dtype=np.float32)
    paint(vol, g, float(anat.uniform(750, 900)), c,
          tuple(s + float(anat.uniform(5, 7)) for s in outer), edge_mm=1.5, angle=tilt)
    paint(vol, g, 30.0, c, outer, edge_mm=1.5, angle=tilt)
    inner = tuple(s - float(anat.uniform(5, 8)) for s in outer)
    paint(vol, g, csf, c, inner, edge_mm=1.5, angle=tilt)
    brain_semi = tuple(s - float(anat.uniform(1.5, 3.0)) for s in inner)
    paint(vol, g, grey, c, brain_semi, edge_mm=1.5, angle=tilt)
    wm_semi = (brain_semi[0] * 0.7, brain_semi[1] * 0.72, brain_semi[2] * 0.7)
    paint(vol, g, white, (c[0] + 8.0, c[1], c[2]), wm_semi, edge_mm=4.0, angle=tilt)

    vscale = float(anat.uniform(0.8, 1.4))
    vz = c[0] + float(anat.uniform(5, 15))
    ventricles = []
    for side in (-1.0, 1.0):
        centre = (vz, c[1] - 8.0, c[2] + side * 6.0 * vscale)
        semi = (18.0 * vscale, 26.0 * vscale, 5.0 * vscale)
        angle = tilt - side * 0.18
        paint(vol, g, csf, centre, semi, edge_mm=1.5, angle=angle)
        ventricles.append((centre, semi, angle))
    if anat.random() < 0.5:
        for centre, semi, angle in ventricles:
            # Frontal-horn tip (anterior end of the long axis).
            ty = centre[1] - semi[1] * float(np.cos(angle))
            tx = centre[2] + semi[1] * float(np.sin(angle))
            r = float(anat.uniform(1.5, 2.5))
            paint(vol, g, white * float(anat.uniform(1.15, 1.3)), (centre[0], ty - r, tx),
                  (r * 1.5, r, r * 1.3), edge_mm=1.5)
    if anat.random() < 0.4:
        for _ in range(int(anat.integers(1, 3))):
            p = _white_matter_point(anat, g, c, wm_semi, deep=False)
            r = float(anat.uniform(0.75, 1.5))
            paint(vol, g, white * float(anat.uniform(1.2, 1.45)), p, (r, r, r), edge_mm=1.0)

    truth: dict[str, object] = {"slices": slices}
    if "ms_lesions" in positives:
        truth["ms_lesions"] = _lesions(vol, g, lesion_rng, c, wm_semi, ventricles, white)

    bias = 1.0 + smooth_field(anat, shape, (2, 3, 3)) * np.float32(anat.uniform(0.06, 0.12))
    vol *= bias
    pixels = to_stored(vol, noise_rng, noise=float(noise_rng.uniform(8, 14)), dtype=np.uint16,
                       rician=True)
    return Phantom(
        pixels=pixels, modality="MR", body_part="HEAD", series_description="AX FLAIR",
        pixel_spacing=(pixel, pixel), slice_spacing=slice_mm,
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def _white_matter_point(rng: np.random.Generator, g: Grid3, c: tuple[float, float, float],
                        wm: tuple[float, float, float], *, deep: bool
                        ) -> tuple[float, float, float]:
    """A point in the white-matter ellipsoid, near its edge (subcortical) unless ``deep``."""
    z_lo, z_hi = float(g.z[0, 0, 0]) + 6.0, float(g.z[-1, 0, 0]) - 6.0
    z = float(rng.uniform(max(z_lo, c[0] + 8.0 - 0.6 * wm[0]), min(z_hi, c[0] + 8.0 + 0.6 * wm[0])))
    s = float(np.sqrt(max(1.0 - ((z - c[0] - 8.0) / wm[0]) ** 2, 0.1)))
    ang = float(rng.uniform(0, 2 * np.pi))
    rad = float(rng.uniform(0.3, 0.6) if deep else rng.uniform(0.7, 0.9))
    return z, c[1] + wm[1] * s * rad * float(np.sin(ang)), c[2] + wm[2] * s * rad * float(
        np.cos(ang))


def _lesions(vol: np.ndarray, g: Grid3, rng: np.random.Generator, c: tuple[float, float, float],
             wm: tuple[float, float, float],
             ventricles: list[tuple[tuple[float, float, float], tuple[float, float, float], float]],
             white: float) -> dict[str, object]:
    count = int(rng.integers(3, 11))
    placed = []
    for _ in range(count):
        long_axis = float(rng.uniform(5, 12))
        short = float(rng.uniform(3.5, 6))
        signal = white * float(rng.uniform(1.3, 1.8))
        if rng.random() < 0.2:
            p = _white_matter_point(rng, g, c, wm, deep=False)
            angle = float(rng.uniform(0, np.pi))
            kind = "juxtacortical"
        else:
            (vz, vy, vx), (sz, sy, sx), vang = ventricles[int(rng.integers(0, 2))]
            # A point on the ventricle's outer wall, pushed 1-8 mm further out, radially.
            t = float(rng.uniform(-0.8, 0.8))
            phi = float(rng.uniform(-1.2, 1.2))
            side = 1.0 if vx > c[2] else -1.0
            ly, lx = sy * t, sx * float(np.sqrt(max(1 - t * t, 0.05))) * side
            ca, sa = float(np.cos(vang)), float(np.sin(vang))
            wy, wx = vy + ly * ca + lx * sa, vx - ly * sa + lx * ca
            dy, dx = wy - vy, wx - vx
            norm = float(np.hypot(dy, dx)) or 1.0
            gap = float(rng.uniform(1, 8)) + long_axis / 2
            z = vz + sz * 0.6 * phi / 1.2
            p = (z, wy + dy / norm * gap, wx + dx / norm * gap)
            angle = float(np.arctan2(dx, dy))  # long axis (y after rotation) points radially
            kind = "periventricular"
        paint(vol, g, signal, p, (short * 0.9, long_axis / 2, short / 2), edge_mm=1.2,
              angle=-angle)
        placed.append({"kind": kind, "center_mm": [round(v, 1) for v in p],
                       "long_mm": round(long_axis, 1), "short_mm": round(short, 1),
                       "signal_vs_wm": round(signal / white, 2)})
    return {"count": count, "lesions": placed}

