"""The radstream Faust app: `faust -A streams.app worker -l info` (or `radstream worker`).

Agents live in `streams/agents/`; this module wires settings, topics, tables, the metrics
endpoint and the stats API together. Which AI-service agents a worker runs is chosen with
RADSTREAM_SERVICES, so a process can be dedicated to some services only.
"""

from __future__ import annotations

import gc
import logging

import faust
from prometheus_client import CollectorRegistry, start_http_server

from streams.contract import catalog, topics
from streams.kafka import consumer_guard, fetch_wait
from streams.metrics import create_metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

settings = Settings.from_env()

app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka}",
    # SASL_SSL + SCRAM when RADSTREAM_KAFKA_SECURITY=sasl_ssl; None keeps PLAINTEXT.
    broker_credentials=settings.kafka_security.faust_credentials(),
    store=settings.store,
    datadir=str(settings.datadir),
    web_host=settings.bind_host,
    web_port=settings.web_port,
    topic_partitions=topics.STUDY_PARTITIONS,
    consumer_auto_offset_reset=settings.offset_reset,
    # acks=all: an outcome counts as published only once the broker has it durably.
    producer_acks=-1,
    # Commit offsets often: what is committed is only ever what already has its outcome.
    broker_commit_every=200,
    # Outcomes of one micro-batch go out together: a few ms of linger turns a batch's Findings
    # and Latency events into a handful of produce requests instead of one per record.
    producer_linger=settings.producer_linger_s,
    broker_commit_interval=1.0,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
)
# A short fetch long-poll: Faust's 1.5 s made a busy worker run 1.5 s behind per hop.
fetch_wait.install(app, settings.fetch_max_wait_s)
# Faust 0.15 can commit past work items it never delivered after a rebalance (issue #5).
consumer_guard.install(app)

registry = CollectorRegistry()
metrics = create_metrics(registry)


def raw_topic(spec: topics.TopicSpec) -> faust.TopicT:
    """Bytes in, bytes out: we parse and validate ourselves, so bad JSON becomes a DeadLetter
    instead of a deserializer crash inside Faust."""
    return app.topic(spec.name, partitions=spec.partitions, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


studies_topic = raw_topic(topics.STUDIES)
findings_topic = raw_topic(topics.FINDINGS)
latency_topic = raw_topic(topics.LATENCY)
deadletter_topic = raw_topic(topics.DEADLETTER)
reviews_topic = raw_topic(topics.REVIEWS)
alerts_topic = raw_topic(topics.ALERTS)
work_topics = {s: raw_topic(topics.work_topic(s)) for s in topics.WORK_SERVICES}
priority_topics = {s: raw_topic(topics.work_topic(s, "priority"))
                   for s in topics.PRIORITY_LANE_SERVICES}
services = catalog.select(settings.services)


@app.task
async def quiet_root_logger() -> None:
    """Undo the DEBUG root logger Faust leaves behind at `-l warn` and above.

    Faust's start-up spinner sets the root logger to DEBUG so that every record ticks it: from
    then on each aiokafka and Faust debug call builds a LogRecord that the handler then drops,
    about 8 % of a busy worker's event loop. The root level goes back to the handlers' own.
    """
    root = logging.getLogger()
    handlers = [h for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    for spinner in set(root.handlers) - set(handlers):
        root.removeHandler(spinner)
    if handlers and root.level < min(h.level for h in handlers):
        root.setLevel(min(h.level for h in handlers))


#: Cyclic-GC thresholds for a worker (CPython's default is 700, 10, 10). A worker keeps one
#: table entry per study for the dedup horizon, hundreds of thousands of objects without cycles,
#: and with the default every few seconds a full collection walked all of them (about 100 ms on
#: the 2-core bench machine, freeing nothing) while studies waited. The counts are net
#: allocations: cycles still die young in generation 0, just in larger steps.
GC_THRESHOLDS = (10_000, 20, 10)


@app.task
async def tune_gc() -> None:
    """Freeze what start-up built (imports, Faust's services) out of the collector's reach,
    and collect in larger steps (see GC_THRESHOLDS; docs/performance.md, round 5)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@app.task
async def serve_metrics() -> None:
    start_http_server(settings.metrics_port, addr=settings.bind_host, registry=registry)
    log.info("metrics: http://%s:%d/metrics", settings.bind_host, settings.metrics_port)


# Agents register themselves on import; imported last because they use `app` above.
from streams.agents import aggregate, inference, intake, lag, quality, router  # noqa: E402, F401
from streams.web import dashboard  # noqa: E402, F401
