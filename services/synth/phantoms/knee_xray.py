"""Synthetic frontal (AP) knee radiographs, with or without osteoarthritis.

Anatomy (256x256, 12-bit MONOCHROME2, pixel spacing 0.55..0.8 mm): a soft-tissue leg over an
air background collimated to a >= 7.5 % air ring; the distal femur (shaft flaring to a
metaphysis and two rounded condyles with an intercondylar notch), a faint patella over the
femur, the proximal tibia (a rounded-rectangle plateau with two tibial spines, tapering to the
shaft) and the fibular head and shaft on the lateral side. Bones have a brighter cortical rim
and trabecular texture. Per image jitter: knee centre +-8 px, joint line +-10 px, scale
0.9..1.1, left/right knee, normal joint spaces 6..9 px per compartment (independently, so a
healthy knee is somewhat asymmetric), exposure gain, offset and noise.

Finding ``knee_osteoarthritis`` (one severity ``s`` ~ U(0, 1) drives all three signs, so mild
cases are subtle):
- joint-space narrowing of ONE compartment (medial 80 %, lateral 20 %; the tibial plateau rises
  towards the femur): its gap becomes
  ``normal * (0.8 - 0.6 s)`` (about 1..7 px instead of 6..9 px);
- marginal osteophytes: 1..4 small bright spurs (ellipses of ``1.5 + 4 s`` x ``1 + 2 s`` px,
  density 0.25..0.45) poking out of the plateau and condyle margins of that compartment;
- subchondral sclerosis: a bright band 3..6 px thick under that tibial plateau, extra density
  ``0.04 + 0.16 s``.
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.radiograph import (
    bone,
    collimation,
    ellipse_px,
    expose,
    fast_noise,
    pixel_grid,
    shading,
    soft_step,
    superellipse_px,
)

SERVICE = "knee-xray"
FINDINGS: tuple[str, ...] = ("knee_osteoarthritis",)
PREVALENCE: dict[str, float] = {"knee_osteoarthritis": 0.3}

SIZE = 256
#: Normal joint-space width per compartment, pixels at scale 1.
NORMAL_GAP_PX = (6.0, 9.0)


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One AP knee radiograph; plants osteoarthritis when ``knee_osteoarthritis`` is positive."""
    oa = "knee_osteoarthritis" in positives
    x, y = pixel_grid(SIZE, SIZE)
    s = float(rng.uniform(0.9, 1.1))
    cx = SIZE / 2 + float(rng.uniform(-8, 8))
    j = SIZE / 2 + float(rng.uniform(-10, 10))
    lat = 1.0 if rng.random() < 0.5 else -1.0  # image side of the lateral compartment
    gaps = {side: float(rng.uniform(*NORMAL_GAP_PX)) * s for side in (-1.0, 1.0)}
    normal = dict(gaps)  # the femur keeps its place; narrowing raises the tibial plateau
    truth: dict[str, object] = {"laterality": "R" if lat > 0 else "L",
                                "joint_center": [round(cx, 1), round(j, 1)]}
    # The finding draws from its own generator, taken whether or not it is planted, so the
    # same seed renders the same knee with and without it (the tests rely on this).
    frng = np.random.default_rng(int(rng.integers(0, 2**63)))
    severity = 0.0
    narrowed = 0.0
    if oa:
        severity = float(frng.uniform(0.0, 1.0))
        narrowed = -lat if frng.random() < 0.8 else lat
        gaps[narrowed] *= 0.8 - 0.6 * severity
        truth.update(compartment="medial" if narrowed == -lat else "lateral",
                     image_side=int(narrowed), severity=round(severity, 3),
                     gap_px=round(gaps[narrowed], 2))

    # Soft tissue: the leg, slightly wider at the knee.
    soft = 0.42 * ellipse_px(x, y, cx, j, 74 * s * float(rng.uniform(0.95, 1.1)), 230, edge=3)
    tex = fast_noise(rng, (SIZE, SIZE), 3.0)

    # Joint line per compartment: condyle bottoms at j - gap/2, plateau top at j + gap/2.
    blend = 0.5 + 0.5 * np.tanh((x - cx) / 4.0)  # 0 on the image-left side, 1 on the right
    femur_bottom = j - 0.5 * (normal[-1.0] * (1 - blend) + normal[1.0] * blend)
    plateau_top = femur_bottom + gaps[-1.0] * (1 - blend) + gaps[1.0] * blend

    femur = np.maximum(ellipse_px(x, y, cx, j - 130 * s, 27 * s, 110 * s, edge=1.2),
                       ellipse_px(x, y, cx, j - 48 * s, 52 * s, 58 * s, edge=1.2))
    for side in (-1.0, 1.0):
        ay = 22 * s
        cond = ellipse_px(x, y, cx + side * 31 * s, j - normal[side] / 2 - ay, 30 * s, ay,
                          edge=1.0)
        femur = np.maximum(femur, cond)
    femur = femur * soft_step(y - femur_bottom, 1.0)  # nothing of the femur below the gap
    notch = ellipse_px(x, y, cx, j - 6 * s, 8 * s, 15 * s, edge=2.0)
    femur = femur * (1.0 - 0.55 * notch)

    tibia = superellipse_px(x, y, cx, j + 14 * s, 59 * s, 66 * s, power=2.6, edge=1.2)
    tibia = np.maximum(tibia, ellipse_px(x, y, cx + lat * 3 * s, j + 150 * s, 24 * s, 105 * s))
    for side in (-1.0, 1.0):  # tibial spines rise into the notch
        spine_y = j + 0.25 * (normal[-1.0] + normal[1.0]) - 3 * s
        tibia = np.maximum(tibia, ellipse_px(x, y, cx + side * 6 * s, spine_y, 4.5 * s, 7 * s))
    tibia = tibia * soft_step(plateau_top - y - 6 * s * _spine_zone(x, cx, s), 1.0)
    fibula = np.maximum(ellipse_px(x, y, cx + lat * 54 * s, j + 44 * s, 13 * s, 15 * s),
                        ellipse_px(x, y, cx + lat * 58 * s, j + 150 * s, 8 * s, 100 * s))
    patella = ellipse_px(x, y, cx + float(rng.uniform(-6, 6)), j - 40 * s, 25 * s, 29 * s, edge=6)

    dens = float(rng.uniform(0.30, 0.40))
    atten = soft + bone(femur, dens, 0.25, 2.0, tex) + bone(tibia, dens, 0.25, 2.0, tex)
    atten = atten + bone(fibula, 0.8 * dens, 0.2, 2.0, tex) + 0.12 * patella

    if oa:
        side = narrowed
        sx = cx + side * 58 * s  # outer margin of that compartment
        top = j - normal[side] / 2 + gaps[side]  # this compartment's plateau
        depth = float(frng.uniform(3, 6))
        sclerosis = ((0.04 + 0.16 * severity) * tibia * soft_step(y - (top + depth), 1.0)
                     * soft_step(-side * (x - cx), 3.0))
        atten = atten + sclerosis
        n_spurs = int(frng.integers(1, 5))
        spots = []
        for k in range(n_spurs):
            on_tibia = k % 2 == 0
            sy = j - normal[side] / 2 + (gaps[side] + 1.5 if on_tibia else -2.5)
            length = (1.5 + 4.0 * severity) * float(frng.uniform(0.8, 1.2))
            spur = ellipse_px(x, y, sx + side * (length * 0.6 + float(frng.uniform(-2, 2))),
                              sy + float(frng.uniform(-2, 2)), length, 1.0 + 2.0 * severity,
                              angle=side * float(frng.uniform(-0.5, 0.5)), edge=0.8)
            atten = atten + float(frng.uniform(0.25, 0.45)) * spur
            spots.append([round(float(sx), 1), round(float(sy), 1), round(length, 1)])
        truth["osteophytes"] = spots

    atten = atten * (1.0 + shading(rng, x, y, 0.12))
    pixels = expose(rng, atten, collimation((SIZE, SIZE), rng))
    spacing = round(float(rng.uniform(0.55, 0.8)), 3)
    return Phantom(
        pixels=pixels, modality="DX", body_part="KNEE",
        series_description=str(rng.choice(["KNEE AP", "KNEE AP WB", "KNEE FRONTAL"])),
        pixel_spacing=(spacing, spacing),
        labels={"knee_osteoarthritis": oa}, truth=truth,
    )


def _spine_zone(x: np.ndarray, cx: float, s: float) -> np.ndarray:
    """1 over the intercondylar area where the tibial spines rise above the plateau."""
    return soft_step(np.abs(x - cx) - 10 * s, 2.0)
