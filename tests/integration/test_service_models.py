"""Every catalog service's model is served by the real Triton and meets its model card on
phantoms generated fresh for this test (a seed no training script uses), read back through the
worker's own DICOM series reader and preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from services.synth.phantoms.registry import phantom_module
from streams.analytics.auc import roc_auc
from streams.contract.catalog import ServiceSpec, catalog, model_card
from tests.worker_path import model_input

pytestmark = pytest.mark.integration

#: Fresh phantoms per service: enough positives and negatives for an AUC estimate whose noise
#: (about +-0.02 at 300) does not decide a model that sits near its target.
STUDIES = 300
#: Not a seed any training script or model card uses.
SEED = 880_001


def _tensors(spec: ServiceSpec, root: Path) -> tuple[np.ndarray, dict[str, list[bool]]]:
    module = phantom_module(spec.id)
    labels: dict[str, list[bool]] = {f.code: [] for f in spec.findings}
    tensors = []
    for i in range(STUDIES):
        rng = np.random.default_rng(np.random.SeedSequence([SEED, i]))
        positives = frozenset(c for c in module.FINDINGS if rng.random() < module.PREVALENCE[c])
        phantom = module.render(rng, positives)
        tensors.append(model_input(spec, phantom, root, f"2.25.{SEED}{i:05d}"))
        for f in spec.findings:
            labels[f.code].append(phantom.labels[f.code])
    return np.stack(tensors), labels


@pytest.mark.parametrize("spec", catalog(), ids=lambda s: s.id)
def test_model_is_served_and_meets_its_card(spec: ServiceSpec, services: None,
                                            tmp_path: Path) -> None:
    client = grpcclient.InferenceServerClient("127.0.0.1:8001")
    assert client.is_model_ready(spec.model, spec.model_version), f"{spec.model} not ready"
    meta = client.get_model_metadata(spec.model, spec.model_version)
    inputs = {t.name: [int(d) for d in t.shape] for t in meta.inputs}
    outputs = {t.name: [int(d) for d in t.shape] for t in meta.outputs}
    prep = spec.preprocess
    assert inputs[spec.input_name][1:] == [prep.channels, prep.size, prep.size]
    assert outputs[spec.output_name][1:] == [len(spec.findings)]

    batch, labels = _tensors(spec, tmp_path)
    wanted = [spec.output_name] + ([spec.measurement_output] if spec.measurement_output else [])
    parts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for start in range(0, len(batch), 32):  # within every model's max_batch_size
        chunk = batch[start:start + 32].astype(np.float32)
        inp = grpcclient.InferInput(spec.input_name, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk)
        result = client.infer(spec.model, [inp], model_version=spec.model_version,
                              outputs=[grpcclient.InferRequestedOutput(n) for n in wanted])
        for n in wanted:
            array = result.as_numpy(n)
            assert array is not None, f"{spec.model} returned no {n}"
            parts[n].append(array)
    scores = np.concatenate(parts[spec.output_name])
    assert scores.shape == (STUDIES, len(spec.findings))
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    if spec.measurement_output:
        values = np.concatenate(parts[spec.measurement_output])
        assert np.isfinite(values).mean() > 0.95

    card = model_card(spec.model)
    report = []
    for f in spec.findings:
        y = np.array(labels[f.code])
        assert 0 < y.sum() < len(y), f"{f.code}: fresh phantoms need both classes"
        auc = roc_auc(y, scores[:, f.output_index])
        target = card.get("findings", {}).get(f.code, {}).get("auc_target", 0.9)
        report.append(f"{f.code} AUC {auc:.3f} (card target {target})")
        assert auc >= target, f"{spec.id}/{f.code}: AUC {auc:.3f} < {target} on fresh phantoms"
    print(f"\n{spec.id}: " + "; ".join(report))
