"""What every phantom generator returns, and the drawing primitives they share.

A :class:`Phantom` is one synthetic series: stored pixel values plus the DICOM geometry and
rescale a real device would write. The city simulator turns it into DICOM files; the training
scripts feed its pixels straight through :mod:`streams.imaging.preprocess`, the same code the
worker runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Phantom:
    """One synthetic series with its ground truth."""

    #: Stored values, shape (slices, rows, cols); a 2-D radiograph has one slice.
    pixels: np.ndarray
    modality: str
    body_part: str
    series_description: str
    #: (row, column) spacing in mm.
    pixel_spacing: tuple[float, float]
    #: Distance between slice centres in mm (also written as SliceThickness).
    slice_spacing: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0
    photometric: str = "MONOCHROME2"
    #: Default display window (center, width) in rescaled units, or None.
    window: tuple[float, float] | None = None
    #: Finding code -> planted or not (every code of the service's FINDINGS).
    labels: dict[str, bool] = field(default_factory=dict)
    #: Finding code -> true measured value, for measurement services (e.g. an angle in degrees).
    measurements: dict[str, float] = field(default_factory=dict)
    #: Free-form description of what was planted where (sizes, positions); never PHI.
    truth: dict[str, Any] = field(default_factory=dict)


def grid(shape: tuple[int, int], rng: np.random.Generator | None = None,
         jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates (u across columns, v down rows) in [-0.5, 0.5), optionally shifted."""
    rows, cols = shape
    du, dv = (rng.uniform(-jitter, jitter, size=2) if rng is not None and jitter else (0.0, 0.0))
    u = (np.arange(cols, dtype=np.float32) / np.float32(cols) - np.float32(0.5 + du))[None, :]
    v = (np.arange(rows, dtype=np.float32) / np.float32(rows) - np.float32(0.5 + dv))[:, None]
    uu, vv = np.broadcast_arrays(u, v)
    return uu, vv


def ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float,
            edge: float = 0.01, angle: float = 0.0) -> np.ndarray:
    """Soft-edged filled ellipse in [0, 1] (soft edges avoid aliasing a detector would not show)."""
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        du, dv = u - cu, v - cv
        u, v, cu, cv = du * c + dv * s, -du * s + dv * c, 0.0, 0.0
    r = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2)
    return (1.0 / (1.0 + np.exp(np.clip((r - 1.0) / edge, -30.0, 30.0)))).astype(np.float32)


def blob(u: np.ndarray, v: np.ndarray, cu: float, cv: float, sigma: float) -> np.ndarray:
    """Gaussian-profile blob with peak 1 (a nodule, a calcification, a lesion)."""
    return np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2.0 * sigma * sigma)).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: coarse random grid upsampled by repetition+blur."""
    coarse_shape = tuple(max(2, s // scale + 2) for s in shape)
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    out = coarse
    for axis, s in enumerate(shape):
        out = np.repeat(out, scale, axis=axis).take(np.arange(s) + scale // 2, axis=axis)
    k = np.ones(scale, dtype=np.float32) / scale
    for axis in range(len(shape)):
        out = np.apply_along_axis(lambda m: np.convolve(m, k, mode="same"), axis, out)
    return out.astype(np.float32)


def to_stored(values: np.ndarray, *, slope: float, intercept: float, dtype: type,
              noise: float, rng: np.random.Generator) -> np.ndarray:
    """Physical values (HU, attenuation, signal) + Gaussian noise -> clipped stored integers."""
    noisy = values + rng.normal(0.0, noise, size=values.shape).astype(np.float32)
    stored = np.rint((noisy - intercept) / slope)
    info: np.iinfo[Any] = np.iinfo(np.dtype(dtype))
    return np.clip(stored, info.min, info.max).astype(dtype)
