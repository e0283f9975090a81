"""On the real broker, the worker's started consumer long-polls with RADSTREAM_FETCH_MAX_WAIT_S,
not Faust's 1.5 s (streams/kafka/fetch_wait.py says why that matters)."""

from __future__ import annotations

from typing import cast

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

from streams.kafka import consumer_guard, fetch_wait

pytestmark = pytest.mark.integration


async def test_started_fetcher_uses_the_short_wait(bootstrap: str) -> None:
    app = faust.App("radstream-test-fetch-wait", broker=f"kafka://{bootstrap}")
    fetch_wait.install(app, 0.08)
    consumer_guard.install(app)
    consumer = cast(AIOKafkaDriverConsumer, app.consumer)
    client = consumer._thread._create_worker_consumer(cast(AIOKafkaTransport, app.transport))
    await client.start()  # connects, and builds the fetcher that sends every fetch request
    try:
        assert client._fetcher._fetch_max_wait_ms == 80
    finally:
        await client.stop()
