"""The foot_arch measurement (flat foot) on fresh phantoms, and its Triton-free model core.

The algorithm lives beside the Triton model (services/triton/model_repository/foot_arch/1/
arch_measure.py, loaded by model.py from its own directory), so the tests import the model by
path; its evaluation lives with training (services/training/evaluate_foot_arch.py). Phantoms
here use a seed that neither development (card "seed") nor the card's held-out evaluation used.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from services.synth.phantoms import foot_xray
from services.training import evaluate_foot_arch
from streams.analytics.auc import roc_auc
from streams.contract.catalog import MODEL_CARDS, PreprocessSpec
from streams.imaging.preprocess import to_series_input

MODEL_DIR = evaluate_foot_arch.MODEL_DIR
CARD = MODEL_CARDS / "foot_arch.json"
FRESH_SEED = 777
FRESH_N = 150


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_module() -> ModuleType:
    return _load("foot_arch_model_under_test", MODEL_DIR / "1" / "model.py")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def fresh() -> dict[str, np.ndarray]:
    return evaluate_foot_arch.measure_phantoms(FRESH_N, FRESH_SEED)


def test_fresh_phantoms_meet_the_card(fresh: dict[str, np.ndarray], card: dict) -> None:
    err = np.abs(fresh["measured"] - fresh["truth"])
    assert int(fresh["failed"]) == 0
    assert err.mean() <= card["mae_bound_deg"]
    assert fresh["labels"].any() and (~fresh["labels"]).any()
    auc = roc_auc(fresh["labels"], fresh["measured"])
    assert auc >= card["findings"]["flat_foot"]["auc_target"]


def test_card_keys_and_one_threshold(card: dict) -> None:
    params = evaluate_foot_arch.config_parameters()
    assert float(params["angle_threshold_deg"]) == foot_xray.ANGLE_THRESHOLD_DEG
    assert card["angle_threshold_deg"] == foot_xray.ANGLE_THRESHOLD_DEG
    assert card["angle_scale_deg"] == float(params["angle_scale_deg"])
    for key in ("model", "version", "service", "not_for_clinical_use", "findings", "heldout_n",
                "heldout_seed", "train_n", "seed", "training_seconds", "input", "output",
                "mean_abs_error_deg"):
        assert key in card
    assert card["not_for_clinical_use"] is True and card["heldout_seed"] != card["seed"]
    f = card["findings"]["flat_foot"]
    assert f["threshold"] == 0.5 and f["auc_target"] == 0.9 and f["heldout_auc"] >= 0.9
    assert card["mean_abs_error_deg"] <= card["mae_bound_deg"]


def test_model_core_scores_and_angles_a_batch(model_module: ModuleType) -> None:
    model = model_module.ArchModel.from_config({"parameters": {
        "angle_threshold_deg": {"string_value": "140"},
        "angle_scale_deg": {"string_value": "3"}}})
    spec = PreprocessSpec(size=128)
    images, truths = [], []
    for seed, flat in ((1, False), (2, True), (3, False), (4, True)):
        ph = foot_xray.render(np.random.default_rng(seed),
                              frozenset(["flat_foot"]) if flat else frozenset())
        images.append(to_series_input(ph.pixels, spec))
        truths.append(ph.measurements["flat_foot"])
    scores, angles = model.run(np.stack(images))
    assert scores.shape == (4, 1) and angles.shape == (4, 1) and scores.dtype == np.float32
    np.testing.assert_allclose(angles[:, 0], truths, atol=5.0)
    expected = 1.0 / (1.0 + np.exp(-(angles[:, 0] - 140.0) / 3.0))
    np.testing.assert_allclose(scores[:, 0], expected, rtol=1e-5)
    assert ((scores[:, 0] > 0.5) == (np.array(truths) > 140.0)).all()


def test_model_core_rejects_an_image_without_an_arch(model_module: ModuleType) -> None:
    model = model_module.ArchModel(140.0, 3.0)
    with pytest.raises(ValueError):
        model.run(np.zeros((1, 1, 128, 128), dtype=np.float32))
    with pytest.raises(ValueError):
        model.run(np.zeros((1, 128, 128), dtype=np.float32))
    field = np.zeros((1, 1, 128, 128), dtype=np.float32)
    field[0, 0, 20:100, 20:100] = 0.5  # tissue but no bone band
    with pytest.raises(ValueError):
        model.run(field)


def test_measurement_is_mirror_symmetric(model_module: ModuleType) -> None:
    ph = foot_xray.render(np.random.default_rng(9), frozenset())
    x = to_series_input(ph.pixels, PreprocessSpec(size=128))
    measure = model_module.load_arch_measure().measure
    a = measure(x).angle_deg
    b = measure(np.ascontiguousarray(x[:, :, ::-1])).angle_deg
    assert a == pytest.approx(b, abs=0.5)


def test_card_writing_goes_where_it_is_told(tmp_path: Path) -> None:
    """The card the trainer's --all writes for foot-xray is the measured one, in --cards."""
    written = evaluate_foot_arch.write_card(tmp_path, heldout_n=30, heldout_seed=FRESH_SEED)
    assert json.loads((tmp_path / "foot_arch.json").read_text()) == written
    assert "**NOT FOR CLINICAL USE.**" in (tmp_path / "foot_arch.md").read_text()
    assert written["heldout_n"] == 30 and written["findings"]["flat_foot"]["threshold"] == 0.5
