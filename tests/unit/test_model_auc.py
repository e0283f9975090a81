"""The committed chest-xray model (cxr_lesion) still separates fresh studies, via the worker's path.

Fresh phantoms of the service's generator (a seed neither training nor held-out evaluation used)
are written as DICOM, read back with the worker's series reader and preprocessing
(tests/worker_path.py), then scored by the committed ONNX graph with onnxruntime and judged
against the operating threshold the worker reads from the model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from services.synth.phantoms.registry import phantom_module
from streams.analytics.auc import roc_auc
from streams.contract.catalog import ServiceSpec, catalog, model_card
from tests.worker_path import model_input

SERVICE = "chest-xray"
REPOSITORY = Path(__file__).resolve().parents[2] / "services" / "triton" / "model_repository"
FRESH_SEED = 777_001
N_STUDIES = 200


@pytest.fixture(scope="module")
def spec() -> ServiceSpec:
    (found,) = [s for s in catalog() if s.id == SERVICE]
    return found


@pytest.fixture(scope="module")
def batch(spec: ServiceSpec,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    card = model_card(spec.model)
    assert FRESH_SEED not in (card["seed"], card["heldout_seed"])
    module = phantom_module(SERVICE)
    (code,) = module.FINDINGS
    root = tmp_path_factory.mktemp("fresh")
    images, labels = [], []
    for i in range(N_STUDIES):
        rng = np.random.default_rng(np.random.SeedSequence([FRESH_SEED, i]))
        phantom = module.render(rng, frozenset([code]) if i % 2 else frozenset())
        images.append(model_input(spec, phantom, root, f"2.25.{FRESH_SEED}{i:04d}"))
        labels.append(phantom.labels[code])
    return np.stack(images), np.array(labels)


def _score(spec: ServiceSpec, images: np.ndarray) -> np.ndarray:
    path = REPOSITORY / spec.model / spec.model_version / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run([spec.output_name], {spec.input_name: images})
    return np.asarray(scores)


def test_model_auc_on_fresh_dicom_studies(spec: ServiceSpec,
                                          batch: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = batch
    scores = _score(spec, images)
    assert scores.shape == (N_STUDIES, 1) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.std() > 0.05, "scores are (nearly) constant"
    auc = roc_auc(labels, scores[:, 0])
    assert auc >= 0.9, f"AUC {auc:.3f} on fresh studies"
    # At the card's threshold (the one the worker applies) fresh studies get about the card's
    # sensitivity and specificity (0.1: the noise of 100 studies a class, and some margin).
    (finding,) = spec.findings
    row = model_card(spec.model)["findings"][finding.code]
    positive = scores[:, 0] >= finding.threshold
    assert positive[labels].mean() >= row["sensitivity"] - 0.1
    assert (~positive[~labels]).mean() >= row["specificity"] - 0.1


def test_model_is_deterministic(spec: ServiceSpec, batch: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = batch
    np.testing.assert_array_equal(_score(spec, images), _score(spec, images))
    # Batching must not change a study's score (Triton batches dynamically).
    np.testing.assert_allclose(_score(spec, images[:1]), _score(spec, images)[:1],
                               rtol=1e-5, atol=1e-6)
