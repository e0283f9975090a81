"""One study Triton refuses must not fail its batch-mates, against the real Triton: the served
models refuse a whole request that holds one non-finite value, and the worker's client then
isolates the refused item so that every other item of the batch still gets its scores."""

from __future__ import annotations

import numpy as np
import pytest

from services.synth.phantoms.registry import phantom_module
from streams.contract.catalog import ServiceSpec, catalog
from streams.imaging.preprocess import to_series_input
from streams.triton.client import InferenceRejected, TritonModelClient

pytestmark = pytest.mark.integration

TRITON_GRPC = "127.0.0.1:8001"
#: A one-output model and the one with a measurement output (a score and an angle).
SERVICES = [s for s in catalog() if s.id in ("chest-xray", "foot-xray")]


def _outputs(spec: ServiceSpec) -> tuple[str, ...]:
    return (spec.output_name, spec.measurement_output) if spec.measurement_output \
        else (spec.output_name,)


def _batch(spec: ServiceSpec, n: int) -> np.ndarray:
    """Tensors of the service's own phantoms, through the worker's preprocessing."""
    module = phantom_module(spec.id)
    tensors = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([20261204, i]))
        phantom = module.render(rng, frozenset(module.FINDINGS) if i % 2 else frozenset())
        tensors.append(to_series_input(phantom.pixels, spec.preprocess,
                                       photometric=phantom.photometric, slope=phantom.slope,
                                       intercept=phantom.intercept))
    return np.stack(tensors)


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.id)
async def test_one_bad_item_does_not_fail_its_batch(spec: ServiceSpec, services: None) -> None:
    n, bad = 12, 7
    batch = _batch(spec, n)
    client = TritonModelClient(TRITON_GRPC, attempts=2)
    try:
        clean = await client.infer_outputs(spec.model, spec.model_version, spec.input_name,
                                           _outputs(spec), batch)
        poisoned = batch.copy()
        poisoned[bad, 0, 3, 3] = np.nan
        # What the agent used to call: one refused item refuses the whole batch.
        with pytest.raises(InferenceRejected, match="finite"):
            await client.infer_outputs(spec.model, spec.model_version, spec.input_name,
                                       _outputs(spec), poisoned)
        rows = await client.infer_rows(spec.model, spec.model_version, spec.input_name,
                                       _outputs(spec), poisoned)
    finally:
        await client.close()

    assert len(rows) == n
    refused = [i for i, row in enumerate(rows) if isinstance(row, InferenceRejected)]
    assert refused == [bad]
    for i, row in enumerate(rows):
        if i == bad:
            continue
        assert not isinstance(row, InferenceRejected)
        for k, values in enumerate(row):
            # The same scores (and measurements) the clean batch got, item by item.
            np.testing.assert_allclose(values, clean[k][i], rtol=1e-5, atol=1e-6)
        assert np.isfinite(row[0]).all() and (row[0] >= 0).all() and (row[0] <= 1).all()
