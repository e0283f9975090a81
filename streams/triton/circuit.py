"""Circuit breaker for a shared dependency (Triton), as pure logic with an injected clock.

closed: calls go through; `failure_threshold` consecutive failures open the circuit.
open: no calls for `cooldown_s` (doubling on every failed trial, up to `max_cooldown_s`), so a
    struggling server is not hammered by every worker at once.
half_open: one trial call; success closes the circuit, failure opens it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    cooldown_s: float = 1.0
    max_cooldown_s: float = 30.0
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _current_cooldown: float = field(default=0.0, repr=False)

    def wait_s(self, now: float) -> float:
        """Seconds to wait before the next call may go out (0: go now)."""
        if self.state is CircuitState.OPEN:
            remaining = self.opened_at + self._current_cooldown - now
            if remaining > 0:
                return remaining
            self.state = CircuitState.HALF_OPEN
        return 0.0

    def record_success(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self._current_cooldown = 0.0

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN:
            self._open(now, min(self.max_cooldown_s, max(self.cooldown_s,
                                                         self._current_cooldown * 2)))
        elif self.state is CircuitState.CLOSED and self.failures >= self.failure_threshold:
            self._open(now, self.cooldown_s)

    def _open(self, now: float, cooldown: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self._current_cooldown = cooldown
