"""A radstream worker, built: `build_app(settings)` makes the Faust app and registers every
agent, timer and page on it (streams/app.py calls it for `faust -A streams.app worker`).

Which AI-service agents a worker runs is chosen with RADSTREAM_SERVICES, so a process can be
dedicated to some services only. Building starts nothing: no process pool, no Triton channel,
no HTTP server; those start with the worker (Faust tasks and services).
"""

from __future__ import annotations

import gc
import logging

from prometheus_client import start_http_server

from streams.agents import aggregate, inference, intake, lag, quality, router
from streams.context import WorkerContext, new_context
from streams.settings import Settings
from streams.web import dashboard

log = logging.getLogger(__name__)

#: Cyclic-GC thresholds for a worker (CPython's default is 700, 10, 10). A worker keeps one
#: table entry per study for the dedup horizon, hundreds of thousands of objects without cycles,
#: and with the default every few seconds a full collection walked all of them (about 100 ms on
#: the 2-core bench machine, freeing nothing) while studies waited. The counts are net
#: allocations: cycles still die young in generation 0, just in larger steps.
GC_THRESHOLDS = (10_000, 20, 10)


def build_app(settings: Settings) -> WorkerContext:
    """The worker for `settings`: its Faust app with every agent, table, timer and page."""
    ctx = new_context(settings)
    router.register(ctx)
    intake.register(ctx)
    inference.register(ctx)
    aggregate.register(ctx)
    quality.register(ctx)
    lag.register(ctx)
    dashboard.register(ctx.app)
    _register_process_tasks(ctx)
    return ctx


def _register_process_tasks(ctx: WorkerContext) -> None:
    settings, app = ctx.settings, ctx.app

    @app.task
    async def quiet_root_logger() -> None:
        """Undo the DEBUG root logger Faust leaves behind at `-l warn` and above.

        Faust's start-up spinner sets the root logger to DEBUG so that every record ticks it:
        from then on each aiokafka and Faust debug call builds a LogRecord that the handler
        then drops, about 8 % of a busy worker's event loop. The root level goes back to the
        handlers' own.
        """
        root = logging.getLogger()
        handlers = [h for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
        for spinner in set(root.handlers) - set(handlers):
            root.removeHandler(spinner)
        if handlers and root.level < min(h.level for h in handlers):
            root.setLevel(min(h.level for h in handlers))

    @app.task
    async def tune_gc() -> None:
        """Freeze what start-up built (imports, Faust's services) out of the collector's reach,
        and collect in larger steps (see GC_THRESHOLDS; docs/performance.md, round 5)."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    @app.task
    async def serve_metrics() -> None:
        start_http_server(settings.metrics_port, addr=settings.bind_host,
                          registry=ctx.registry)
        log.info("metrics: http://%s:%d/metrics", settings.bind_host, settings.metrics_port)
