"""The committed cxr_lesion model still separates fresh studies, via the worker's own path.

Fresh phantoms (a seed neither training nor held-out evaluation used) are written as DICOM,
read back with streams.imaging.dicom_io and normalised with streams.imaging.preprocess, exactly as
a worker
would, then scored by the committed ONNX graph with onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from services.synth.city import generate_service_studies
from streams.analytics.auc import roc_auc
from streams.contract.catalog import MODEL_CARDS
from streams.imaging.dicom_io import read_image_from_uri
from streams.imaging.preprocess import to_model_input

TRITON = Path(__file__).resolve().parents[2] / "services" / "triton"
MODEL = TRITON / "model_repository" / "cxr_lesion" / "1" / "model.onnx"
CARD = MODEL_CARDS / "cxr_lesion.json"
FRESH_SEED = 777_001
N_STUDIES = 200


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    card = json.loads(CARD.read_text())
    assert FRESH_SEED not in (card["seed"], card["heldout_seed"])
    root = tmp_path_factory.mktemp("fresh")
    truths = generate_service_studies(root, N_STUDIES, seed=FRESH_SEED,
                                      prevalence={"lung_nodule": 0.5})
    images = []
    for t in truths:
        img = read_image_from_uri(t.files[0].as_uri(), [root])
        images.append(
            to_model_input(
                img.pixels,
                photometric=img.photometric,
                slope=img.slope,
                intercept=img.intercept,
                window_center=img.window_center,
                window_width=img.window_width,
            )
        )
    return np.stack(images), np.array([t.labels["lung_nodule"] for t in truths])


def _score(images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["lesion_score"], {"image": images})
    return np.asarray(scores)


def test_model_auc_on_fresh_dicom_studies(batch: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = batch
    scores = _score(images)
    assert scores.shape == (N_STUDIES, 1) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.std() > 0.05, "scores are (nearly) constant"
    auc = roc_auc(labels, scores[:, 0])
    assert auc >= 0.9, f"AUC {auc:.3f} on fresh studies"


def test_model_is_deterministic(batch: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = batch
    np.testing.assert_array_equal(_score(images), _score(images))
    # Batching must not change a study's score (Triton batches dynamically).
    np.testing.assert_allclose(_score(images[:1]), _score(images)[:1], rtol=1e-5, atol=1e-6)
