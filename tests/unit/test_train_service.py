"""The generic trainer end to end on a small ldct-screening run, the feature bank's optional
band features, and the shared onnx_runner Triton backend against a stand-in for Triton's
python-backend utilities."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from services.synth.phantoms.registry import phantom_module
from services.training import feature_model as fm
from services.training import train_service as ts
from streams.contract.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "services" / "triton" / "model_repository"
RUNNER = ROOT / "services" / "triton" / "backend" / ts.BACKEND / "model.py"

CARD_KEYS = {"model", "version", "service", "not_for_clinical_use", "findings", "heldout_n",
             "heldout_seed", "train_n", "seed", "training_seconds", "input", "output"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("triton")
    card = ts.train("ldct-screening", train_n=60, heldout_n=40, seed=3, heldout_seed=4,
                    out=out, cards=out / "model_cards", workers=1, log=False)
    return out, card


def test_writes_model_repository_and_cards(trained: tuple[Path, dict[str, Any]]) -> None:
    out, card = trained
    entry = ts.catalog_entry("ldct-screening")
    model_dir = out / "model_repository" / entry.model
    # The model names the shared backend; no runner is copied into the repository.
    assert sorted(p.name for p in (model_dir / entry.version).iterdir()) == ["model.onnx"]
    config = (model_dir / "config.pbtxt").read_text()
    assert f'name: "{entry.model}"' in config and 'backend: "onnx_runner"' in config
    assert "dims: [ 8, 96, 96 ]" in config and "dims: [ 1 ]" in config
    assert "max_batch_size: 64" in config and "KIND_CPU" in config
    saved = json.loads((out / "model_cards" / f"{entry.model}.json").read_text())
    assert saved == card and set(card) >= CARD_KEYS
    assert card["not_for_clinical_use"] is True and card["seed"] != card["heldout_seed"]
    row = card["findings"]["ldct_suspicious_nodule"]
    assert {"threshold", "heldout_auc", "sensitivity", "specificity", "auc_target"} <= set(row)
    assert 0.0 <= row["heldout_auc"] <= 1.0 and row["auc_target"] == 0.9
    assert card["input"] == {"name": "image", "shape": [8, 96, 96]}
    assert card["output"] == {"name": "scores", "shape": [1]}
    md = (out / "model_cards" / f"{entry.model}.md").read_text()
    assert "**NOT FOR CLINICAL USE.**" in md and "ldct_suspicious_nodule" in md


def test_onnx_scores_are_sigmoids_per_finding(trained: tuple[Path, dict[str, Any]]) -> None:
    out, _ = trained
    sess = ort.InferenceSession(str(out / "model_repository" / "ldct_nodule" / "1" /
                                    "model.onnx"), providers=["CPUExecutionProvider"])
    x, _ = ts.make_dataset(phantom_module("ldct-screening"),
                           ts.catalog_entry("ldct-screening").preprocess, 3, seed=99, workers=1)
    (scores,) = sess.run(["scores"], {"image": x})
    assert scores.shape == (3, 1) and scores.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all()


def test_evaluate_re_measures_the_committed_files(trained: tuple[Path, dict[str, Any]]) -> None:
    out, _ = trained
    metrics = ts.evaluate("ldct-screening", heldout_n=40, heldout_seed=4, out=out,
                          cards=out / "model_cards", workers=1)
    # Same phantoms as the card's held-out set: the same AUC, recomputed from the saved graph.
    card = json.loads((out / "model_cards" / "ldct_nodule.json").read_text())
    auc = card["findings"]["ldct_suspicious_nodule"]["heldout_auc"]
    assert metrics["ldct_suspicious_nodule"]["auc"] == pytest.approx(auc, abs=1e-4)


def test_head_learns_a_planted_signal() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 500)).astype(np.float32)
    labels = rng.random((300, 2)) < 0.3
    feats[:, 7] += 2.0 * labels[:, 0]
    feats[:, 99] -= 2.0 * labels[:, 1]
    head, oof = fm.fit_head(feats, labels)
    from streams.analytics.auc import roc_auc
    for j in range(2):
        assert roc_auc(labels[:, j], oof[:, j]) > 0.8
    assert head.weights[7, 0] > 0 and head.weights[99, 1] < 0


def _blob(background: float, size: int = 64) -> np.ndarray:
    """A (1, 1, size, size) field of ``background`` with a small bright Gaussian blob."""
    yy, xx = np.mgrid[:size, :size]
    blob = 0.3 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * 1.5**2))
    return (background + blob)[None, None].astype(np.float32)


def test_band_features_see_a_blob_only_inside_their_band() -> None:
    graph = fm.build_graph(1, 64, input_name="image", output_name="features", band=(0.25, 0.8))
    feats = fm.run(fm.session(graph), np.concatenate(
        [_blob(0.5), np.full((1, 1, 64, 64), 0.5, np.float32), _blob(0.0)]))
    assert feats.shape == (3, fm.feature_count(1, 64, band=True))
    assert fm.feature_count(1, 64, band=True) - fm.feature_count(1, 64) == 6 * len(fm.BAND_SIGMAS)
    top = slice(-len(fm.BAND_SIGMAS) * 2, None)  # log top-k means, last in the vector
    in_band, flat, below = feats[0, top], feats[1, top], feats[2, top]
    assert (in_band[:len(fm.BAND_SIGMAS)] > flat[:len(fm.BAND_SIGMAS)] + 3).all()
    # On dark air (blurred intensity under the band) the same blob is gated away.
    assert (below[:len(fm.BAND_SIGMAS)] < in_band[:len(fm.BAND_SIGMAS)] - 3).all()
    # Without ``band`` the bank is the one every other committed model was trained with.
    plain = fm.build_graph(1, 64, input_name="image", output_name="features")
    assert fm.run(fm.session(plain), _blob(0.5)).shape[1] == fm.feature_count(1, 64)


def test_every_catalog_service_can_be_built() -> None:
    """make train (--all) builds every service: trained from its phantoms, or re-measured."""
    for spec in load_catalog():
        if spec.id in ts.MEASURED:
            continue
        assert tuple(phantom_module(spec.id).FINDINGS) == tuple(f.code for f in spec.findings)
        assert ts.RECIPES.get(spec.id, ts.Recipe()).train_n >= 1000


def test_committed_onnx_models_share_the_one_runner() -> None:
    """Every trained model names the onnx_runner backend and carries no code of its own."""
    assert RUNNER.is_file()
    trained = [s for s in load_catalog() if s.id not in ts.MEASURED]
    for spec in trained:
        model_dir = REPOSITORY / spec.model
        config = (model_dir / "config.pbtxt").read_text()
        assert f'backend: "{ts.BACKEND}"' in config, spec.model
        assert config == ts.config_pbtxt(ts.catalog_entry(spec.id)), spec.model
        files = {p.name for p in (model_dir / spec.model_version).iterdir()
                 if p.name != "__pycache__"}
        assert files == {"model.onnx"}, (spec.model, files)


# ---------------------------------------------------------------------------- Triton runner


class _Tensor:
    def __init__(self, name: str, data: np.ndarray) -> None:
        self.name, self.data = name, data

    def as_numpy(self) -> np.ndarray:
        return self.data


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: Any = None) -> None:
        self.output_tensors, self.error = output_tensors or [], error


def _fake_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.TritonError = str  # type: ignore[attr-defined]
    mod.triton_string_to_numpy = lambda s: {"TYPE_FP32": np.float32}[s]  # type: ignore[attr-defined]
    mod.get_input_tensor_by_name = (  # type: ignore[attr-defined]
        lambda request, name: request.get(name))
    return mod


def test_runner_batches_requests_and_isolates_a_bad_one(
        trained: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = trained
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.delitem(sys.modules, "services.triton.backend.onnx_runner.model", raising=False)
    from services.triton.backend.onnx_runner import model as onnx_runner

    config = {"input": [{"name": "image", "data_type": "TYPE_FP32", "dims": [8, 96, 96]}],
              "output": [{"name": "scores", "data_type": "TYPE_FP32", "dims": [1]}],
              "parameters": {"intra_op_threads": {"string_value": "1"}}}
    model = onnx_runner.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config),
                      "model_repository": str(out / "model_repository" / "ldct_nodule"),
                      "model_version": "1"})
    good = np.random.default_rng(0).random((2, 8, 96, 96), dtype=np.float32)
    bad_shape = np.zeros((1, 8, 64, 64), np.float32)
    bad_value = good[:1].copy()
    bad_value[0, 0, 0, 0] = np.nan
    requests = [{"image": _Tensor("image", a)} for a in (good, bad_shape, bad_value)]
    responses = model.execute([*requests, {}])
    assert responses[0].error is None and responses[0].output_tensors[0].data.shape == (2, 1)
    assert "must be [batch, 8, 96, 96]" in responses[1].error
    assert "non-finite" in responses[2].error and "missing" in responses[3].error


def test_runner_picks_the_instance_kinds_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    from services.triton.backend.onnx_runner import model as onnx_runner

    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_runner.providers("CPU", 0, both) == ["CPUExecutionProvider"]
    assert onnx_runner.providers("GPU", 1, both) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        onnx_runner.providers("GPU", 0, cpu_only)
