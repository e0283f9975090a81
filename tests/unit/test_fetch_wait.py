"""The worker's short fetch long-poll (streams/kafka/fetch_wait.py), composed with the consumer
guard."""

from __future__ import annotations

from typing import cast

import aiokafka
import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

from streams.kafka import consumer_guard, fetch_wait
from streams.kafka.consumer_guard import GuardedConsumer
from streams.kafka.fetch_wait import ShortFetchThread


def _app() -> faust.App:
    # Nothing connects: the consumer is built, never started.
    return faust.App("radstream-test-fetch-wait", broker="kafka://127.0.0.1:1")


async def test_worker_consumer_is_created_with_the_short_wait() -> None:
    app = _app()
    fetch_wait.install(app, 0.05)
    consumer_guard.install(app)
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)  # the guard still wraps it
    thread = cast(AIOKafkaDriverConsumer, consumer)._thread
    assert isinstance(thread, ShortFetchThread)
    client = thread._create_worker_consumer(app.transport)
    try:
        assert client._fetch_max_wait_ms == 50
    finally:
        await client.stop()


async def test_faust_default_is_what_install_replaces() -> None:
    # If Faust stops hard-coding 1.5 s, or aiokafka renames the attribute the fetcher is built
    # from, this fails and fetch_wait needs another look.
    app = _app()
    consumer = cast(AIOKafkaDriverConsumer, app.consumer)
    client = consumer._thread._create_worker_consumer(cast(AIOKafkaTransport, app.transport))
    try:
        assert client._fetch_max_wait_ms == 1500
    finally:
        await client.stop()
    direct = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=123)
    try:
        assert direct._fetch_max_wait_ms == 123
    finally:
        await direct.stop()


def test_install_refuses_a_non_positive_wait() -> None:
    with pytest.raises(ValueError, match="positive"):
        fetch_wait.install(_app(), 0)


async def test_install_refuses_a_consumer_that_exists_already() -> None:
    app = _app()
    app.consumer  # noqa: B018 (creating it is the point)
    with pytest.raises(RuntimeError, match="before the app's consumer exists"):
        fetch_wait.install(app, 0.1)


def test_install_touches_only_its_own_app() -> None:
    app, other = _app(), _app()
    fetch_wait.install(app, 0.1)
    assert issubclass(app.transport.Consumer, AIOKafkaDriverConsumer)
    assert app.transport.Consumer is not other.transport.Consumer
    assert other.transport.Consumer is AIOKafkaDriverConsumer
