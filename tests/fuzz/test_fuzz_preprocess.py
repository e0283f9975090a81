"""Fuzzing preprocessing: whatever pixels and rescale/window attributes a file carries,
to_series_input returns a finite tensor in [0, 1] of the catalog's shape, or refuses the study
with a reason. A NaN that slipped through would make Triton refuse the whole micro-batch."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streams.contract.catalog import PreprocessSpec
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.preprocess import to_series_input

#: Every float a DICOM decimal string can become, and the edges of float32.
ATTRIBUTE = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-45, 5e-324, 1e-6, 3.4e38, -3.4e38, 1e39, 1e308]),
)

INTEGER_TYPES: list[type[np.integer[Any]]] = [np.uint8, np.uint16, np.int16, np.int32]


@st.composite
def pixels(draw: st.DrawFn) -> np.ndarray:
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24)))
    kind = draw(st.sampled_from(["float32", "float64", "integer"]))
    if kind == "float32":
        return draw(hnp.arrays(np.float32, shape, elements=st.floats(width=32)))
    if kind == "float64":
        return draw(hnp.arrays(np.float64, shape, elements=st.floats()))
    int_type = draw(st.sampled_from(INTEGER_TYPES))
    info = np.iinfo(int_type)
    return draw(hnp.arrays(int_type, shape, elements=st.integers(int(info.min), int(info.max))))


@st.composite
def specs(draw: st.DrawFn) -> PreprocessSpec:
    windows = draw(st.lists(st.tuples(st.floats(-2000, 2000), st.floats(1, 4000)), max_size=2))
    return PreprocessSpec(size=draw(st.integers(1, 16)), slabs=draw(st.integers(1, 3)),
                          windows=tuple(windows),
                          projections=tuple(draw(st.sampled_from(["mean", "max"]))
                                            for _ in windows))


@settings(settings.get_profile("radstream-fuzz"))
@given(pixels(), specs(), st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", ""]),
       ATTRIBUTE, ATTRIBUTE, st.none() | ATTRIBUTE, st.none() | ATTRIBUTE)
def test_tensor_is_finite_or_the_study_is_refused(
        stored: np.ndarray, spec: PreprocessSpec, photometric: str, slope: float,
        intercept: float, center: float | None, width: float | None) -> None:
    try:
        out = to_series_input(stored, spec, photometric=photometric, slope=slope,
                              intercept=intercept, window_center=center, window_width=width)
    except InputRejected as exc:
        assert exc.reason in (Reason.PIXELS_UNREADABLE, Reason.NON_FINITE_INPUT)
        return
    assert out.dtype == np.float32
    assert out.shape == (spec.channels, spec.size, spec.size)
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
