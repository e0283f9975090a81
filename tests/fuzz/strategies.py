"""Hypothesis strategies shared by the fuzz targets and the unit tests' properties."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


@st.composite
def timestamp_parts(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a date-time, each drawn a little beyond its legal range."""
    return {
        "year": draw(st.integers(0, 9999)), "month": draw(st.integers(0, 13)),
        "day": draw(st.integers(0, 32)), "hour": draw(st.integers(0, 25)),
        "minute": draw(st.integers(0, 61)), "second": draw(st.integers(0, 61)),
        "fraction": draw(st.none() | st.text("0123456789", min_size=1, max_size=15)),
        "t": draw(st.sampled_from("Tt")),
        "offset": draw(st.sampled_from("Zz") | st.tuples(
            st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61))),
    }


def timestamp_text(p: dict[str, Any]) -> str:
    """The RFC 3339 text of parts drawn by timestamp_parts (not always a valid one)."""
    fraction = f".{p['fraction']}" if p["fraction"] is not None else ""
    offset = p["offset"] if isinstance(p["offset"], str) \
        else f"{p['offset'][0]}{p['offset'][1]:02d}:{p['offset'][2]:02d}"
    return (f"{p['year']:04d}-{p['month']:02d}-{p['day']:02d}{p['t']}{p['hour']:02d}:"
            f"{p['minute']:02d}:{p['second']:02d}{fraction}{offset}")


#: RFC 3339-shaped texts, valid or a field beyond its range.
timestamp_texts = timestamp_parts().map(timestamp_text)
