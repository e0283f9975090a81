"""The Triton circuit breaker opens, cools down, probes and closes as documented."""

from __future__ import annotations

import pytest

from streams.triton.circuit import CircuitBreaker, CircuitState


def test_opens_after_threshold_and_waits_cooldown() -> None:
    cb = CircuitBreaker(failure_threshold=3, cooldown_s=2.0, max_cooldown_s=8.0)
    for t in (0.0, 0.1):
        cb.record_failure(t)
        assert cb.state is CircuitState.CLOSED and cb.wait_s(t) == 0.0
    cb.record_failure(0.2)
    assert cb.state is CircuitState.OPEN
    assert cb.wait_s(1.2) == pytest.approx(1.0)
    assert cb.wait_s(2.3) == 0.0 and cb.state is CircuitState.HALF_OPEN


def test_failed_trial_doubles_cooldown_up_to_cap_and_success_closes() -> None:
    cb = CircuitBreaker(failure_threshold=1, cooldown_s=2.0, max_cooldown_s=5.0)
    cb.record_failure(0.0)
    now = 0.0
    cooldowns = []
    for _ in range(3):
        wait = cb.wait_s(now)
        cooldowns.append(wait)
        now += wait
        assert cb.wait_s(now) == 0.0 and cb.state is CircuitState.HALF_OPEN
        cb.record_failure(now)
    assert cooldowns == [2.0, 4.0, 5.0]
    now += cb.wait_s(now)
    cb.wait_s(now)
    cb.record_success()
    assert cb.state is CircuitState.CLOSED and cb.failures == 0 and cb.wait_s(now) == 0.0
