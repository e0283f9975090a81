"""The soak's memory figures (bench/report.py): growth from the start, and growth once the
per-study state has filled its horizon."""

from __future__ import annotations

from bench.report import growth, growth_after


def test_growth_after_the_horizon_ignores_the_fill_but_not_a_leak() -> None:
    fill_then_flat = [(t, 100.0 + min(t, 60) * 0.2) for t in range(0, 600, 10)]
    whole = growth(fill_then_flat[0][1], fill_then_flat[-1][1])
    assert whole is not None and whole > 0.1
    assert growth_after(fill_then_flat, 75) == 0.0
    leak = [(t, 100.0 + t * 0.05) for t in range(0, 600, 10)]
    after = growth_after(leak, 75)
    assert after is not None and after > 0.2


def test_growth_after_needs_a_soak_longer_than_the_warm_up() -> None:
    assert growth_after([], 75) is None
    assert growth_after([(0, 100.0), (30, 101.0)], 75) is None
