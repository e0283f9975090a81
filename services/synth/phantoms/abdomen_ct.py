"""Non-contrast abdominal CT phantom for the ``abdomen-ct`` service (kidney stones).

Series: axial CT, 32-40 slices of 128x128, stored int16 HU (slope 1, intercept 0), pixel
spacing 1.85-1.98 mm, slice spacing 3-4 mm, "ABDOMEN" body part, from the liver dome (top
slices) down through both kidneys.

Anatomy (jittered per series): air (-1000 HU) with >= 14 mm of air on every side; a body of
subcutaneous fat (-100) 10-18 mm thick, a 6-10 mm muscle wall (45), intra-abdominal fat (-90);
liver (55-65) and spleen (45-50) in the upper slices; both kidneys (bean-shaped ellipsoids
90-110 mm long, 30-35 HU, right one 10-15 mm lower) with medial renal-sinus fat (-60); psoas
muscles; a lumbar vertebra (cancellous 180-280 HU inside a 2 mm 700-1000 HU cortex, discs of
80 HU every ~30 mm) with its canal and posterior arch; aorta (r 9-12 mm) and IVC at 40 HU;
6-12 bowel loops (20-40 HU) holding gas bubbles (-1000, 3-12 mm) and mottled faeces.
Distractors that are NOT findings: 0-6 aortic-wall calcifications (1.5-4 mm, 300-1000 HU,
60 %), rib cross-sections (400-800 HU) at the body wall, the vertebral cortex, and
0-2 small dense bowel-content flecks (150-350 HU, 30 %). Noise sigma 8-14 HU.

Lesion ``kidney_stone``: 1-2 stones, each a round focus 3-8 mm in diameter, 350-1200 HU,
inside one kidney (collecting system or parenchyma, not the sinus fat edge). Each slice
records the part of the stone inside its thickness (partial volume), so a stone shows on 1-3
slices, and a small stone at a slice gap is fainter than its true density.
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

SERVICE = "abdomen-ct"
FINDINGS: tuple[str, ...] = ("kidney_stone",)
PREVALENCE: dict[str, float] = {"kidney_stone": 0.3}

SIZE = 128
AIR = -1000.0

Kidney = tuple[tuple[float, float, float], tuple[float, float, float], float]


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One abdominal CT series with exactly the findings in ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"not findings of {SERVICE}: {sorted(unknown)}")
    anat, stone_rng, noise_rng = child_rngs(rng, 3)

    slices = int(anat.integers(32, 41))
    pixel = float(anat.uniform(1.85, 1.98))
    slice_mm = float(anat.uniform(3.0, 4.0))
    g = make_grid(slices, SIZE, SIZE, pixel, slice_mm)
    shape = g.shape
    z_top, z_bot = float(g.z[0, 0, 0]), float(g.z[-1, 0, 0])
    long_z = 400.0  # semi-axis along z for structures that run through every slice

    semi_y, semi_x = float(anat.uniform(66, 74)), float(anat.uniform(88, 96))
    cy, cx = float(anat.uniform(0, 5)), float(anat.uniform(-3, 3))
    vol = np.full(shape, AIR, dtype=np.float32)
    paint(vol, g, -100.0, (0, cy, cx), (long_z, semi_y, semi_x), edge_mm=1.5)
    fat_th = float(anat.uniform(10, 18))
    wall = (long_z, semi_y - fat_th * 0.6, semi_x - fat_th)
    paint(vol, g, 45.0, (0, cy, cx), wall, edge_mm=1.5)
    wall_th = float(anat.uniform(6, 10))
    cavity = (long_z, wall[1] - wall_th, wall[2] - wall_th)
    paint(vol, g, -90.0, (0, cy, cx), cavity, edge_mm=1.5)

    # Liver (patient right = image left, x < 0) and spleen, in the upper slices.
    liver_z = z_top - float(anat.uniform(0, 20))
    paint(vol, g, float(anat.uniform(55, 65)), (liver_z, cy - 5, cx - 40),
          (float(anat.uniform(60, 80)), cavity[1] * 0.85, 55.0), edge_mm=2.0)
    paint(vol, g, float(anat.uniform(45, 50)), (z_top + 10, cy + 20, cx + cavity[2] - 25),
          (40.0, 30.0, 18.0), edge_mm=2.0, angle=0.5)

    # Spine, canal, posterior arch, psoas.
    sy = cy + semi_y - float(anat.uniform(45, 52))
    paint(vol, g, float(anat.uniform(700, 1000)), (0, sy, cx), (long_z, 15.0, 18.0), edge_mm=1.0)
    paint(vol, g, float(anat.uniform(180, 280)), (0, sy, cx), (long_z, 13.0, 16.0), edge_mm=1.0)
    disc_phase = float(anat.uniform(0, 30))
    for zd in np.arange(z_top - 30 + disc_phase, z_bot + 30, 30.0):
        paint(vol, g, 80.0, (float(zd), sy, cx), (4.0, 15.5, 18.5), edge_mm=1.5)
    paint(vol, g, float(anat.uniform(500, 800)), (0, sy + 25, cx), (long_z, 9.0, 14.0),
          edge_mm=1.0)
    paint(vol, g, 10.0, (0, sy + 20, cx), (long_z, 5.0, 6.0), edge_mm=1.0)
    for side in (-1.0, 1.0):
        paint(vol, g, 45.0, (z_bot + 40, sy - 2, cx + side * 28), (110.0, 12.0, 11.0),
              edge_mm=1.5)

    # Vessels, with aortic-wall calcifications as distractors.
    ar = float(anat.uniform(9, 12))
    ay, ax = sy - 22 - ar, cx + 12.0
    paint(vol, g, 40.0, (0, ay, ax), (long_z, ar, ar), edge_mm=1.0)
    paint(vol, g, 40.0, (0, ay + 4, cx - 18.0), (long_z, 8.0, 12.0), edge_mm=1.0)
    calcs = 0
    if anat.random() < 0.6:
        calcs = int(anat.integers(1, 7))
        for _ in range(calcs):
            a = float(anat.uniform(0, 2 * np.pi))
            r = float(anat.uniform(0.75, 2.0))
            paint(vol, g, float(anat.uniform(300, 1000)),
                  (float(anat.uniform(z_top, z_bot)), ay + ar * float(np.sin(a)),
                   ax + ar * float(np.cos(a))), (r * 1.5, r, r), edge_mm=0.8)

    # Kidneys (drawn after the liver so they sit in front of it) with sinus fat.
    kidneys: list[Kidney] = []
    kz = float(anat.uniform(-15, 15))
    for side in (-1.0, 1.0):
        centre = (kz + (12.0 if side < 0 else 0.0), sy - float(anat.uniform(0, 8)),
                  cx + side * float(anat.uniform(45, 55)))
        semi = (float(anat.uniform(45, 55)), float(anat.uniform(22, 28)),
                float(anat.uniform(22, 27)))
        angle = side * float(anat.uniform(0.3, 0.6))
        paint(vol, g, float(anat.uniform(30, 35)), centre, semi, edge_mm=1.5, angle=angle)
        paint(vol, g, -60.0, (centre[0], centre[1], centre[2] - side * semi[2] * 0.55),
              (semi[0] * 0.55, semi[1] * 0.4, semi[2] * 0.35), edge_mm=2.0, angle=angle)
        kidneys.append((centre, semi, angle))

    # Ribs at the body wall in the upper half.
    for side in (-1.0, 1.0):
        for k in range(int(anat.integers(1, 3))):
            a = float(anat.uniform(0.2, 1.2))
            paint(vol, g, float(anat.uniform(400, 800)),
                  (z_top + 10 + 25 * k + float(anat.uniform(-5, 5)),
                   cy + (wall[1] - 4) * float(np.sin(a)), cx + side * (wall[2] - 4) * float(
                       np.cos(a))), (6.0, 4.0, 6.0), edge_mm=1.0)

    # Bowel loops with gas and faeces.
    for _ in range(int(anat.integers(6, 13))):
        a = float(anat.uniform(np.pi * 1.05, np.pi * 1.95))
        rad = float(anat.uniform(0.2, 0.75))
        centre = (float(anat.uniform(z_top, z_bot)), cy + cavity[1] * rad * float(np.sin(a)),
                  cx + cavity[2] * rad * float(np.cos(a)))
        r = float(anat.uniform(10, 18))
        paint(vol, g, float(anat.uniform(20, 40)), centre, (r * 1.5, r, r), edge_mm=1.5)
        for _ in range(int(anat.integers(0, 3))):
            gr = float(anat.uniform(1.5, 6))
            off = anat.uniform(-0.5, 0.5, 3) * r
            paint(vol, g, AIR, (centre[0] + float(off[0]), centre[1] + float(off[1]),
                               centre[2] + float(off[2])), (gr, gr, gr), edge_mm=1.0)
    flecks = 0
    if anat.random() < 0.3:
        flecks = int(anat.integers(1, 3))
        for _ in range(flecks):
            a = float(anat.uniform(np.pi * 1.1, np.pi * 1.9))
            r = float(anat.uniform(1.0, 2.0))
            paint(vol, g, float(anat.uniform(150, 350)),
                  (float(anat.uniform(z_top, z_bot)), cy + cavity[1] * 0.5 * float(np.sin(a)),
                   cx + cavity[2] * 0.5 * float(np.cos(a))), (r, r, r), edge_mm=0.8)
    vol += smooth_field(anat, shape, (4, 8, 8)) * np.float32(4.0)

    truth: dict[str, object] = {"slices": slices, "aortic_calcifications": calcs,
                                "dense_flecks": flecks}
    if "kidney_stone" in positives:
        truth["kidney_stone"] = _stones(vol, g, stone_rng, kidneys)

    pixels = to_stored(vol, noise_rng, noise=float(noise_rng.uniform(8, 14)), dtype=np.int16)
    return Phantom(
        pixels=pixels, modality="CT", body_part="ABDOMEN", series_description="ABD NC AXIAL",
        pixel_spacing=(pixel, pixel), slice_spacing=slice_mm, window=(40.0, 400.0),
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def _stones(vol: np.ndarray, g: Grid3, rng: np.random.Generator,
            kidneys: list[Kidney]) -> dict[str, object]:
    """Plant 1-2 stones with slice-thickness partial volume; return their description."""
    placed = []
    for _ in range(int(rng.integers(1, 3))):
        side = int(rng.integers(0, 2))
        (kz, ky, kx), (sz, sy, sx), angle = kidneys[side]
        d = float(rng.uniform(3.0, 8.0))
        hu = float(rng.uniform(350, 1200))
        # A point well inside the kidney ellipsoid (its own frame), then rotated in-plane.
        u = rng.uniform(-0.6, 0.6, 3)
        pz, py, px = kz + sz * float(u[0]), sy * float(u[1]) * 0.8, sx * float(u[2]) * 0.6
        c, s = float(np.cos(angle)), float(np.sin(angle))
        cy, cx = ky + py * c + px * s, kx - py * s + px * c
        # Fraction of each slice's thickness that the stone occupies, times an in-plane disk.
        zc = pz
        lo = np.maximum(g.z - g.slice_mm / 2, zc - d / 2)
        hi = np.minimum(g.z + g.slice_mm / 2, zc + d / 2)
        frac = np.clip((hi - lo) / g.slice_mm, 0.0, 1.0)                    # (D, 1, 1)
        ks = np.nonzero(frac[:, 0, 0] > 0)[0]
        disk = np.zeros((1, *g.shape[1:]), dtype=np.float32)
        paint(disk, Grid3(z=np.zeros((1, 1, 1), np.float32), y=g.y, x=g.x,
                          pixel_mm=g.pixel_mm, slice_mm=g.slice_mm),
              1.0, (0.0, cy, cx), (1.0, d / 2, d / 2), edge_mm=min(1.0, d / 3))
        sub = vol[ks]
        sub += (np.float32(hu) - sub) * (frac[ks] * disk)
        vol[ks] = sub
        placed.append({"side": "right" if side == 0 else "left", "diameter_mm": round(d, 1),
                       "hu": round(hu), "center_mm": [round(zc, 1), round(cy, 1), round(cx, 1)],
                       "slices": [int(k) for k in ks]})
    return {"count": len(placed), "stones": placed}
