"""Async Triton client adapter: batched inference with a circuit breaker and jittered retries.

Workers send a whole micro-batch as one request; concurrent requests from several agents or
workers are merged again by Triton's dynamic batcher on the server side.

Two kinds of failure are treated differently:
- Triton unavailable or too slow (connection refused, UNAVAILABLE, deadline exceeded, model not
  ready): the study is fine, the server is not. Retry with capped, jittered backoff behind a
  circuit breaker, for as long as it takes; the batch is not acknowledged meanwhile, so the lag
  grows and drains after recovery and nothing is lost.
- Triton rejects the request (invalid argument, internal model error, a non-finite input):
  retrying will not help for ever, and the fault may be one item's. A rejected batch is split in
  halves and each half sent again, down to single items, so only the items Triton refuses on
  their own are lost (:meth:`TritonModelClient.infer_rows`); a single item is tried `attempts`
  times before it is given up as `InferenceRejected` and its study dead-lettered with
  `inference_failed`. One bad item among n costs its batch-mates about 2 log2(n) extra
  requests, not their Findings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from streams.triton.circuit import CircuitBreaker, CircuitState

log = logging.getLogger(__name__)

#: gRPC status codes that mean "the server is not there or not keeping up", not "bad request".
_UNAVAILABLE_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED",
                      "UNKNOWN")


class InferenceRejected(Exception):
    """Triton kept refusing this request; the inputs, not the server, are the problem."""


#: One batch item's answer: its row of every requested output, or why Triton refused it.
RowResult = list[np.ndarray] | InferenceRejected


def backoff_s(attempt: int, *, base: float = 0.2, cap: float = 5.0,
              rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rand() * min(cap, base * (2 ** attempt))


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        text = str(exc.message() or "").lower()
        return (any(code in status for code in _UNAVAILABLE_CODES)
                or "not ready" in text or "unavailable" in text)
    return False


class TritonModelClient:
    def __init__(self, url: str, *, attempts: int = 6, max_batch: int = 64,
                 timeout_s: float = 30.0, breaker: CircuitBreaker | None = None,
                 on_retry: Callable[[str], None] | None = None,
                 on_circuit: Callable[[str, CircuitState], None] | None = None) -> None:
        self._url = url
        self._client: grpcclient.InferenceServerClient | None = None
        self._attempts = attempts
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._breaker = breaker or CircuitBreaker()
        self._on_retry = on_retry
        self._on_circuit = on_circuit

    @property
    def circuit(self) -> CircuitState:
        return self._breaker.state

    def _get(self) -> grpcclient.InferenceServerClient:
        # Created lazily inside the running event loop: grpc.aio channels bind to it.
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self._url)
        return self._client

    async def infer(self, model: str, version: str, input_name: str, output_name: str,
                    batch: np.ndarray) -> np.ndarray:
        """Run `batch` (leading batch axis) through `model`; return the output rows in order."""
        (out,) = await self.infer_outputs(model, version, input_name, (output_name,), batch)
        return out

    async def infer_outputs(self, model: str, version: str, input_name: str,
                            output_names: tuple[str, ...], batch: np.ndarray) -> list[np.ndarray]:
        """Like :meth:`infer` for a model with several outputs (a score and a measurement).

        Raises:
            InferenceRejected: when Triton refuses any item (see :meth:`infer_rows` to keep the
                answers of the others).
        """
        rows = await self.infer_rows(model, version, input_name, output_names, batch)
        answered: list[list[np.ndarray]] = []
        for row in rows:
            if isinstance(row, InferenceRejected):
                raise row
            answered.append(row)
        return [np.stack([row[k] for row in answered]) if answered
                else np.empty((0,), np.float32) for k in range(len(output_names))]

    async def infer_rows(self, model: str, version: str, input_name: str,
                         output_names: tuple[str, ...], batch: np.ndarray) -> list[RowResult]:
        """Run `batch` through `model`: for each item in order, its row of every output, or the
        InferenceRejected of an item Triton refuses even on its own. The items Triton answers
        always get their rows, whatever the others hold."""
        chunks = [batch[i:i + self._max_batch] for i in range(0, len(batch), self._max_batch)]
        parts = await asyncio.gather(*(
            self._isolate(model, version, input_name, output_names, c) for c in chunks))
        return [row for part in parts for row in part]

    async def _isolate(self, model: str, version: str, input_name: str,
                       output_names: tuple[str, ...], chunk: np.ndarray) -> list[RowResult]:
        """Send `chunk`; if Triton refuses it, send each half (and so on down to single items)
        so that the items it answers are not lost with the one it cannot."""
        alone = len(chunk) == 1
        try:
            # A rejected chunk is retried by its halves; only a single item has retries of
            # its own before it is given up.
            arrays = await self._infer_chunk(model, version, input_name, output_names, chunk,
                                             rejections=self._attempts if alone else 1)
        except InferenceRejected as exc:
            if alone:
                return [exc]
            half = len(chunk) // 2
            first, second = await asyncio.gather(
                self._isolate(model, version, input_name, output_names, chunk[:half]),
                self._isolate(model, version, input_name, output_names, chunk[half:]))
            return first + second
        return [[a[i] for a in arrays] for i in range(len(chunk))]

    def _note_circuit(self, model: str, before: CircuitState) -> None:
        after = self._breaker.state
        if after is not before:
            log.warning("triton circuit for %s: %s -> %s", model, before.name, after.name)
            if self._on_circuit is not None:
                self._on_circuit(model, after)

    async def _infer_chunk(self, model: str, version: str, input_name: str,
                           output_names: tuple[str, ...], chunk: np.ndarray, *,
                           rejections: int) -> list[np.ndarray]:
        """One request, retried while Triton is unavailable (for as long as it takes) or until
        it has rejected the request `rejections` times."""
        inp = grpcclient.InferInput(input_name, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        outs = [grpcclient.InferRequestedOutput(name) for name in output_names]
        rejected = 0
        attempt = 0
        while True:
            before = self._breaker.state
            wait = self._breaker.wait_s(time.monotonic())
            self._note_circuit(model, before)
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                # gRPC's own deadline does not fire while a request is stuck behind a frozen
                # server's flow-control window; asyncio's does.
                result = await asyncio.wait_for(
                    self._get().infer(model, [inp], model_version=version, outputs=outs,
                                      client_timeout=self._timeout_s),
                    timeout=self._timeout_s + 0.5)
                arrays = [result.as_numpy(name) for name in output_names]
                missing = [n for n, a in zip(output_names, arrays, strict=True) if a is None]
                if missing:
                    raise InferenceServerException(f"no output {missing} from {model}")
                rows = [len(a) for a in arrays if a is not None]
                if any(n != len(chunk) for n in rows):
                    raise InferenceServerException(
                        f"{model} answered {rows} rows for {len(chunk)} items")
                before = self._breaker.state
                self._breaker.record_success()
                self._note_circuit(model, before)
                return [a for a in arrays if a is not None]
            except (InferenceServerException, OSError, TimeoutError) as exc:
                if self._on_retry is not None:
                    self._on_retry(model)
                if not is_unavailable(exc):
                    # A rejected request says nothing about the server's health: it must not
                    # open the circuit that every other model's calls go through.
                    rejected += 1
                    if rejected >= rejections:
                        raise InferenceRejected(f"{model}: {exc}") from exc
                else:
                    before = self._breaker.state
                    self._breaker.record_failure(time.monotonic())
                    self._note_circuit(model, before)
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("triton %s call failed (%s); retry %d in %.2fs", model,
                            f"{type(exc).__name__}: {str(exc)[:200]}", attempt, delay)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
