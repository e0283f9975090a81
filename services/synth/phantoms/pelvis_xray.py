"""Synthetic frontal (AP) pelvis radiographs, with or without a femoral neck fracture.

Anatomy (256x256, 12-bit MONOCHROME2, pixel spacing 0.6..0.9 mm): a wide soft-tissue body
collimated to a >= 7.5 % air ring; two iliac wings (thin bone with a brighter crest), the
sacrum and L5, the pubic/ischial ring with two dark obturator foramina, and on each side an
acetabular roof over a round femoral head, the femoral neck (an ellipse along the neck axis,
35..50 degrees below horizontal), greater and lesser trochanters and the proximal shaft. Bones
carry a brighter cortical rim and trabecular texture. Distractors on BOTH kinds of image: a
faint sclerotic physeal scar across each head-neck junction (a bright, not dark, line; 50 %),
and 0..3 dark bowel-gas blobs over the sacrum and iliac wings. Per image jitter: centre +-8 px,
scale 0.92..1.08 (of a 0.74 base: both hips and trochanters fit the field), neck angles and
lengths per side, exposure gain, offset and noise.

Finding ``hip_fracture`` (one side, chosen at random): a femoral neck fracture drawn as
- a lucent line across the neck at 20..85 % of its length from the head centre (subcapital to
  basicervical), 65..115 degrees to the neck axis, jagged (2 px wiggle), width 0.8..2.2 px,
  removing 35..90 % of the local bone density, spanning 55..100 % of the neck width
  (incomplete, subtle fractures included);
- with probability 0.6 a cortical step: the head-and-proximal-neck fragment shifted by
  1..4 px (displaced fracture, the neck contour shows an offset at the line);
- otherwise, with probability 0.5, an impaction band: a bright 2..4 px line (overlapping
  fragments, extra density 0.1..0.25) just distal to the lucent line.
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
)

SERVICE = "pelvis-xray"
FINDINGS: tuple[str, ...] = ("hip_fracture",)
PREVALENCE: dict[str, float] = {"hip_fracture": 0.3}

SIZE = 256


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One AP pelvis radiograph; plants a femoral neck fracture when ``hip_fracture``."""
    fracture = "hip_fracture" in positives
    x, y = pixel_grid(SIZE, SIZE)
    s = 0.74 * float(rng.uniform(0.92, 1.08))
    cx = SIZE / 2 + float(rng.uniform(-8, 8))
    cy = SIZE / 2 + float(rng.uniform(-8, 8))
    tex = fast_noise(rng, (SIZE, SIZE), 3.0)
    dens = float(rng.uniform(0.28, 0.36))

    atten = 0.45 * ellipse_px(x, y, cx, cy + 20, 160 * s, 170, edge=6)
    # Pelvic ring.
    iliac = np.zeros_like(x)
    for side in (-1.0, 1.0):
        iliac = np.maximum(iliac, ellipse_px(x, y, cx + side * 62 * s, cy - 52 * s, 50 * s,
                                             40 * s, angle=side * 0.35, edge=1.5))
    atten = atten + bone(iliac, 0.55 * dens, 0.3, 2.0, tex)
    sacrum = ellipse_px(x, y, cx, cy - 42 * s, 27 * s, 44 * s, edge=1.5)
    l5 = ellipse_px(x, y, cx, cy - 104 * s, 24 * s, 14 * s, edge=1.5)
    atten = atten + bone(np.maximum(sacrum, l5), 0.7 * dens, 0.2, 2.0, tex)
    ring = ellipse_px(x, y, cx, cy + 28 * s, 74 * s, 42 * s, edge=1.5) * (
        1.0 - ellipse_px(x, y, cx, cy + 18 * s, 56 * s, 28 * s, edge=1.5))
    for side in (-1.0, 1.0):
        ring = np.maximum(ring, ellipse_px(x, y, cx + side * 38 * s, cy + 42 * s, 27 * s, 22 * s))
        ring = ring * (1.0 - ellipse_px(x, y, cx + side * 38 * s, cy + 42 * s, 15 * s, 12 * s))
    atten = atten + bone(ring, 0.8 * dens, 0.25, 2.0, tex)

    # Fracture draws come from their own generator, taken whether or not one is planted, so
    # the same seed renders the same pelvis with and without it (the tests rely on this).
    frng = np.random.default_rng(int(rng.integers(0, 2**63)))
    frac_side = (1.0 if frng.random() < 0.5 else -1.0) if fracture else 0.0
    truth: dict[str, object] = {}
    for side in (-1.0, 1.0):
        hx, hy = cx + side * 74 * s, cy + float(rng.uniform(-2, 4)) * s
        a = math.radians(float(rng.uniform(35, 50)))
        ux, uy = side * math.cos(a), math.sin(a)  # neck axis, head -> trochanter
        neck_len = float(rng.uniform(34, 42)) * s
        head_r = float(rng.uniform(17, 21)) * s
        roof = ellipse_px(x, y, hx, hy, head_r + 7 * s, head_r + 7 * s, edge=1.5) * (
            1.0 - ellipse_px(x, y, hx, hy, head_r + 1.5 * s, head_r + 1.5 * s, edge=1.0)) * (
            soft_step(y - hy + 2 * s, 4.0))
        atten = atten + bone(roof, 0.6 * dens, 0.35, 2.0, tex)

        distal = _distal_femur(x, y, hx, hy, ux, uy, neck_len, side, s)
        shift = (0.0, 0.0)
        t0 = 0.0
        split = None
        if side == frac_side:
            t0 = float(frng.uniform(0.2, 0.85)) * neck_len
            if frng.random() < 0.6:
                mag = float(frng.uniform(1.0, 4.0))
                ang = float(frng.uniform(0, 2 * math.pi))
                shift = (mag * math.cos(ang), mag * math.sin(ang))
            # t along the neck axis from the head centre; proximal fragment where t < t0.
            split = soft_step((x - hx) * ux + (y - hy) * uy - t0, 0.7)
        px, py = x - shift[0], y - shift[1]
        head = ellipse_px(px, py, hx, hy, head_r, head_r, edge=1.0)
        neck = ellipse_px(px, py, hx + ux * neck_len * 0.5, hy + uy * neck_len * 0.5,
                          neck_len * 0.62, float(rng.uniform(11, 13.5)) * s,
                          angle=math.atan2(uy, ux), edge=1.0)
        proximal = np.maximum(head, neck)
        if split is not None:
            femur = np.maximum(proximal * split, distal * (1.0 - split))
        else:
            femur = np.maximum(proximal, distal)
        femur_att = bone(femur, dens, 0.28, 2.0, tex)
        if rng.random() < 0.5:  # physeal scar: faint BRIGHT line at the head-neck junction
            scar = lucent_line(x, y, hx + ux * head_r * 0.7, hy + uy * head_r * 0.7,
                               math.atan2(uy, ux) + math.pi / 2, 1.2, head_r * 0.8)
            femur_att = femur_att + float(rng.uniform(0.03, 0.08)) * scar * femur
        if side == frac_side:
            fx, fy = hx + ux * t0, hy + uy * t0
            angle = math.atan2(uy, ux) + math.radians(float(frng.uniform(65, 115)))
            width = float(frng.uniform(0.8, 2.2))
            depth = float(frng.uniform(0.35, 0.9))
            extent = float(frng.uniform(0.55, 1.0))
            wiggle = 2.0 * fast_noise(frng, (SIZE, SIZE), 6.0)
            line = lucent_line(x, y, fx, fy, angle, width, 14 * s * extent, wiggle)
            femur_att = femur_att * (1.0 - depth * line)
            impaction = 0.0
            if shift == (0.0, 0.0) and frng.random() < 0.5:
                impaction = float(frng.uniform(0.1, 0.25))
                band = lucent_line(x, y, fx + ux * 3, fy + uy * 3, angle,
                                   float(frng.uniform(2, 4)), 14 * s * extent, wiggle)
                femur_att = femur_att + impaction * band * femur
            truth.update(side="image-right" if side > 0 else "image-left",
                         center=[round(fx, 1), round(fy, 1)], position=round(t0 / neck_len, 2),
                         width_px=round(width, 2), depth=round(depth, 2),
                         extent=round(extent, 2), step_px=round(math.hypot(*shift), 2),
                         impaction=round(impaction, 3))
        atten = atten + femur_att

    for _ in range(int(rng.integers(0, 4))):  # bowel gas: dark blobs over the pelvis
        gx = cx + float(rng.uniform(-70, 70)) * s
        gy = cy + float(rng.uniform(-80, -10)) * s
        gas = ellipse_px(x, y, gx, gy, float(rng.uniform(5, 14)), float(rng.uniform(4, 10)),
                         edge=3.0)
        atten = atten - float(rng.uniform(0.04, 0.12)) * gas

    atten = np.clip(atten, 0.0, None) * (1.0 + shading(rng, x, y, 0.12))
    pixels = expose(rng, atten, collimation((SIZE, SIZE), rng))
    spacing = round(float(rng.uniform(0.6, 0.9)), 3)
    return Phantom(
        pixels=pixels, modality="DX", body_part=str(rng.choice(["PELVIS", "HIP"])),
        series_description=str(rng.choice(["PELVIS AP", "AP PELVIS", "HIPS AP"])),
        pixel_spacing=(spacing, spacing),
        labels={"hip_fracture": fracture}, truth=truth,
    )


def _distal_femur(x: np.ndarray, y: np.ndarray, hx: float, hy: float, ux: float, uy: float,
                  neck_len: float, side: float, s: float) -> np.ndarray:
    """Greater and lesser trochanters and the proximal shaft (never moved by a fracture)."""
    tx, ty = hx + ux * (neck_len + 6 * s), hy + uy * (neck_len + 6 * s)
    gt = ellipse_px(x, y, tx + side * 4 * s, ty - 6 * s, 15 * s, 18 * s, edge=1.0)
    lt = ellipse_px(x, y, tx - side * 12 * s, ty + 20 * s, 7 * s, 6 * s, edge=1.0)
    shaft = ellipse_px(x, y, tx - side * 2 * s, ty + 95 * s, 19 * s, 90 * s,
                       angle=-side * 0.08, edge=1.0)
    return np.maximum(np.maximum(gt, lt), shaft)
