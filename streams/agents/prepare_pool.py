"""Where inference agents read and preprocess studies: worker processes by default, threads on
request (RADSTREAM_PREPROCESS_PROCESSES=0), a thread of its own for priority work.

Why processes: decoding and preprocessing hold Python's GIL for most of their time, and so did
the event loop's work for every other study; with the image work in threads a worker used one
core. In a process of its own (or several) it runs beside the event loop on another core. The
tensors come back pickled (a few hundred kilobytes per study, well under a millisecond).

A worker process that dies (killed, out of memory, a crash in a decoder) breaks the whole pool
and fails every study in it. Those studies are then prepared again in this process's threads,
so none of them is lost or dead-lettered for someone else's file, and a fresh pool takes the
next ones. A file that crashes the decoder in a thread takes the worker down as it did before
processes (Kafka redelivers its batch to a worker that restarts).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, cast

import numpy as np

from streams.contract.catalog import ServiceSpec
from streams.imaging.preparation import (
    ReadLimits,
    load_and_preprocess,
    load_and_preprocess_many,
    start_worker_process,
)

log = logging.getLogger(__name__)

Prepared = tuple[np.ndarray, float, float]


class PreparePool:
    """Runs streams.imaging.preparation.load_and_preprocess off the event loop."""

    def __init__(self, limits: ReadLimits, *, processes: int, threads: int) -> None:
        self.limits = limits
        self._processes = processes
        # Spawned, not forked: the worker has gRPC and Kafka client threads a fork would copy.
        self._context = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = self._new_pool() if processes > 0 else None
        self._threads = ThreadPoolExecutor(max(1, threads), thread_name_prefix="preprocess")
        # Priority work never queues behind routine batches in the shared pools.
        self._priority = ThreadPoolExecutor(1, thread_name_prefix="preprocess-priority")
        self.broken = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        # Each process's memory is bounded (limits.max_prepare_bytes): a study that needs more
        # fails alone with its reason instead of the OOM killer taking the process or the worker.
        return ProcessPoolExecutor(self._processes, mp_context=self._context,
                                   initializer=start_worker_process,
                                   initargs=(os.getpid(), self.limits.max_prepare_bytes))

    async def prepare(self, spec: ServiceSpec, study: dict[str, Any], *,
                      priority: bool = False) -> Prepared:
        """One study; raises what reading or preprocessing it raised."""
        result = (await self.prepare_many(spec, [study], priority=priority))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def prepare_many(self, spec: ServiceSpec, studies: list[dict[str, Any]], *,
                           priority: bool = False) -> list[Prepared | Exception]:
        """`prepare` for a batch, each result or exception in its study's place.

        Routine batches go to the processes in one chunk per process: one round trip each
        rather than one per study. Per-study tasks left the processes idle half the time,
        waiting for the worker's GIL-bound hand-off of every task and result.
        """
        if not studies:
            return []
        loop = asyncio.get_running_loop()
        pool = self._pool
        if priority or pool is None:
            executor: Executor = self._priority if priority else self._threads
            return await self._each(executor, spec, studies)
        size = -(-len(studies) // self._processes)
        chunks = [studies[i:i + size] for i in range(0, len(studies), size)]
        try:
            parts = await asyncio.gather(*(
                loop.run_in_executor(pool, load_and_preprocess_many, spec, chunk, self.limits)
                for chunk in chunks))
        except BrokenProcessPool:
            self._replace(pool)
            return await self._each(self._threads, spec, studies)
        return [result for part in parts for result in part]

    async def _each(self, executor: Executor, spec: ServiceSpec,
                    studies: list[dict[str, Any]]) -> list[Prepared | Exception]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(
            loop.run_in_executor(executor, load_and_preprocess, spec, study, self.limits)
            for study in studies), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation and the like are not a study's outcome
        return cast(list[Prepared | Exception], results)

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:  # the first caller to see it broken replaces the pool
            self.broken += 1
            log.error("preprocess: a worker process died; restarting the pool and "
                      "preparing its studies in threads")
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first study (about a second)."""
        if self._pool is not None:
            for _ in range(self._processes):
                self._pool.submit(int)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._priority.shutdown(wait=False, cancel_futures=True)
