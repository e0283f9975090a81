"""Synthetic PA wrist radiographs, with or without a distal radius fracture.

Anatomy (256x256, 12-bit MONOCHROME2, pixel spacing 0.15..0.3 mm, hand up, forearm down): a
soft-tissue forearm widening into the hand, collimated to a >= 7.5 % air ring; the radius on
the thumb side (shaft flaring to a wide distal metaphysis whose articular surface slopes up to
the radial styloid), the ulna on the other side (narrower shaft, round head, small styloid),
two rows of four carpal bones (jittered ellipses with 1..3 px joint gaps) and five metacarpal
bases fanning out to the top. Bones carry a brighter cortical rim and trabecular texture.
Distractor on BOTH kinds of image: a faint sclerotic (bright, not dark) physeal scar across the
distal radius (50 %). Per image jitter: centre +-8 px, scale 0.9..1.1, left/right hand,
metaphysis width, carpal positions, exposure gain, offset and noise.

Finding ``distal_radius_fracture``: a transverse fracture of the distal radius metaphysis,
drawn as
- a jagged lucent line (2 px wiggle) 10..34 px proximal to the articular surface, -20..+20
  degrees from horizontal, width 0.8..2.4 px, removing 30..85 % of the local bone density,
  spanning 45..100 % of the metaphysis width (incomplete, subtle fractures included);
- with probability 0.55 a cortical step: the distal fragment shifted 1..4 px (dorsal
  displacement seen as an offset of both cortices at the line);
- otherwise, with probability 0.5, an impaction band: a bright 2..4 px line just proximal to
  the lucent line, extra density 0.1..0.25.
"""

from __future__ import annotations

import math

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.radiograph import (
    bone,
    collimation,
    ellipse_px,
    expose,
    fast_noise,
    lucent_line,
    pixel_grid,
    shading,
    soft_step,
    superellipse_px,
)

SERVICE = "wrist-xray"
FINDINGS: tuple[str, ...] = ("distal_radius_fracture",)
PREVALENCE: dict[str, float] = {"distal_radius_fracture": 0.3}

SIZE = 256


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One PA wrist radiograph; plants a distal radius fracture when positive."""
    fracture = "distal_radius_fracture" in positives
    x, y = pixel_grid(SIZE, SIZE)
    s = float(rng.uniform(0.9, 1.1))
    cx = SIZE / 2 + float(rng.uniform(-8, 8))
    cy = SIZE / 2 + float(rng.uniform(-8, 8))  # level of the radial articular surface
    side = 1.0 if rng.random() < 0.5 else -1.0  # image side of the thumb (radius)
    tex = fast_noise(rng, (SIZE, SIZE), 3.0)
    dens = float(rng.uniform(0.30, 0.40))

    soft = np.maximum(ellipse_px(x, y, cx, cy + 120, 64 * s, 150, edge=3),
                      ellipse_px(x, y, cx, cy - 60 * s, 84 * s, 90 * s, edge=3))
    atten = 0.40 * soft

    # Radius: distal metaphysis (tilted so the styloid side is higher) + shaft.
    rx = cx + side * 24 * s
    half_w = float(rng.uniform(29, 34)) * s
    tilt = side * math.radians(float(rng.uniform(14, 24)))
    rad_mid_y = cy + 20 * s
    rad_distal = superellipse_px(x, y, rx, rad_mid_y, half_w, 22 * s, power=3.0, angle=tilt,
                                 edge=1.0)
    rad_shaft = np.maximum(
        ellipse_px(x, y, rx - side * 4 * s, cy + 60 * s, 0.55 * half_w, 36 * s, edge=1.0),
        ellipse_px(x, y, rx - side * 6 * s, cy + 150 * s, 15 * s, 100 * s, edge=1.0))
    truth: dict[str, object] = {"laterality": "R" if side < 0 else "L"}
    # Fracture draws come from their own generator, taken whether or not one is planted, so
    # the same seed renders the same wrist with and without it (the tests rely on this).
    frng = np.random.default_rng(int(rng.integers(0, 2**63)))
    radius_att: np.ndarray
    if fracture:
        dist = float(frng.uniform(10, 34)) * s
        fy = cy + dist
        fx = rx + float(frng.uniform(-6, 6)) * s
        angle = math.radians(float(frng.uniform(-20, 20)))
        shift = (0.0, 0.0)
        if frng.random() < 0.55:
            mag = float(frng.uniform(1.0, 4.0))
            ang = float(frng.uniform(0, 2 * math.pi))
            shift = (mag * math.cos(ang), mag * math.sin(ang))
        # Distal fragment: above the fracture plane (toward the hand).
        c, sn = math.cos(angle), math.sin(angle)
        distal_side = soft_step((x - fx) * -sn + (y - fy) * c, 0.7)
        moved = superellipse_px(x - shift[0], y - shift[1], rx, rad_mid_y, half_w, 22 * s,
                                power=3.0, angle=tilt, edge=1.0)
        moved = np.maximum(moved, ellipse_px(x - shift[0], y - shift[1], rx - side * 4 * s,
                                              cy + 60 * s, 0.55 * half_w, 36 * s, edge=1.0))
        radius = np.maximum(moved * distal_side, np.maximum(rad_distal, rad_shaft)
                            * (1.0 - distal_side))
        radius_att = bone(radius, dens, 0.28, 2.0, tex)
        width = float(frng.uniform(0.8, 2.4))
        depth = float(frng.uniform(0.30, 0.85))
        extent = float(frng.uniform(0.45, 1.0))
        wiggle = 2.0 * fast_noise(frng, (SIZE, SIZE), 6.0)
        line = lucent_line(x, y, fx, fy, angle, width, half_w * extent, wiggle)
        radius_att = radius_att * (1.0 - depth * line)
        impaction = 0.0
        if shift == (0.0, 0.0) and frng.random() < 0.5:
            impaction = float(frng.uniform(0.1, 0.25))
            band = lucent_line(x, y, fx - 3 * sn, fy + 3 * c, angle, float(frng.uniform(2, 4)),
                               half_w * extent, wiggle)
            radius_att = radius_att + impaction * band * radius
        truth.update(center=[round(fx, 1), round(fy, 1)], px_from_joint=round(dist, 1),
                     angle_deg=round(math.degrees(angle), 1), width_px=round(width, 2),
                     depth=round(depth, 2), extent=round(extent, 2),
                     step_px=round(math.hypot(*shift), 2), impaction=round(impaction, 3))
    else:
        radius = np.maximum(rad_distal, rad_shaft)
        radius_att = bone(radius, dens, 0.28, 2.0, tex)
    if rng.random() < 0.5:  # physeal scar: faint bright line in the distal radius
        scar = lucent_line(x, y, rx, cy + float(rng.uniform(6, 12)) * s, tilt * 0.5, 1.3,
                           half_w * 0.9)
        radius_att = radius_att + float(rng.uniform(0.03, 0.08)) * scar * radius
    atten = atten + radius_att

    ux = cx - side * 30 * s
    ulna = np.maximum(ellipse_px(x, y, ux, cy + 18 * s, 15 * s, 13 * s, edge=1.0),
                      ellipse_px(x, y, ux + side * 2 * s, cy + 130 * s, 11 * s, 110 * s, edge=1.0))
    ulna = np.maximum(ulna, ellipse_px(x, y, ux - side * 8 * s, cy + 6 * s, 4 * s, 7 * s))
    atten = atten + bone(ulna, 0.9 * dens, 0.25, 2.0, tex)

    carpals = np.zeros_like(x)
    for row, (by, ay) in enumerate(((cy - 22 * s, 12 * s), (cy - 52 * s, 13 * s))):
        for k in range(4):
            bx = cx + side * (36 - 23 * k) * s + float(rng.uniform(-2, 2))
            gap = float(rng.uniform(1.0, 3.0))
            carpals = np.maximum(carpals, ellipse_px(
                x, y, bx, by + float(rng.uniform(-3, 3)) - 4 * row * (k == 1),
                11.5 * s - gap / 2, ay - gap / 2, angle=float(rng.uniform(-0.3, 0.3)), edge=1.0))
    atten = atten + bone(carpals, 0.85 * dens, 0.25, 2.0, tex)
    metacarpals = np.zeros_like(x)
    for k in range(5):
        bx = cx + side * (44 - 21 * k) * s
        metacarpals = np.maximum(metacarpals, ellipse_px(
            x, y, bx, cy - 112 * s, 8 * s, 40 * s, angle=side * (0.35 - 0.15 * k), edge=1.0))
    atten = atten + bone(metacarpals, dens, 0.28, 2.0, tex)

    atten = atten * (1.0 + shading(rng, x, y, 0.12))
    pixels = expose(rng, atten, collimation((SIZE, SIZE), rng))
    spacing = round(float(rng.uniform(0.15, 0.3)), 3)
    return Phantom(
        pixels=pixels, modality="DX", body_part=str(rng.choice(["WRIST", "HAND"])),
        series_description=str(rng.choice(["WRIST PA", "PA WRIST", "WRIST FRONTAL"])),
        pixel_spacing=(spacing, spacing),
        labels={"distal_radius_fracture": fracture}, truth=truth,
    )
