"""Synthetic weight-bearing lateral foot radiographs with a planted longitudinal arch angle.

Anatomy (256x256, 12-bit MONOCHROME2, pixel spacing 0.5..0.8 mm, heel left or right): a
soft-tissue foot standing on a faint radiolucent platform (the ground line), collimated to a
>= 7.5 % air ring, with the leg rising from the ankle to the top. The tarsal and metatarsal
bones form one bony band whose PLANTAR contour is the arch: it runs from the calcaneal
ground-contact point C (lowest point of the calcaneal tuberosity, 9..14 px above the ground:
heel pad) straight up to the arch apex A (at 38..50 % of the C-M distance) and straight down
to the first-metatarsal-head contact point M (6..9 px above the ground); each limb bows by
up to +-2.5 px (a skewed sine) and the apex is rounded by a parabolic fillet 4..12 px wide, so
the contour is not a polygon and A itself lies just above it (the angle is between the limbs,
as a radiologist draws it); behind C the heel
curves up, in front of M the metatarsal head curves up into the toes (whose bones stay above
the C-M line). The band is thick at the calcaneus (about 46 px), thinner through the midfoot
(30 px) and the metatarsals (14 px); a talus sits on top, with the tibia and fibula above it.
Joint spaces (calcaneocuboid, naviculocuneiform, tarsometatarsal) are 1.2 px lines that remove
30 % of the local bone density. Per image jitter: scale 0.9..1.05, C-M length 120..140 px,
apex position, ground level +-8 px, pad thicknesses, bone density, exposure gain, offset,
noise, and a left/right mirror.

Finding ``flat_foot`` (a MEASUREMENT): the longitudinal arch angle, the angle C-A-M in degrees
at the apex between the lines to the two contact points, is drawn per image and planted by
placing A at the height that gives exactly that angle. Not flat: 70 % normal 115..135 degrees,
30 % borderline 135..140; flat (positive): 30 % borderline 140..145, 70 % flat 145..165. The
label is ``angle > ANGLE_THRESHOLD_DEG`` and ``Phantom.measurements["flat_foot"]`` holds the
true angle; ``Phantom.truth`` gives C, A and M in pixel coordinates of the stored image.
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

SERVICE = "foot-xray"
FINDINGS: tuple[str, ...] = ("flat_foot",)
PREVALENCE: dict[str, float] = {"flat_foot": 0.3}

SIZE = 256
#: Arch angle above which a foot is flat (degrees); the foot_arch model card repeats it.
ANGLE_THRESHOLD_DEG = 140.0


def draw_angle(rng: np.random.Generator, flat: bool) -> float:
    """A true arch angle on the requested side of the threshold (see the module docstring)."""
    if flat:
        lo, hi = (140.0, 145.0) if rng.random() < 0.3 else (145.0, 165.0)
    else:
        lo, hi = (135.0, 140.0) if rng.random() < 0.3 else (115.0, 135.0)
    return float(rng.uniform(lo, hi))


def apex_height(cx: float, cy: float, mx: float, my: float, ax: float, angle_deg: float) -> float:
    """Row of the apex A above column ``ax`` such that angle C-A-M equals ``angle_deg``
    (bisection; the angle shrinks monotonically as A rises)."""
    target = math.radians(angle_deg)
    lo, hi = min(cy, my) - 200.0, min(cy, my) - 1e-3  # rows: lo is high above, hi just above
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _angle(cx, cy, ax, mid, mx, my) < target:
            lo = mid  # too sharp: move A down
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _angle(cx: float, cy: float, ax: float, ay: float, mx: float, my: float) -> float:
    v1 = (cx - ax, cy - ay)
    v2 = (mx - ax, my - ay)
    cos = (v1[0] * v2[0] + v1[1] * v2[1]) / (math.hypot(*v1) * math.hypot(*v2))
    return math.acos(max(-1.0, min(1.0, cos)))


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One weight-bearing lateral foot radiograph with a planted arch angle."""
    flat = "flat_foot" in positives
    angle = draw_angle(rng, flat)
    x, y = pixel_grid(SIZE, SIZE)
    xs = x[0]
    s = float(rng.uniform(0.9, 1.05))
    ground = 188.0 + float(rng.uniform(-8, 8))
    c_x = 50.0 + float(rng.uniform(-6, 6))
    c_y = ground - float(rng.uniform(9, 14)) * s
    length = float(rng.uniform(120, 140)) * s
    m_x, m_y = c_x + length, ground - float(rng.uniform(6, 9)) * s
    a_x = c_x + float(rng.uniform(0.38, 0.5)) * length
    a_y = apex_height(c_x, c_y, m_x, m_y, a_x, angle)

    # Plantar contour (row of the bone's lower edge) per column.
    heel_r, head_r = 14.0 * s, 7.0 * s
    plantar = np.interp(xs, [c_x, a_x, m_x], [c_y, a_y, m_y]).astype(np.float32)
    # Anatomy is not a polygon: each limb bows (skewed), and the apex is rounded by a
    # parabolic fillet of half-width ``fillet`` tangent to both limbs; C, A, M stay the truth.
    bows = []
    for x0, x1 in ((c_x, a_x), (a_x, m_x)):
        t = np.clip((xs - x0) / (x1 - x0), 0.0, 1.0)
        bow, skew = float(rng.uniform(-2.5, 2.5)) * s, float(rng.uniform(0.6, 1.6))
        plantar += (bow * np.sin(np.pi * t**skew)).astype(np.float32)
        bows.append(round(bow, 2))
    fillet = float(rng.uniform(4, 12)) * s
    k1, k2 = (a_y - c_y) / (a_x - c_x), (m_y - a_y) / (m_x - a_x)
    near = np.abs(xs - a_x) < fillet
    plantar[near] = (a_y + k1 * (xs[near] - a_x)
                     + (k2 - k1) * (xs[near] - a_x + fillet) ** 2 / (4 * fillet))
    behind = xs < c_x
    plantar[behind] = c_y - (c_x - xs[behind]) ** 2 / (2 * heel_r)
    ahead = xs > m_x
    plantar[ahead] = m_y - (xs[ahead] - m_x) ** 2 / (2 * head_r)
    x_post = c_x - 18.0 * s
    x_head = m_x + 6.0 * s
    knots = [x_post, c_x, c_x + 0.3 * length, a_x, a_x + 0.25 * length, m_x, x_head]
    thick = np.interp(xs, knots, np.array([30, 46, 40, 30, 16, 14, 11]) * s).astype(np.float32)
    ys = y[:, :1]
    band = (soft_step(ys - plantar[None, :], 0.8) * soft_step(plantar - thick - ys, 0.8)
            * (soft_step(x_post - xs, 1.0) * soft_step(xs - x_head, 1.0))[None, :])
    # Toes: thin phalanges ahead of the metatarsal head, kept above the C-M line.
    toe_y = m_y - 3.0 * s - np.clip(xs - x_head, 0, None) * 0.05
    toes = (soft_step(ys - toe_y[None, :], 0.8) * soft_step(toe_y - 8 * s - ys, 0.8)
            * (soft_step(x_head - 1 - xs, 1.0) * soft_step(xs - (x_head + 40 * s), 1.0))[None, :])

    t_cx = c_x + 0.3 * length
    t_base = float(np.interp(t_cx, xs, plantar - thick))
    talus = ellipse_px(x, y, t_cx, t_base - 8 * s, 27 * s, 17 * s, edge=1.0)
    tibia = ellipse_px(x, y, t_cx + 2 * s, t_base - 110 * s, 16 * s, 95 * s, edge=1.0)
    fibula = ellipse_px(x, y, t_cx - 10 * s, t_base - 100 * s, 8 * s, 90 * s, edge=1.0)

    tex = fast_noise(rng, (SIZE, SIZE), 3.0)
    dens = float(rng.uniform(0.30, 0.40))
    bones = bone(band, dens, 0.2, 2.0, tex)
    for jx in (c_x + 0.3 * length, a_x - 0.05 * length, a_x + 0.12 * length):
        joint = lucent_line(x, y, jx, float(np.interp(jx, xs, plantar)) - 10 * s,
                            math.radians(90 + float(rng.uniform(-15, 15))), 1.2, 30 * s)
        bones = bones * (1.0 - 0.3 * joint)
    bones = bones + bone(toes, 0.9 * dens, 0.2, 2.0, tex)
    bones = bones + bone(talus, dens, 0.2, 2.0, tex) * (1.0 - 0.5 * band)
    bones = bones + bone(tibia, dens, 0.25, 2.0, tex) + bone(fibula, 0.6 * dens, 0.2, 2.0, tex)

    # Soft tissue: foot from the ground up to a skin line 10 px above the bones, plus the leg.
    dorsal = plantar - thick - 10 * s
    skin_knots = [x_post - 10 * s, x_post, c_x, t_cx, a_x, m_x, x_head, x_head + 46 * s]
    skin_rows = [ground - 30 * s, *np.interp(skin_knots[1:-2], xs, dorsal),
                 m_y - 26 * s, ground - 12 * s]
    skin = np.interp(xs, skin_knots, skin_rows).astype(np.float32)
    span = soft_step(x_post - 10 * s - xs, 3.0) * soft_step(xs - (x_head + 46 * s), 3.0)
    foot = soft_step(ys - ground, 1.5) * soft_step(skin - ys, 2.0) * span[None, :]
    leg = ellipse_px(x, y, t_cx, t_base - 100 * s, 34 * s, 120 * s, edge=3.0)
    soft = 0.40 * np.maximum(foot, leg)
    platform = 0.08 * soft_step(ground - ys, 1.0) * soft_step(ys - ground - 8, 1.0)
    atten = (soft + bones + platform) * (1.0 + shading(rng, x, y, 0.1))

    mirrored = rng.random() < 0.5
    if mirrored:
        atten = np.ascontiguousarray(atten[:, ::-1])
    pixels = expose(rng, atten, collimation((SIZE, SIZE), rng))

    def point(px: float, py: float) -> list[float]:
        return [round(SIZE - 1 - px if mirrored else px, 2), round(py, 2)]

    spacing = round(float(rng.uniform(0.5, 0.8)), 3)
    return Phantom(
        pixels=pixels, modality="DX", body_part="FOOT",
        series_description=str(rng.choice(["FOOT LAT WB", "LAT FOOT STANDING", "FOOT LATERAL"])),
        pixel_spacing=(spacing, spacing),
        labels={"flat_foot": angle > ANGLE_THRESHOLD_DEG},
        measurements={"flat_foot": angle},
        truth={"arch_angle_deg": round(angle, 2), "calcaneal_contact": point(c_x, c_y),
               "apex": point(a_x, a_y), "metatarsal_contact": point(m_x, m_y),
               "heel": "right" if mirrored else "left", "limb_bows_px": bows,
               "apex_fillet_px": round(fillet, 1)},
    )
