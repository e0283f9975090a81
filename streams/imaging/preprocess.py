"""Turn decoded pixels into the tensor a service's model expects; pure numpy, no I/O.

The worker and every training script go through :func:`to_series_input` (``to_model_input`` is
its 2-D, 128 x 128 form for the chest X-ray model), so a model sees exactly the same
normalisation in production as in training (one source of truth for preprocessing).

Pipeline: slab projection (mean or MIP) -> modality rescale (slope/intercept) -> window/level to
[0, 1] (the catalog's windows, else the DICOM window, else the robust 1st..99th percentile
range) -> invert MONOCHROME1 so that bone is always bright -> area-averaging resize.

Every tensor that leaves is checked finite: one NaN would make Triton refuse the whole batched
request it travels in, so a non-finite rescale, window or pixel value is this study's technical
defect (``non_finite_input``), found here rather than by its batch-mates.
"""

from __future__ import annotations

import numpy as np

from streams.contract.catalog import PreprocessSpec
from streams.contract.reasons import InputRejected, Reason

#: Side of the square image the chest models take, in pixels.
MODEL_INPUT_SIZE = 128

#: Percentiles that bound the automatic window when the file has none.
ROBUST_PERCENTILES = (1.0, 99.0)

#: Narrowest window width used: a narrower one is this step (1 / width must stay finite).
MIN_WINDOW_WIDTH = 1e-6


def robust_window(values: np.ndarray) -> tuple[float, float]:
    """Window (center, width) spanning the 1st..99th percentile; robust to hot/dead pixels."""
    lo, hi = np.percentile(values, ROBUST_PERCENTILES)
    width = max(float(hi) - float(lo), MIN_WINDOW_WIDTH)
    return float(lo) + width / 2.0, width


def to_model_input(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window_center: float | None = None,
    window_width: float | None = None,
) -> np.ndarray:
    """Return a float32 array of shape (1, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE) in [0, 1].

    Raises:
        InputRejected: with ``Reason.PIXELS_UNREADABLE`` when the pixels are not a non-empty 2-D
            image, ``Reason.NON_FINITE_INPUT`` when they or the rescale/window make a
            non-finite value (the study then becomes a technical defect, not a crash).
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        detail = f"expected a 2-D image, got shape {arr.shape}"
        raise InputRejected(Reason.PIXELS_UNREADABLE, detail)
    return to_series_input(arr, PreprocessSpec(size=MODEL_INPUT_SIZE), photometric=photometric,
                           slope=slope, intercept=intercept, window_center=window_center,
                           window_width=window_width)


def _finite32(value: float) -> bool:
    """Whether `value` is a finite number that stays finite as float32 (the tensor's type)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.float32(value)))


def _non_finite(detail: str) -> InputRejected:
    return InputRejected(Reason.NON_FINITE_INPUT, detail)


def _window_bounds(center: float, width: float) -> tuple[np.float32, np.float32]:
    """(lower edge, 1 / width) of a window, both finite float32s, or the study's defect."""
    width = max(float(width), MIN_WINDOW_WIDTH)
    lo = float(center) - width / 2.0
    if not (_finite32(lo) and _finite32(lo + width)):
        raise _non_finite("the window reaches beyond float32's range")
    return np.float32(lo), np.float32(1.0 / width)


def _bounded_rescale(dtype: np.dtype, slope: float, intercept: float) -> bool:
    if not np.issubdtype(dtype, np.integer):
        return False
    info = np.iinfo(dtype)
    largest = max(abs(int(info.min)), int(info.max)) * abs(slope) + abs(intercept)
    return bool(np.isfinite(largest) and largest < 1e37)


def _resize_area(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Area-averaging resize: block mean when sizes divide, else a separable overlap matrix."""
    in_h, in_w = image.shape
    if in_h % out_h == 0 and in_w % out_w == 0:
        return _block_mean(image, in_h // out_h, in_w // out_w)
    rows = _area_matrix(in_h, out_h)
    cols = _area_matrix(in_w, out_w)
    return (rows @ image @ cols.T).astype(np.float32, copy=False)


def _block_mean(image: np.ndarray, fh: int, fw: int) -> np.ndarray:
    """Mean of each fh x fw block, by adding strided views: about 4x faster than
    ``reshape(...).mean(axis=(1, 3))``, whose reduction over non-adjacent axes is slow."""
    in_h, in_w = image.shape
    cols = image.reshape(in_h, in_w // fw, fw)
    acc = cols[:, :, 0].copy()
    for j in range(1, fw):
        acc += cols[:, :, j]
    rows = acc.reshape(in_h // fh, fh, in_w // fw)
    out = rows[:, 0, :].copy()
    for i in range(1, fh):
        out += rows[:, i, :]
    out *= np.float32(1.0 / (fh * fw))
    return out


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Weights (n_out, n_in) = overlap of each output cell with each input pixel, rows sum to 1.

    A separable linear resample: exact area averaging when shrinking, a box (nearest-like)
    resample when growing, without pulling in scipy or PIL.
    """
    edges = np.linspace(0.0, n_in, n_out + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(ends, pix + 1.0) - np.maximum(starts, pix), 0.0, None)
    overlap /= overlap.sum(axis=1, keepdims=True)
    return overlap.astype(np.float32)


def to_series_input(
    stored: np.ndarray,
    spec: PreprocessSpec,
    *,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window_center: float | None = None,
    window_width: float | None = None,
) -> np.ndarray:
    """Stored pixels of a series, shape (slices, rows, cols), to a (channels, size, size)
    float32 tensor in [0, 1].

    Raises:
        InputRejected: ``Reason.PIXELS_UNREADABLE`` when the pixels are not real numbers of a
            non-empty 3-D shape; ``Reason.NON_FINITE_INPUT`` when the rescale, the window or a
            pixel value is NaN or infinite, or makes the tensor so.
    """
    arr = np.asarray(stored)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.size == 0:
        raise InputRejected(Reason.PIXELS_UNREADABLE, f"expected (slices, rows, cols), got "
                            f"shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.floating):
        raise InputRejected(Reason.PIXELS_UNREADABLE, f"pixel dtype {arr.dtype} is not real")
    if not (_finite32(slope) and _finite32(intercept)):
        raise _non_finite("RescaleSlope or RescaleIntercept is not a finite number")
    # Slabs first: the means shrink the data before any per-pixel float work.
    groups = np.array_split(np.arange(arr.shape[0]), spec.slabs) if arr.shape[0] >= spec.slabs \
        else [np.array([min(i * arr.shape[0] // spec.slabs, arr.shape[0] - 1)])
              for i in range(spec.slabs)]
    projected: dict[str, np.ndarray] = {}
    for kind in {spec.projection(w) for w in range(max(1, len(spec.windows)))}:
        reduce = np.max if kind == "max" else np.mean
        slabs = np.empty((len(groups), *arr.shape[1:]), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN are refused below
            for i, g in enumerate(groups):
                # A one-slice slab (every radiograph) is that slice, cast in the one copy made.
                slabs[i] = arr[g[0]] if len(g) == 1 \
                    else reduce(arr[g].astype(np.float32), axis=0)
            # Skipping an identity rescale changes no value; each pass costs a full-size sweep.
            if slope != 1.0:
                slabs *= np.float32(slope)
            if intercept != 0.0:
                slabs += np.float32(intercept)
        if not (_bounded_rescale(arr.dtype, slope, intercept) or np.isfinite(slabs).all()):
            raise _non_finite("pixel values are not finite after rescaling")
        projected[kind] = slabs

    windows = spec.windows
    if not windows:  # the file's own window, when the catalog sets none
        if window_center is not None and window_width is not None \
                and not (_finite32(window_center) and _finite32(window_width)):
            raise _non_finite("WindowCenter or WindowWidth is not a finite number")
        if window_center is None or window_width is None or not window_width > 0:
            window_center, window_width = robust_window(projected[spec.projection(0)])
        windows = ((window_center, window_width),)
    invert = photometric.strip().upper() == "MONOCHROME1"
    out = np.empty((len(windows) * spec.slabs, spec.size, spec.size), dtype=np.float32)
    scaled = np.empty(arr.shape[1:], dtype=np.float32)  # one scratch image, reused in place
    bounds = [_window_bounds(center, width) for center, width in windows]
    with np.errstate(over="ignore"):  # a value far outside its window: inf, then clipped
        for w, (lo, scale) in enumerate(bounds):
            slabs = projected[spec.projection(w)]
            for s in range(spec.slabs):
                np.subtract(slabs[s], lo, out=scaled)
                np.multiply(scaled, scale, out=scaled)
                np.clip(scaled, 0.0, 1.0, out=scaled)
                if invert:
                    np.subtract(np.float32(1.0), scaled, out=scaled)
                out[w * spec.slabs + s] = _resize_area(scaled, spec.size, spec.size)
    # Resampling weights summing to 1 in float32 can land a hair above 1.
    np.clip(out, 0.0, 1.0, out=out)
    # The guarantee every caller relies on (Triton refuses a request with one NaN in it), kept
    # whatever the arithmetic above comes to do; a sweep of the small output tensor.
    if not np.isfinite(out).all():
        raise _non_finite("the model input is not finite")
    return out
