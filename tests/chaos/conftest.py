"""Each chaos test gets a private city (Kafka + Triton + workers on their own ports)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import City


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    c = City(tmp_path)
    try:
        c.kafka("up")
        c.triton("up")
        c.make_pool(40)
        yield c
    finally:
        c.stop_all()
        for action in (c.triton, c.kafka):
            with contextlib.suppress(subprocess.CalledProcessError):
                action("stop")
