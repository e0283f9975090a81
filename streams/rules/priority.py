"""The priority lane's claim on a service: routine batches wait while urgent work is in hand.

Each service with a priority lane runs two agents (routine and priority topics). Both share the
CPU, the preprocessing threads and Triton, so the routine agent, between batches, waits until
the priority agent is idle: an emergency head CT published behind a routine backlog waits for at
most the routine batch already in flight. ``max_wait_s`` bounds the wait so that a steady
stream of priority work cannot starve the routine lane for ever (the routine lag then shows on
the lag metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class PriorityGate:
    def __init__(self, max_wait_s: float = 5.0) -> None:
        self.max_wait_s = max_wait_s
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        return self._busy > 0

    @contextlib.asynccontextmanager
    async def priority_work(self) -> AsyncIterator[None]:
        """Hold the gate closed for routine batches while a priority batch is processed."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def routine_turn(self) -> bool:
        """Wait until no priority batch is in hand; False when it gave up after max_wait_s."""
        if not self._busy:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), self.max_wait_s)
        except TimeoutError:
            return False
        return True
