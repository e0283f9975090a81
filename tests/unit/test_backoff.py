"""Triton retry backoff: exponential, capped, fully jittered."""

from __future__ import annotations

from streams.triton.client import backoff_s


def test_backoff_grows_then_caps() -> None:
    top = [backoff_s(a, base=0.2, cap=5.0, rand=lambda: 1.0) for a in range(8)]
    assert top[:5] == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert top[5:] == [5.0, 5.0, 5.0]


def test_backoff_is_jittered_down_to_zero() -> None:
    assert backoff_s(3, rand=lambda: 0.0) == 0.0
    assert backoff_s(3, base=0.2, rand=lambda: 0.5) == 0.8
