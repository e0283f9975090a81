"""One item Triton refuses must not cost its batch-mates their answers: the client splits a
rejected batch until the refused items stand alone (streams/triton/client.py). The server here
is a stand-in that refuses any request holding a NaN, as the real models do
(tests/integration/test_triton_isolation.py runs the same against the real Triton)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from streams.triton.client import InferenceRejected, TritonModelClient


class _Result:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self._outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self._outputs.get(name)


class _NanRefusingServer:
    """Answers score = mean of each item, measurement = max; refuses a request with a NaN."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    async def infer(self, model: str, inputs: list[grpcclient.InferInput],
                    **_: Any) -> _Result:
        (inp,) = inputs
        batch = np.frombuffer(inp._raw_content, np.float32).reshape(inp.shape())
        self.requests.append(len(batch))
        if not np.isfinite(batch).all():
            raise InferenceServerException("image contains non-finite values",
                                           status="StatusCode.INTERNAL")
        flat = batch.reshape(len(batch), -1)
        return _Result({"score": flat.mean(axis=1, keepdims=True),
                        "value": flat.max(axis=1)})

    async def close(self) -> None:
        pass


def _client(server: _NanRefusingServer, attempts: int = 2,
            max_batch: int = 64) -> TritonModelClient:
    client = TritonModelClient("unused:0", attempts=attempts, max_batch=max_batch)
    client._client = server  # the stand-in speaks the calls the client makes
    return client


def _batch(n: int, bad: tuple[int, ...]) -> np.ndarray:
    batch = np.random.default_rng(n).random((n, 2, 3), dtype=np.float32)
    for i in bad:
        batch[i, 1, 2] = np.nan if i % 2 else np.inf
    return batch


@pytest.mark.parametrize(("n", "bad"), [(8, (5,)), (13, (0, 12)), (64, (17, 18, 40)),
                                        (1, (0,)), (5, ())])
async def test_only_refused_items_lose_their_answer(n: int, bad: tuple[int, ...]) -> None:
    server = _NanRefusingServer()
    batch = _batch(n, bad)
    rows = await _client(server).infer_rows("m", "1", "image", ("score", "value"), batch)
    assert len(rows) == n
    for i, row in enumerate(rows):
        if i in bad:
            assert isinstance(row, InferenceRejected)
            assert "non-finite" in str(row)
        else:
            assert not isinstance(row, InferenceRejected)
            score, value = row
            np.testing.assert_allclose(score, [batch[i].mean()], rtol=1e-6)
            assert value == batch[i].max()


async def test_a_clean_batch_is_one_request() -> None:
    server = _NanRefusingServer()
    await _client(server).infer_rows("m", "1", "image", ("score",), _batch(32, ()))
    assert server.requests == [32]


async def test_one_bad_item_costs_a_logarithmic_number_of_requests() -> None:
    server = _NanRefusingServer()
    await _client(server, attempts=2).infer_rows("m", "1", "image", ("score",),
                                                 _batch(64, (37,)))
    # The batch, two halves at each of 6 levels, then the bad item's second attempt: items
    # sent again are about 3x the batch, not a retry of all 64 per attempt.
    assert len(server.requests) == 1 + 2 * 6 + 1
    assert sum(server.requests) == 64 + 2 * (32 + 16 + 8 + 4 + 2 + 1) + 1


async def test_infer_outputs_still_refuses_a_batch_with_a_refused_item() -> None:
    server = _NanRefusingServer()
    client = _client(server)
    with pytest.raises(InferenceRejected):
        await client.infer_outputs("m", "1", "image", ("score",), _batch(4, (2,)))
    (scores,) = await client.infer_outputs("m", "1", "image", ("score",), _batch(4, ()))
    assert scores.shape == (4, 1)


async def test_chunks_above_max_batch_are_isolated_separately() -> None:
    server = _NanRefusingServer()
    rows = await _client(server, max_batch=4).infer_rows("m", "1", "image", ("score",),
                                                          _batch(10, (9,)))
    assert [isinstance(r, InferenceRejected) for r in rows] == [False] * 9 + [True]
    assert server.requests[:3] == [4, 4, 2]
