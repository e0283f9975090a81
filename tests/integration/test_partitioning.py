"""Every radstream producer puts a study's records in the partition the worker expects.

The worker (Faust, aiokafka) places a keyed record with murmur2; the hospital publisher and the
review producer use librdkafka, whose default partitioner places keys elsewhere. The quality
monitor joins a study's Review with its Finding in one partition's table entry, so each
librdkafka producer must agree with aiokafka, key for key, on a real broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.demo.reviews import producer_config as review_config
from services.publisher.producer import _config as publisher_config
from streams.contract import topics

pytestmark = pytest.mark.integration

TOPIC = "radstream-test-partitioning"
PARTITIONS = topics.STUDY_PARTITIONS


@pytest.fixture(scope="module")
def topic(bootstrap: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC not in admin.list_topics(timeout=10).topics:
        for fut in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            fut.result(30)
    return TOPIC


def placed(config: dict[str, Any], topic: str, keys: list[bytes]) -> dict[bytes, int]:
    """The partition the broker acknowledged each key in."""
    where: dict[bytes, int] = {}

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        where[msg.key() or b""] = msg.partition() or 0

    producer = Producer(config)
    for key in keys:
        producer.produce(topic, key=key, value=b"{}", on_delivery=delivered)
    assert producer.flush(30) == 0
    return where


def worker_partition(key: bytes) -> int:
    everything = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key, everything, everything))


CONFIGS: dict[str, Callable[[str], dict[str, Any]]] = {
    "hospital publisher": lambda b: publisher_config(b, "none", None),
    "review producer": review_config,
}


@pytest.mark.parametrize("producer", sorted(CONFIGS))
def test_librdkafka_producers_place_study_keys_like_the_worker(bootstrap: str, topic: str,
                                                               producer: str) -> None:
    keys = [f"2.25.{uuid.uuid4().int}".encode() for _ in range(64)]
    where = placed(CONFIGS[producer](bootstrap), topic, keys)
    assert where == {k: worker_partition(k) for k in keys}


def test_librdkafka_default_partitioner_would_split_a_study_from_its_finding(
        bootstrap: str, topic: str) -> None:
    """Why the setting exists: without it, keys land elsewhere (so the test above can fail)."""
    keys = [f"2.25.{uuid.uuid4().int}".encode() for _ in range(64)]
    where = placed({"bootstrap.servers": bootstrap}, topic, keys)
    assert sum(where[k] != worker_partition(k) for k in keys) > 16
