"""Device faults for the drift demonstration: one modality that goes wrong after deployment.

Why: the quality monitor must notice when one device's images stop suiting the AI service
while every other device is fine. These faults are what such a device would do; they are pure
functions of a clean phantom, draw no random numbers (so a faulty device changes nothing else in
a seeded data set) and are applied only to the devices the caller names.

- ``wrong_window``: a misconfigured VOI preset (a bone window) written into the DICOM header.
  The pixels are intact, but a reader that honours the file's window, as the worker does,
  sees the lung fields clipped to black and the nodules in them vanish.
- ``blur``: a defocused or moving detector; a Gaussian blur of ``BLUR_SIGMA_PX`` pixels (at 512
  pixels, scaled with the image) smears the small nodules into the background.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from streams.imaging.preprocess import ROBUST_PERCENTILES


class DeviceFault(StrEnum):
    WRONG_WINDOW = "wrong_window"
    BLUR = "blur"


#: Gaussian sigma of the ``blur`` fault in pixels at size 512.
BLUR_SIGMA_PX = 10.0
#: The ``wrong_window`` preset: centre at this fraction of the robust intensity range, width
#: this fraction of it (bone and mediastinum stay visible, the lungs saturate).
WRONG_WINDOW_CENTER = 0.8
WRONG_WINDOW_WIDTH = 0.3


@dataclass(frozen=True)
class FaultyImage:
    pixels: np.ndarray
    #: (center, width) to write instead of the correct window; None keeps the writer's own.
    window: tuple[float, float] | None = None


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-normalised Gaussian smoothing matrix; edges renormalised, so no dark border."""
    idx = np.arange(n, dtype=np.float64)
    weights = np.exp(-((idx[:, None] - idx[None, :]) ** 2) / (2.0 * sigma**2))
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


def apply_fault(fault: DeviceFault | str, pixels: np.ndarray) -> FaultyImage:
    """What a device with ``fault`` produces for the clean stored values ``pixels``: one
    image (rows, cols) or a series (slices, rows, cols), integer dtype kept. The window is in
    stored values (the caller rescales it for a device that writes a slope or intercept)."""
    fault = DeviceFault(fault)
    if fault is DeviceFault.WRONG_WINDOW:
        lo, hi = np.percentile(pixels.astype(np.float32), ROBUST_PERCENTILES)
        span = max(float(hi) - float(lo), 1.0)
        return FaultyImage(pixels, (float(lo) + WRONG_WINDOW_CENTER * span,
                                    WRONG_WINDOW_WIDTH * span))
    rows, cols = pixels.shape[-2:]
    sigma = BLUR_SIGMA_PX * rows / 512.0
    # A weighted mean never leaves the input's range, so the result fits its dtype.
    smooth = _gaussian_matrix(rows, sigma) @ pixels.astype(np.float32)
    smooth = smooth @ _gaussian_matrix(cols, sigma * cols / rows).T
    info = np.iinfo(pixels.dtype)
    return FaultyImage(np.clip(np.rint(smooth), info.min, info.max).astype(pixels.dtype))


def parse_faults(specs: list[str] | tuple[str, ...]) -> Mapping[str, DeviceFault]:
    """``["H001-D01=wrong_window", ...]`` (the CLI form) to a device → fault mapping."""
    faults: dict[str, DeviceFault] = {}
    for spec in specs:
        device, sep, name = spec.partition("=")
        if not sep or not device:
            raise ValueError(f"expected DEVICE=FAULT, got {spec!r}")
        try:
            faults[device] = DeviceFault(name)
        except ValueError:
            known = ", ".join(f.value for f in DeviceFault)
            raise ValueError(f"unknown device fault {name!r}; known: {known}") from None
    return faults
