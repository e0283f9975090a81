"""What every part of a worker is given: its settings, its Faust app, its metrics and the
contract's topics, made once by `new_context()` (streams/worker.py builds the whole worker on it).

Nothing here registers an agent, opens a connection or starts a process: creating a Faust app
and its topic objects only declares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.web.base import BlueprintManager
from prometheus_client import CollectorRegistry

from streams.contract import catalog, topics
from streams.contract.catalog import ServiceSpec
from streams.contract.topics import TopicSpec
from streams.kafka import consumer_guard, fetch_wait
from streams.metrics import Metrics, create_metrics
from streams.settings import Settings


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    app: faust.App
    #: Registry of the worker's own /metrics endpoint (never the process-global one).
    registry: CollectorRegistry
    metrics: Metrics
    #: Faust topic objects by topic name: every contract topic (work lanes included).
    topics: dict[str, faust.TopicT]
    #: AI services this worker runs inference agents for (RADSTREAM_SERVICES).
    services: tuple[ServiceSpec, ...]

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.topics[spec.name]



def raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> faust.TopicT:
    """Bytes in, bytes out: agents parse and validate themselves, so bad JSON becomes a
    DeadLetter instead of a deserializer crash inside Faust."""
    return app.topic(*names, partitions=partitions, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def new_app(settings: Settings) -> faust.App:
    """The Faust app configured for radstream; no agent, table or page yet."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka}",
        # SASL_SSL + SCRAM when RADSTREAM_KAFKA_SECURITY=sasl_ssl; None keeps PLAINTEXT.
        broker_credentials=settings.kafka_security.faust_credentials(),
        store=settings.store,
        datadir=str(settings.datadir),
        # Faust listens on web_bind (0.0.0.0 unless set) and only names web_host in URLs.
        web_bind=settings.bind_host,
        web_host=settings.bind_host,
        web_port=settings.web_port,
        topic_partitions=topics.STUDY_PARTITIONS,
        consumer_auto_offset_reset=settings.offset_reset,
        # acks=all: an outcome counts as published only once the broker has it durably.
        producer_acks=-1,
        # Commit offsets often: what is committed is only ever what already has its outcome.
        broker_commit_every=200,
        # Outcomes of one micro-batch go out together: a few ms of linger turns a batch's
        # Findings and Latency events into a handful of produce requests instead of one each.
        producer_linger=settings.producer_linger_s,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
    )
    # Only the routes README documents are served: Faust's own (/table/{name}/{key} reads any
    # table entry, i.e. per-study quality joins; /router lists the cluster; / and the debug
    # pages) are not mounted. Our pages are views, not blueprints, so they stay.
    app.web.blueprints = BlueprintManager()
    # A short fetch long-poll: Faust's 1.5 s made a busy worker run 1.5 s behind per hop.
    fetch_wait.install(app, settings.fetch_max_wait_s)
    # Faust 0.15 can commit past work items it never delivered after a rebalance (issue #5).
    consumer_guard.install(app)
    return app


def new_context(settings: Settings) -> WorkerContext:
    app = new_app(settings)
    registry = CollectorRegistry()
    by_name = {spec.name: raw_topic(app, spec.name, partitions=spec.partitions)
               for spec in topics.all_topics()}
    return WorkerContext(settings=settings, app=app, registry=registry,
                         metrics=create_metrics(registry), topics=by_name,
                         services=tuple(catalog.select(settings.services)))
