"""Delivery: a batch's records are acknowledged together, across librdkafka's poll thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.agents.outcome_producer import Delivery

MSG = None  # the delivery report's message is not used


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_a_batch_with_no_records_is_delivered_at_once() -> None:
    async def main() -> None:
        await asyncio.wait_for(Delivery(asyncio.get_running_loop()).wait(), 1)
    run(main)


def test_reports_before_the_wait_count() -> None:
    async def main() -> None:
        d = Delivery(asyncio.get_running_loop())
        d.count(3)
        for _ in range(3):
            d.delivered(None, MSG)  # type: ignore[arg-type]
        await asyncio.wait_for(d.wait(), 1)
    run(main)


def test_wait_returns_only_after_the_last_report_from_another_thread() -> None:
    async def main() -> None:
        d = Delivery(asyncio.get_running_loop())
        d.count(100)
        go = threading.Event()

        def reports() -> None:
            go.wait()
            for _ in range(100):
                d.delivered(None, MSG)  # type: ignore[arg-type]

        thread = threading.Thread(target=reports)
        thread.start()
        waiting = asyncio.ensure_future(d.wait())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # 100 records outstanding
        go.set()
        await asyncio.wait_for(waiting, 5)
        thread.join()
    run(main)


def test_one_failed_record_fails_the_batch_with_its_error() -> None:
    async def main() -> None:
        d = Delivery(asyncio.get_running_loop())
        d.count(3)
        d.delivered(None, MSG)  # type: ignore[arg-type]
        d.delivered(KafkaError(KafkaError._MSG_TIMED_OUT), MSG)  # type: ignore[arg-type]
        waiting = asyncio.ensure_future(d.wait())
        await asyncio.sleep(0.02)
        assert not waiting.done()  # the third record is still outstanding
        d.delivered(None, MSG)  # type: ignore[arg-type]
        with pytest.raises(KafkaException) as caught:
            await asyncio.wait_for(waiting, 1)
        assert caught.value.args[0].code() == KafkaError._MSG_TIMED_OUT
    run(main)


def test_a_record_taken_back_is_not_waited_for() -> None:
    """OutcomeProducer counts a record before handing it over and takes it back when
    librdkafka refuses it (full queue): the batch must not wait for it."""
    async def main() -> None:
        d = Delivery(asyncio.get_running_loop())
        d.count(1)
        d.count(-1)
        await asyncio.wait_for(d.wait(), 1)
    run(main)
