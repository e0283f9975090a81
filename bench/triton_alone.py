"""Scenario (a): Triton's own capacity, no Kafka. Preprocessed tensors are prepared in advance
and sent with grpc.aio as concurrent batched requests; a small sweep of (batch, concurrency)
finds the best client settings, since that is the ceiling the pipeline is compared against."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient

from bench.report import percentiles
from streams.imaging.dicom_io import read_image
from streams.imaging.preprocess import to_model_input

#: (studies per request, requests in flight); (1, 1) is the unbatched sequential client.
SWEEP: tuple[tuple[int, int], ...] = ((1, 1), (1, 16), (8, 8), (32, 4), (64, 4))


def prepared_tensors(pool: Sequence[Path]) -> np.ndarray:
    """The pool's images exactly as the worker feeds them to the model, stacked."""
    tensors = []
    for path in pool:
        image = read_image(path)
        tensors.append(to_model_input(image.pixels, photometric=image.photometric,
                                      slope=image.slope, intercept=image.intercept,
                                      window_center=image.window_center,
                                      window_width=image.window_width))
    return np.stack(tensors).astype(np.float32)


async def _load(url: str, model: str, tensors: np.ndarray, batch: int, concurrency: int,
                seconds: float, input_name: str, output_name: str) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(url)
    reps = -(-batch // len(tensors))
    data = np.ascontiguousarray(np.concatenate([tensors] * reps)[:batch])
    inputs = grpcclient.InferInput(input_name, list(data.shape), "FP32")
    inputs.set_data_from_numpy(data)
    outputs = [grpcclient.InferRequestedOutput(output_name)]
    latencies: list[float] = []
    done = 0
    stop_at = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            await client.infer(model, [inputs], outputs=outputs)
            latencies.append(time.perf_counter() - t0)
            done += batch

    try:
        await client.infer(model, [inputs], outputs=outputs)  # warm the channel and the model
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await client.close()
    return {"batch": batch, "concurrency": concurrency, "studies": done,
            "studies_per_s": done / elapsed, "request_latency_s": percentiles(latencies)}


def sweep(url: str, model: str, tensors: np.ndarray, seconds: float, *,
          input_name: str = "image", output_name: str = "lesion_score",
          points: Sequence[tuple[int, int]] = SWEEP) -> list[dict[str, Any]]:
    """One entry per client setting, in sweep order."""
    return [asyncio.run(_load(url, model, tensors, b, c, seconds, input_name, output_name))
            for b, c in points]
