"""Bound how long the worker's broker fetch long-polls (RADSTREAM_FETCH_MAX_WAIT_S).

Why (docs/performance.md, round 7): aiokafka keeps one fetch in flight per broker. A partition
whose fetched records the worker has not taken in within 100 ms (aiokafka's prefetch backoff) is
left out of the next fetch request, and that request then waits on the other partitions only,
for up to its max wait, which Faust fixes at 1.5 s. On a busy worker the studies partitions were
left out this way while the work and table partitions in the request stayed quiet (the router,
which feeds the work topics, was waiting for those very studies). The studies then arrived
1.5 s late in one lump, which again took more than 100 ms to take in, and so on: the worker ran
1.5 s behind per hop, at exactly the offered rate, for minutes. A short max wait bounds each
such round to a fraction of a second; its cost is a few more empty fetches on an idle worker.

Like consumer_guard, nothing is patched globally: `install()` gives this app's transport a
consumer class whose aiokafka consumer is created with the shorter wait.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


class ShortFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, creating its aiokafka consumer with `fetch_max_wait_ms`."""

    fetch_max_wait_ms: int = 1500  # Faust's own value; short_fetch() sets the one in use

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes 1500 ms as a literal; aiokafka reads this attribute when start()
        # creates its fetcher, which happens after this returns (on_start).
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def short_fetch(consumer_cls: type[faust_aiokafka.Consumer],
                max_wait_s: float) -> type[faust_aiokafka.Consumer]:
    """`consumer_cls` whose consumer thread fetches with a max wait of `max_wait_s`."""
    wait_ms = max(1, round(max_wait_s * 1000))

    def _new_consumer_thread(self: faust_aiokafka.Consumer) -> ShortFetchThread:
        thread = ShortFetchThread(self, loop=self.loop, beacon=self.beacon)
        thread.fetch_max_wait_ms = wait_ms
        return thread

    name = f"ShortFetch{consumer_cls.__name__}"
    return type(name, (consumer_cls,), {"__module__": __name__, "__qualname__": name,
                                        "_new_consumer_thread": _new_consumer_thread})


def install(app: faust.App, max_wait_s: float) -> None:
    """Make `app`'s transport fetch with `max_wait_s`; call before the worker starts."""
    if max_wait_s <= 0:
        raise ValueError(f"fetch max wait must be positive, got {max_wait_s}")
    if getattr(app, "_consumer", None) is not None:
        raise RuntimeError("fetch_wait.install() must run before the app's consumer exists")
    transport = app.transport
    current = cast(type[faust_aiokafka.Consumer], transport.Consumer)
    if not issubclass(current, faust_aiokafka.Consumer):
        raise RuntimeError(f"fetch_wait needs Faust's aiokafka transport, not {current!r}")
    # An instance attribute, as consumer_guard does: only this app's transport is affected.
    vars(transport)["Consumer"] = short_fetch(current, max_wait_s)
    log.debug("fetch max wait %.3f s on %s", max_wait_s, type(transport).__name__)
