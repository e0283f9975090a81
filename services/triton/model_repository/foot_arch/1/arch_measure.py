"""Longitudinal arch angle of a weight-bearing lateral foot radiograph, in pure numpy.

Why classical image processing and not a network: the arch angle is a geometric measurement
with a clinical definition (the angle at the highest point of the arch's plantar bone contour
between the lines to the calcaneal and first-metatarsal-head ground-contact points), so we
measure it the way a radiologist draws it and can explain every number.

Input: one preprocessed image (1, H, W) or (H, W) in [0, 1], bright = bone (the worker's
``to_series_input``). Steps:
1. smooth 3x3; threshold bone vs soft tissue by Otsu over the non-air pixels;
2. per column, the lowest bone pixel, refined to a sub-pixel half-maximum crossing between the
   local bone and soft-tissue levels: the plantar bone contour; median-filtered over 5 columns;
3. the contour's lower convex hull (its "ground" tangents); the hull edge under which the
   contour rises highest spans the arch: its ends are the contact points C and M, the highest
   contour point above it is the apex A;
4. straight lines fitted to the middle 50 % of each limb (C..A and A..M, one robust refit),
   so rounding of the corners by blur and resampling does not bias the angle; the angle is the
   one between the two lines, opening downwards.
The heel may be on either side; the method is symmetric.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: Pixels above this (normalised) value are not air.
AIR_LEVEL = 0.08
#: Fraction trimmed from each end of a limb before its line fit.
LIMB_TRIM = 0.25
#: Minimum number of columns between the two contact points.
MIN_SPAN = 20


class MeasurementError(ValueError):
    """The image shows no measurable arch (no bone band, no two contact points)."""


@dataclass(frozen=True)
class ArchMeasurement:
    """Measured angle and the landmarks it came from, in (column, row) input pixels."""

    angle_deg: float
    calcaneal_contact: tuple[float, float]
    apex: tuple[float, float]
    metatarsal_contact: tuple[float, float]


def measure(image: np.ndarray) -> ArchMeasurement:
    """Measure the arch angle of one image; raises MeasurementError when it cannot."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[0]
    if img.ndim != 2 or min(img.shape) < 16 or not np.isfinite(img).all():
        raise MeasurementError(f"expected a finite 2-D image, got shape {img.shape}")
    img = _box3(img)
    tissue = img[img > AIR_LEVEL]
    if tissue.size < 100:
        raise MeasurementError("no tissue in the image")
    threshold = _otsu(tissue)
    contour = _median5(_plantar_contour(img, threshold))
    cols = np.flatnonzero(np.isfinite(contour))
    if cols.size < MIN_SPAN:
        raise MeasurementError("no plantar bone contour")
    rows = contour[cols]
    hull = _lower_hull(cols.astype(np.float64), rows.astype(np.float64))
    best: tuple[float, int, int, int] | None = None
    for a, b in itertools.pairwise(hull):
        if cols[b] - cols[a] < MIN_SPAN:
            continue
        seg = slice(a, b + 1)
        line = rows[a] + (rows[b] - rows[a]) * (cols[seg] - cols[a]) / (cols[b] - cols[a])
        rise = line - rows[seg]  # how far the contour is above the C-M line (rows grow down)
        k = int(np.argmax(rise))
        if best is None or rise[k] > best[0]:
            best = (float(rise[k]), a, a + k, b)
    if best is None or best[0] <= 0.5:
        raise MeasurementError("no arch above the contact line")
    _, ic, ia, im = best
    post = _fit_limb(cols, rows, ic, ia)
    ant = _fit_limb(cols, rows, ia, im)
    # Direction vectors from the apex down each limb: towards C (x decreasing) and M.
    u1 = np.array([-1.0, -post]) / math.hypot(1.0, post)
    u2 = np.array([1.0, ant]) / math.hypot(1.0, ant)
    angle = math.degrees(math.acos(float(np.clip(u1 @ u2, -1.0, 1.0))))
    return ArchMeasurement(
        angle_deg=angle,
        calcaneal_contact=(float(cols[ic]), float(rows[ic])),
        apex=(float(cols[ia]), float(rows[ia])),
        metatarsal_contact=(float(cols[im]), float(rows[im])),
    )


def score(angle_deg: float, threshold_deg: float, scale_deg: float) -> float:
    """Flat-foot score in (0, 1): sigmoid of the angle's distance above the threshold."""
    z = (angle_deg - threshold_deg) / scale_deg
    return float(1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z)))))


def _box3(img: np.ndarray) -> np.ndarray:
    p = np.pad(img, 1, mode="edge")
    out = np.zeros_like(img)
    h, w = img.shape
    for dy in range(3):
        for dx in range(3):
            out += p[dy:dy + h, dx:dx + w]
    return out / np.float32(9.0)


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def _plantar_contour(img: np.ndarray, threshold: float) -> np.ndarray:
    """Sub-pixel row of the lowest bone edge per column (NaN where a column has no bone)."""
    h, w = img.shape
    out = np.full(w, np.nan)
    solid = (img >= threshold)
    solid = solid[1:] & solid[:-1]  # two bone pixels in a row: not a noise speck
    for c in range(w):
        hits = np.flatnonzero(solid[:, c])
        if hits.size == 0:
            continue
        r = int(hits[-1]) + 1  # lowest bone row of the run
        if r + 4 >= h or r < 3:
            continue
        bone_level = float(np.median(img[r - 3:r + 1, c]))
        soft_level = float(np.mean(img[r + 2:r + 4, c]))
        if bone_level - soft_level < 0.05:
            continue
        level = 0.5 * (bone_level + soft_level)
        col = img[:, c]
        for k in range(min(r + 2, h - 2), max(r - 3, 0), -1):  # from below, first crossing
            if col[k] >= level > col[k + 1]:
                out[c] = k + (col[k] - level) / (col[k] - col[k + 1])
                break
    return out


def _median5(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for i in range(values.size):
        win = values[max(0, i - 2):i + 3]
        win = win[np.isfinite(win)]
        if np.isfinite(values[i]) and win.size >= 3:
            out[i] = float(np.median(win))
    return out


def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> list[int]:
    """Indices of the hull chain that bounds the contour from below in the image (max row)."""
    hull: list[int] = []
    for i in range(xs.size):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (xs[a] - xs[o]) * (ys[i] - ys[o]) - (ys[a] - ys[o]) * (xs[i] - xs[o])
            if cross >= 0:  # a lies above the chord o-i in the image: not on the lower hull
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def _fit_limb(cols: np.ndarray, rows: np.ndarray, i0: int, i1: int) -> float:
    """Slope (rows per column) of the straight middle part of one arch limb."""
    x0, x1 = float(cols[i0]), float(cols[i1])
    trim = LIMB_TRIM * (x1 - x0)
    sel = (cols >= x0 + trim) & (cols <= x1 - trim)
    x, y = cols[sel].astype(np.float64), rows[sel].astype(np.float64)
    if x.size < 3:
        x, y = np.array([x0, x1]), np.array([float(rows[i0]), float(rows[i1])])
        return float((y[1] - y[0]) / (x[1] - x[0]))
    slope, icept = np.polyfit(x, y, 1)
    keep = np.abs(y - (slope * x + icept)) <= 1.0
    if keep.sum() >= 3 and not keep.all():
        slope, icept = np.polyfit(x[keep], y[keep], 1)
    return float(slope)
