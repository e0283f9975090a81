"""Async Triton client adapter: one batched inference call with capped, jittered retries.

Workers send a whole micro-batch as one request; concurrent requests from several agents or
workers are merged again by Triton's dynamic batcher on the server side.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

log = logging.getLogger(__name__)


class InferenceUnavailable(Exception):
    """Triton did not answer after every retry."""


def backoff_s(attempt: int, *, base: float = 0.2, cap: float = 5.0,
              rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rand() * min(cap, base * (2 ** attempt))


class TritonModelClient:
    def __init__(self, url: str, *, attempts: int = 6, max_batch: int = 64,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self._url = url
        self._client: grpcclient.InferenceServerClient | None = None
        self._attempts = attempts
        self._max_batch = max_batch
        self._on_retry = on_retry

    def _get(self) -> grpcclient.InferenceServerClient:
        # Created lazily inside the running event loop: grpc.aio channels bind to it.
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self._url)
        return self._client

    async def infer(self, model: str, version: str, input_name: str, output_name: str,
                    batch: np.ndarray) -> np.ndarray:
        """Run `batch` (leading batch axis) through `model`; return the output rows in order."""
        chunks = [batch[i:i + self._max_batch] for i in range(0, len(batch), self._max_batch)]
        outs = await asyncio.gather(*(
            self._infer_chunk(model, version, input_name, output_name, c) for c in chunks))
        return np.concatenate(outs, axis=0)

    async def _infer_chunk(self, model: str, version: str, input_name: str, output_name: str,
                           chunk: np.ndarray) -> np.ndarray:
        inp = grpcclient.InferInput(input_name, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        out = grpcclient.InferRequestedOutput(output_name)
        last: Exception | None = None
        for attempt in range(self._attempts):
            try:
                result = await self._get().infer(model, [inp], model_version=version,
                                                 outputs=[out])
                array = result.as_numpy(output_name)
                if array is None:
                    raise InferenceServerException(f"no output {output_name!r} from {model}")
                return array
            except (InferenceServerException, OSError) as exc:
                last = exc
                if self._on_retry is not None:
                    self._on_retry(model)
                delay = backoff_s(attempt)
                log.warning("triton %s attempt %d/%d failed (%s); retrying in %.2fs",
                            model, attempt + 1, self._attempts, exc, delay)
                await asyncio.sleep(delay)
        raise InferenceUnavailable(f"{model}: {last}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
