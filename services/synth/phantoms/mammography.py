"""Synthetic screening mammograms (one CC or MLO view), with masses and calcification clusters.

Anatomy (256 rows x 192 columns, 12-bit MONOCHROME2, pixel spacing 0.4..0.5 mm): a compressed
breast as a half-ellipse against the chest wall (left or right image edge, inside a >= 7.5 %
collimated air ring), thinning towards the skin line (the periphery is darker), a pectoral
muscle triangle in the upper chest-wall corner on MLO views, and fibroglandular tissue as
blotchy two-scale smooth texture concentrated behind the nipple, with a breast density drawn per
image from almost fatty (0.15) to extremely dense (0.7) so masses may hide in dense tissue.
Distractors on every image: 0..3 isolated benign specks (single bright dots of the same kind as
calcifications but scattered, never clustered) and 0..2 smooth round benign densities
(cyst-like, 3..7 px, faint). Per image jitter: breast size and position, view, exposure gain,
offset and noise.

Findings:
- ``breast_mass``: one dense mass with irregular margins inside the fibroglandular region:
  radius 4..11 px (2..5.5 mm) modulated by 3..6 random angular harmonics (lobulation, up to
  +-30 %), a dome profile, peak extra attenuation 0.035..0.13 (skewed to subtle, Beta(1.3, 2));
  half of them carry 4..9 thin radiating spicules (1 px wide, 1.2..2.2 x the radius long,
  40 % of the mass contrast).
- ``breast_calcifications``: a cluster of 5..14 tiny very bright specks (Gaussian,
  sigma 0.45..0.8 px, peak 0.06..0.25 extra attenuation each, pleomorphic) within a disc of
  radius 5..13 px somewhere in the breast.
"""

from __future__ import annotations

import math

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.radiograph import (
    collimation,
    ellipse_px,
    expose,
    fast_noise,
    pixel_grid,
    soft_step,
)

SERVICE = "mammography"
FINDINGS: tuple[str, ...] = ("breast_mass", "breast_calcifications")
PREVALENCE: dict[str, float] = {"breast_mass": 0.3, "breast_calcifications": 0.3}

ROWS, COLS = 256, 192


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One mammogram view; plants each finding in ``positives``."""
    x, y = pixel_grid(ROWS, COLS)
    chest_left = rng.random() < 0.5
    view = "MLO" if rng.random() < 0.6 else "CC"
    # Work in a frame where the chest wall is on the left; mirror at the end if needed.
    wall = COLS * 0.09
    depth = float(rng.uniform(0.62, 0.8)) * COLS
    half_h = float(rng.uniform(0.34, 0.42)) * ROWS
    cy = ROWS / 2 + float(rng.uniform(-10, 10))
    breast = ellipse_px(x, y, wall, cy, depth, half_h, edge=1.5)
    # Radial coordinate inside the breast (0 centre of chest wall, 1 skin).
    rr = np.sqrt(((x - wall) / depth) ** 2 + ((y - cy) / half_h) ** 2)
    thickness = np.clip(1.0 - rr**6, 0.0, 1.0)
    atten = 0.32 * breast * (0.55 + 0.45 * thickness)

    density = float(rng.uniform(0.15, 0.7))
    gland_zone = ellipse_px(x, y, wall + 0.35 * depth, cy, 0.55 * depth, 0.7 * half_h, edge=12)
    texture = 0.6 * fast_noise(rng, (ROWS, COLS), 14.0) + 0.4 * fast_noise(rng, (ROWS, COLS), 5.0)
    level = texture + (density - 0.4) * 2.0
    gland = 0.5 * (level + np.sqrt(level * level + 0.08)) * gland_zone * breast  # soft ReLU
    atten = atten + 0.06 * gland
    if view == "MLO":
        pect = soft_step((x - wall) / (0.35 * depth) + (y - cy + half_h) / (0.55 * half_h) - 1.0,
                         0.04)
        atten = atten + 0.08 * pect * breast

    inner = np.flatnonzero(((rr < 0.8) & (x > wall + 6)).ravel())
    truth: dict[str, object] = {"view": view, "density": round(density, 2)}

    def spot(g: np.random.Generator) -> tuple[float, float]:
        r, c = divmod(int(g.choice(inner)), COLS)
        return float(c), float(r)

    for _ in range(int(rng.integers(0, 3))):  # isolated benign specks
        bx, by = spot(rng)
        atten = atten + float(rng.uniform(0.1, 0.4)) * _speck(x, y, bx, by, 0.6)
    for _ in range(int(rng.integers(0, 3))):  # smooth cyst-like densities
        bx, by = spot(rng)
        r = float(rng.uniform(3, 7))
        atten = atten + float(rng.uniform(0.01, 0.04)) * ellipse_px(x, y, bx, by, r, r, edge=1.5)

    # Each finding draws from its own generator, taken whether or not it is planted, so the
    # same seed renders the same breast with and without it (the tests rely on this).
    mass_rng, calc_rng = (np.random.default_rng(int(rng.integers(0, 2**63))) for _ in range(2))
    if "breast_mass" in positives:
        gland_pts = np.flatnonzero(((rr < 0.75) & (gland_zone > 0.5) & (x > wall + 10)).ravel())
        r0, c0 = divmod(int(mass_rng.choice(gland_pts if gland_pts.size else inner)), COLS)
        mx, my = float(c0), float(r0)
        radius = float(mass_rng.uniform(6, 15))
        contrast = 0.08 + 0.12 * float(mass_rng.beta(1.3, 2.0))
        atten = atten + contrast * _irregular_mass(mass_rng, x, y, mx, my, radius)
        truth["breast_mass"] = {"center": [mx, my], "radius_px": round(radius, 1),
                                "contrast": round(contrast, 3)}
    if "breast_calcifications" in positives:
        kx, ky = spot(calc_rng)
        spread = float(calc_rng.uniform(4, 10))
        n = int(calc_rng.integers(6, 17))
        for _ in range(n):
            rad = spread * math.sqrt(float(calc_rng.random()))
            th = float(calc_rng.uniform(0, 2 * math.pi))
            atten = atten + float(calc_rng.uniform(0.25, 0.8)) * _speck(
                x, y, kx + rad * math.cos(th), ky + rad * math.sin(th),
                float(calc_rng.uniform(0.45, 0.8)))
        truth["breast_calcifications"] = {"center": [kx, ky], "radius_px": round(spread, 1),
                                          "count": n}

    if not chest_left:
        atten = atten[:, ::-1]
        for key in ("breast_mass", "breast_calcifications"):
            item = truth.get(key)
            if isinstance(item, dict):
                item["center"] = [COLS - 1 - item["center"][0], item["center"][1]]
    pixels = expose(rng, np.ascontiguousarray(atten), collimation((ROWS, COLS), rng),
                    gain=(4500.0, 6000.0), noise=(6.0, 16.0))
    spacing = round(float(rng.uniform(0.4, 0.5)), 3)
    laterality = "R" if chest_left else "L"
    # The device's "for presentation" window: from the fatty periphery to well above the
    # densest gland, so calcifications stay brighter than dense tissue instead of clipping.
    tissue = pixels[0][pixels[0] > 0.25 * float(pixels.max())]
    lo, hi = np.percentile(tissue, [2.0, 99.0])
    width = 1.6 * float(hi - lo)
    window = (float(lo) + width / 2.0, width)
    return Phantom(
        pixels=pixels, modality="MG", body_part="BREAST",
        series_description=f"{laterality} {view}",
        pixel_spacing=(spacing, spacing), window=window,
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def _speck(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
    """One calcification: a tiny Gaussian dot, computed only in its 9x9 neighbourhood."""
    out = np.zeros(x.shape, dtype=np.float32)
    r0, c0 = round(cy), round(cx)
    rs = slice(max(r0 - 4, 0), min(r0 + 5, x.shape[0]))
    cs = slice(max(c0 - 4, 0), min(c0 + 5, x.shape[1]))
    out[rs, cs] = np.exp(-((x[rs, cs] - cx) ** 2 + (y[rs, cs] - cy) ** 2) / (2 * sigma * sigma))
    return out


def _irregular_mass(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cx: float,
                    cy: float, radius: float) -> np.ndarray:
    """Lobulated dome of about ``radius`` px, optionally spiculated; peak 1."""
    dx, dy = x - cx, y - cy
    theta = np.arctan2(dy, dx)
    r_edge = np.ones_like(theta)
    for k in range(3, 3 + int(rng.integers(1, 4))):
        r_edge = r_edge + float(rng.uniform(0.0, 0.12)) * np.cos(k * theta
                                                                 + float(rng.uniform(0, 6.3)))
    r = np.sqrt(dx * dx + dy * dy) / (radius * r_edge)
    out = soft_step(r - 1.0, 0.12) * np.sqrt(np.clip(1.0 - 0.6 * r * r, 0.0, None))
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(4, 10))):
            ang = float(rng.uniform(0, 2 * math.pi))
            length = radius * float(rng.uniform(1.2, 2.2))
            along = dx * math.cos(ang) + dy * math.sin(ang)
            across = -dx * math.sin(ang) + dy * math.cos(ang)
            spic = np.exp(-(across**2)) * soft_step(np.abs(along - length / 2) - length / 2, 1.0)
            out = np.maximum(out, 0.4 * spic)
    return out.astype(np.float32)
