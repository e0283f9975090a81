"""The one preprocessing function the worker and the training script share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streams.contract.catalog import PreprocessSpec
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.imaging.preprocess import MODEL_INPUT_SIZE, to_model_input, to_series_input


def _ramp(h: int = 512, w: int = 512) -> np.ndarray:
    return np.tile(np.linspace(0, 4095, w), (h, 1)).astype(np.uint16)


@pytest.mark.parametrize("shape", [(512, 512), (300, 257), (64, 100), (128, 128)])
def test_shape_dtype_range(shape: tuple[int, int]) -> None:
    out = to_model_input(np.random.default_rng(0).integers(0, 4096, shape).astype(np.uint16))
    assert out.shape == (1, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_monochrome1_is_inverted() -> None:
    img = _ramp()
    m2 = to_model_input(img, photometric="MONOCHROME2")
    m1 = to_model_input(img, photometric="MONOCHROME1")
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[0, 0, 0] < m2[0, 0, -1]  # bright stays bright in MONOCHROME2


def test_window_is_applied_and_clipped() -> None:
    img = _ramp()
    out = to_model_input(img, window_center=2048, window_width=1024)
    # Left quarter is below the window, right quarter above it.
    assert np.all(out[0, :, :30] == 0.0)
    assert np.all(out[0, :, -30:] == 1.0)
    middle = out[0, 0, 64]
    assert 0.4 < middle < 0.6


def test_rescale_slope_intercept_shifts_window() -> None:
    img = _ramp()
    a = to_model_input(img, slope=2.0, intercept=-1000.0, window_center=3096, window_width=2048)
    b = to_model_input(img, window_center=2048, window_width=1024)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_robust_percentile_window_ignores_hot_pixels() -> None:
    img = _ramp()
    hot = img.copy()
    hot[0, :100] = 4095
    hot[1, :100] = 0
    # The window barely moves; only the output row that averages the hot pixels differs.
    np.testing.assert_allclose(to_model_input(img)[:, 1:], to_model_input(hot)[:, 1:], atol=0.02)


def test_block_mean_resize_is_exact() -> None:
    img = np.kron(np.arange(16, dtype=np.float32).reshape(4, 4), np.ones((128, 128)))
    out = to_model_input(img, window_center=7.5, window_width=15.0)
    expected = np.kron(np.arange(16, dtype=np.float32).reshape(4, 4) / 15.0, np.ones((32, 32)))
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((0, 10), np.uint16),
        np.zeros(100, np.uint16),
        np.array([["a", "b"], ["c", "d"]]),
    ],
)
def test_rejects_bad_pixels(pixels: np.ndarray) -> None:
    with pytest.raises(InputRejected) as info:
        to_model_input(pixels)
    assert info.value.reason is Reason.PIXELS_UNREADABLE


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("pixels", [
    np.array([[1.0, np.nan], [0.0, 2.0]]),
    np.array([[1.0, np.inf], [0.0, 2.0]]),
    np.array([[1.0, -np.inf], [0.0, 2.0]], np.float32),
    np.full((4, 4), 1e39, np.float64),  # finite, but not as float32
])
def test_non_finite_pixels_are_the_studys_defect(pixels: np.ndarray) -> None:
    with pytest.raises(InputRejected) as info:
        to_model_input(pixels)
    assert info.value.reason is Reason.NON_FINITE_INPUT


@pytest.mark.parametrize("attributes", [
    {"slope": NAN}, {"slope": INF}, {"slope": -INF}, {"slope": 1e39},
    {"intercept": NAN}, {"intercept": -INF},
    {"window_center": NAN, "window_width": 400.0},
    {"window_center": 40.0, "window_width": NAN},
    {"window_center": 40.0, "window_width": INF},
    {"window_center": INF, "window_width": 400.0},
    {"window_center": -INF, "window_width": INF},
    {"window_center": 1e39, "window_width": 400.0},
])
def test_non_finite_rescale_or_window_is_the_studys_defect(attributes: dict[str, Any]) -> None:
    """Each of these made a NaN tensor (or a wrong reason) before: Triton then refused the
    whole micro-batch the study travelled in."""
    with pytest.raises(InputRejected) as info:
        to_model_input(_ramp(64, 64), **attributes)
    assert info.value.reason is Reason.NON_FINITE_INPUT
    assert info.value.reason in TECHNICAL_DEFECTS


@pytest.mark.parametrize("width", [1e-30, 1e-40, 5e-324])
def test_a_vanishing_window_width_is_a_step_not_nan(width: float) -> None:
    img = _ramp(64, 64)
    out = to_model_input(img, window_center=2048.0, window_width=width)
    assert np.isfinite(out).all()
    assert out.min() == 0.0 and out.max() == 1.0


def test_file_window_is_not_judged_when_the_catalog_sets_the_window() -> None:
    spec = PreprocessSpec(size=32, windows=((40.0, 400.0),))
    out = to_series_input(_ramp(64, 64), spec, window_center=NAN, window_width=NAN)
    assert np.isfinite(out).all()


def test_a_huge_robust_window_stays_finite() -> None:
    pixels = np.array([[-3e38, 3e38], [0.0, 1.0]], np.float32)
    out = to_model_input(np.kron(pixels, np.ones((64, 64), np.float32)))
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
