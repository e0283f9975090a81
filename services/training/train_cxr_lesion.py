"""Train the reference chest X-ray lung-nodule detector (``cxr_lesion``) and export it to ONNX.

Why this design: torch is not a dependency, so the model is small enough to train in numpy in
about a minute yet is a real learned classifier. A fixed bank of scale-normalised Gaussian
second-derivative (Hessian) filters at four scales gives, per scale, two blob maps: the bright-
blob measure ``relu(-lambda_max)`` (large only where the image curves down in *every*
direction, i.e. round bright spots, not rib bands or edges) and the negative Laplacian
``relu(-(Lxx + Lyy))`` (a DoG-like detector). Each map is pooled globally (max, mean, mean of
the top-k pixels), log-compressed, standardised, and fed to a one-hidden-layer MLP trained by
full-batch Adam with a fixed seed. The whole chain, from the preprocessed image to the sigmoid,
is exported as one ONNX graph (opset 17) that Triton's Python backend runs with onnxruntime.

Run: ``python -m services.training.train_cxr_lesion [--train N --test M --seed S --out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from services.synth.cxr_phantom import render_chest_xray
from streams.analytics.auc import roc_auc
from streams.imaging.preprocess import MODEL_INPUT_SIZE, to_model_input

MODEL_NAME = "cxr_lesion"
MODEL_VERSION = "1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "services" / "triton"

#: Gaussian scales (pixels of the 128x128 input); nodules there have sigma ~0.6..2 px.
SIGMAS = (0.8, 1.2, 1.8, 2.6)
KERNEL_SIZE = 15
#: Pixels averaged by the "top-k mean" pooling: a nodule covers a few dozen pixels.
TOP_K = 16
HIDDEN = 12
#: Gaussian blur (px) and the band of blurred intensity that counts as lung (air is darker,
#: mediastinum, spine and abdomen brighter); the gate is a tent over that band.
GATE_SIGMA = 3.0
LUNG_LOW = 0.25
LUNG_HIGH = 0.8
#: Pixels dropped at each edge before pooling (zero padding makes false blobs there).
BORDER = 8
LOG_EPS = 1e-4
ONNX_OPSET = 17


# ---------------------------------------------------------------------------- filter bank


def hessian_kernels(sigmas: Sequence[float] = SIGMAS, size: int = KERNEL_SIZE) -> np.ndarray:
    """Scale-normalised Gaussian second derivatives, shape (3 * S, 1, size, size).

    Channel order: all Lxx, then all Lyy, then all Lxy, then one Gaussian blur for the lung
    gate (shape (3 * S + 1, 1, size, size)). Every kernel is symmetric under a
    180-degree rotation, so correlation (ONNX Conv) and convolution (FFT) agree.
    """
    half = size // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy, xy = [], [], []
    for sigma in sigmas:
        g = np.exp(-(x**2) / (2 * sigma**2))
        g /= g.sum()
        d1 = -x / sigma**2 * g
        d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
        d2 -= d2.mean()  # zero response to flat regions despite truncation
        s2 = sigma**2
        xx.append(s2 * np.outer(g, d2))  # rows = y, cols = x
        yy.append(s2 * np.outer(d2, g))
        xy.append(s2 * np.outer(d1, d1))
    g = np.exp(-(x**2) / (2 * GATE_SIGMA**2))
    blur = np.outer(g, g) / np.outer(g, g).sum()
    return np.stack([*xx, *yy, *xy, blur])[:, None].astype(np.float32)


def conv_same(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' convolution via FFT: (B, H, W) x (C, 1, K, K) -> (B, C, H, W)."""
    _, h, w = images.shape
    k = kernels.shape[-1]
    fh, fw = h + k - 1, w + k - 1
    fi = np.fft.rfft2(images.astype(np.float64), s=(fh, fw))
    fk = np.fft.rfft2(kernels[:, 0].astype(np.float64), s=(fh, fw))
    full = np.fft.irfft2(fi[:, None] * fk[None], s=(fh, fw))
    p = k // 2
    return full[:, :, p : p + h, p : p + w].astype(np.float32)


def blob_maps(responses: np.ndarray, n_scales: int) -> np.ndarray:
    """(B, 3S + 1, H, W) filter responses -> (B, 2S, H', W') lung-gated blob maps.

    Maps are the bright-blob measure and the negative Laplacian, multiplied by a lung gate
    ``relu(min(LUNG_HIGH - blurred, blurred - LUNG_LOW))`` (nodules sit on grey lung; air is
    darker, spine and mediastinum brighter) and cropped by ``BORDER`` pixels to drop
    zero-padding artefacts.
    """
    lxx = responses[:, :n_scales]
    lyy = responses[:, n_scales : 2 * n_scales]
    lxy = responses[:, 2 * n_scales : 3 * n_scales]
    blurred = responses[:, 3 * n_scales :]
    tent = np.minimum(np.float32(LUNG_HIGH) - blurred, blurred - np.float32(LUNG_LOW))
    gate = np.maximum(tent, 0.0)
    half_trace = (lxx + lyy) * np.float32(0.5)
    half_diff = (lxx - lyy) * np.float32(0.5)
    lam_max = half_trace + np.sqrt(half_diff * half_diff + lxy * lxy)
    blob = np.maximum(-lam_max, 0.0)
    neg_lap = np.maximum(-(lxx + lyy), 0.0)
    maps = np.concatenate([blob, neg_lap], axis=1) * gate
    return maps[:, :, BORDER:-BORDER, BORDER:-BORDER]


def pooled_features(maps: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, 3C) raw features: [max | mean | top-k mean] per channel, then log."""
    b, c = maps.shape[:2]
    flat = maps.reshape(b, c, -1)
    top = -np.partition(-flat, TOP_K - 1, axis=-1)[..., :TOP_K]
    feats = np.concatenate([flat.max(-1), flat.mean(-1), top.mean(-1)], axis=1)
    return np.log(feats + np.float32(LOG_EPS)).astype(np.float32)


def raw_features(images: np.ndarray, kernels: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Images (B, 1, H, W) in [0, 1] -> log-pooled features (B, 6S), computed in chunks."""
    n_scales = (kernels.shape[0] - 1) // 3
    out = []
    for start in range(0, images.shape[0], chunk):
        resp = conv_same(images[start : start + chunk, 0], kernels)
        out.append(pooled_features(blob_maps(resp, n_scales)))
    return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------- model


@dataclass
class LesionModel:
    """Everything the exported graph contains; the numpy forward pass is the reference."""

    kernels: np.ndarray
    feat_mean: np.ndarray
    feat_std: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def head(self, feats: np.ndarray) -> np.ndarray:
        z = (feats - self.feat_mean) / self.feat_std
        hidden = np.maximum(z @ self.w1 + self.b1, 0.0)
        logit = hidden @ self.w2 + self.b2
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 1, 128, 128) -> (B, 1) lesion scores, in numpy."""
        return self.head(raw_features(images, self.kernels))


def train_head(
    feats: np.ndarray, labels: np.ndarray, *, seed: int, steps: int = 3000, l2: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise and fit a 1-hidden-layer MLP with full-batch Adam on binary cross-entropy."""
    rng = np.random.default_rng(seed)
    mean = feats.mean(0)
    std = feats.std(0) + 1e-6
    z = ((feats - mean) / std).astype(np.float64)
    y = labels.astype(np.float64)[:, None]
    n, d = z.shape
    params = [
        rng.normal(0, 1 / np.sqrt(d), (d, HIDDEN)),
        np.zeros(HIDDEN),
        rng.normal(0, 1 / np.sqrt(HIDDEN), (HIDDEN, 1)),
        np.zeros(1),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    for step in range(1, steps + 1):
        w1, b1, w2, b2 = params
        pre = z @ w1 + b1
        hid = np.maximum(pre, 0.0)
        prob = 1.0 / (1.0 + np.exp(-(hid @ w2 + b2)))
        g_logit = (prob - y) / n
        g_w2 = hid.T @ g_logit + l2 * w2
        g_b2 = g_logit.sum(0)
        g_hid = (g_logit @ w2.T) * (pre > 0)
        g_w1 = z.T @ g_hid + l2 * w1
        g_b1 = g_hid.sum(0)
        for i, g in enumerate((g_w1, g_b1, g_w2, g_b2)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**step)
            v_hat = v[i] / (1 - beta2**step)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    f32 = [p.astype(np.float32) for p in params]
    return mean.astype(np.float32), std.astype(np.float32), f32[0], f32[1], f32[2], f32[3]


# ---------------------------------------------------------------------------- ONNX export


def to_onnx(model: LesionModel) -> onnx.ModelProto:
    """Build the full graph: Conv -> gated blob maps -> pooling -> log -> standardise -> MLP."""
    s = (model.kernels.shape[0] - 1) // 3
    c = 2 * s
    k = model.kernels.shape[-1]
    p = k // 2

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name=name)

    inits = [
        const("kernels", model.kernels),
        const("half", np.array(0.5, np.float32)),
        const("eps", np.array(LOG_EPS, np.float32)),
        const("feat_mean", model.feat_mean),
        const("feat_inv_std", (1.0 / model.feat_std).astype(np.float32)),
        const("w1", model.w1),
        const("b1", model.b1),
        const("w2", model.w2),
        const("b2", model.b2),
        const("axis1", np.array([1], np.int64)),
        const("xx_lo", np.array([0], np.int64)),
        const("xx_hi", np.array([s], np.int64)),
        const("yy_hi", np.array([2 * s], np.int64)),
        const("xy_hi", np.array([3 * s], np.int64)),
        const("flat_shape", np.array([0, c, -1], np.int64)),
        const("topk", np.array([TOP_K], np.int64)),
        const("gate_hi", np.array([3 * s + 1], np.int64)),
        const("lung_low", np.array(LUNG_LOW, np.float32)),
        const("lung_high", np.array(LUNG_HIGH, np.float32)),
        const("crop_start", np.array([BORDER, BORDER], np.int64)),
        const("crop_end", np.array([-BORDER, -BORDER], np.int64)),
        const("crop_axes", np.array([2, 3], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["image", "kernels"], ["resp"], pads=[p, p, p, p], kernel_shape=[k, k]),
        n("Slice", ["resp", "xx_lo", "xx_hi", "axis1"], ["lxx"]),
        n("Slice", ["resp", "xx_hi", "yy_hi", "axis1"], ["lyy"]),
        n("Slice", ["resp", "yy_hi", "xy_hi", "axis1"], ["lxy"]),
        n("Add", ["lxx", "lyy"], ["trace"]),
        n("Mul", ["trace", "half"], ["half_trace"]),
        n("Sub", ["lxx", "lyy"], ["diff"]),
        n("Mul", ["diff", "half"], ["half_diff"]),
        n("Mul", ["half_diff", "half_diff"], ["half_diff_sq"]),
        n("Mul", ["lxy", "lxy"], ["lxy_sq"]),
        n("Add", ["half_diff_sq", "lxy_sq"], ["disc_sq"]),
        n("Sqrt", ["disc_sq"], ["disc"]),
        n("Add", ["half_trace", "disc"], ["lam_max"]),
        n("Neg", ["lam_max"], ["neg_lam_max"]),
        n("Relu", ["neg_lam_max"], ["blob"]),
        n("Neg", ["trace"], ["neg_trace"]),
        n("Relu", ["neg_trace"], ["neg_lap"]),
        n("Slice", ["resp", "xy_hi", "gate_hi", "axis1"], ["blurred"]),
        n("Sub", ["lung_high", "blurred"], ["below_high"]),
        n("Sub", ["blurred", "lung_low"], ["above_low"]),
        n("Min", ["below_high", "above_low"], ["tent"]),
        n("Relu", ["tent"], ["gate"]),
        n("Concat", ["blob", "neg_lap"], ["ungated"], axis=1),
        n("Mul", ["ungated", "gate"], ["gated"]),
        n("Slice", ["gated", "crop_start", "crop_end", "crop_axes"], ["maps"]),
        n("Reshape", ["maps", "flat_shape"], ["flat"]),
        n("ReduceMax", ["flat"], ["f_max"], axes=[2], keepdims=0),
        n("ReduceMean", ["flat"], ["f_mean"], axes=[2], keepdims=0),
        n("TopK", ["flat", "topk"], ["top_vals", "top_idx"], axis=2, largest=1, sorted=1),
        n("ReduceMean", ["top_vals"], ["f_top"], axes=[2], keepdims=0),
        n("Concat", ["f_max", "f_mean", "f_top"], ["pooled"], axis=1),
        n("Add", ["pooled", "eps"], ["pooled_eps"]),
        n("Log", ["pooled_eps"], ["log_feats"]),
        n("Sub", ["log_feats", "feat_mean"], ["centred"]),
        n("Mul", ["centred", "feat_inv_std"], ["z"]),
        n("Gemm", ["z", "w1", "b1"], ["pre"]),
        n("Relu", ["pre"], ["hidden"]),
        n("Gemm", ["hidden", "w2", "b2"], ["logit"]),
        n("Sigmoid", ["logit"], ["lesion_score"]),
    ]
    size = MODEL_INPUT_SIZE
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("lesion_score", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="radstream.train_cxr_lesion",
        doc_string="Synthetic-phantom lung nodule detector. NOT FOR CLINICAL USE.",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


# ---------------------------------------------------------------------------- data


def _render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render and preprocess phantoms ``start..start+count`` of the stream named by ``seed``."""
    seed, start, count = args
    images = np.empty((count, 1, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), np.float32)
    labels = np.empty(count, bool)
    for j in range(count):
        index = start + j
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        lesion = index % 2 == 1  # balanced classes
        pixels, _ = render_chest_xray(rng, lesion=lesion)
        images[j] = to_model_input(pixels)
        labels[j] = lesion
    return images, labels


def make_dataset(n: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic in (n, seed) whatever the number of workers: each index has its own rng."""
    chunk = 50
    jobs = [(seed, start, min(chunk, n - start)) for start in range(0, n, chunk)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_render_chunk, jobs))
    else:
        parts = [_render_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (ties broken towards the lower one)."""
    best_t, best_j = 0.5, -1.0
    for t in np.unique(scores):
        sens, spec = sens_spec(labels, scores, float(t))
        if sens + spec - 1 > best_j:
            best_t, best_j = float(t), sens + spec - 1
    return best_t


def sens_spec(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold``."""
    pred = scores >= threshold
    pos, neg = labels.astype(bool), ~labels.astype(bool)
    sensitivity = float((pred & pos).sum() / max(pos.sum(), 1))
    specificity = float((~pred & neg).sum() / max(neg.sum(), 1))
    return sensitivity, specificity


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train", type=int, default=2000, help="training phantoms")
    parser.add_argument("--test", type=int, default=1000, help="held-out phantoms (seed + 1)")
    parser.add_argument("--seed", type=int, default=20240, help="training seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="services/triton folder")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    x_train, y_train = make_dataset(args.train, args.seed, args.workers)
    x_test, y_test = make_dataset(args.test, args.seed + 1, args.workers)
    print(f"data: {args.train} train + {args.test} test in {time.perf_counter() - started:.1f}s")

    kernels = hessian_kernels()
    f_train = raw_features(x_train, kernels)
    mean, std, w1, b1, w2, b2 = train_head(f_train, y_train, seed=args.seed)
    model = LesionModel(kernels, mean, std, w1, b1, w2, b2)

    s_train = model.head(f_train)[:, 0]
    threshold = youden_threshold(y_train, s_train)
    s_test = model.forward(x_test)[:, 0]
    auc_train = roc_auc(y_train, s_train)
    auc_test = roc_auc(y_test, s_test)
    sens, spec = sens_spec(y_test, s_test, threshold)
    print(f"train AUC {auc_train:.4f}; held-out AUC {auc_test:.4f} sens {sens:.3f} "
          f"spec {spec:.3f} at threshold {threshold:.4f}")

    proto = to_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probe = x_test[:16]
    (ort_scores,) = session.run(["lesion_score"], {"image": probe})
    np.testing.assert_allclose(ort_scores, model.forward(probe), rtol=1e-3, atol=1e-4)

    onnx_path = args.out / "model_repository" / MODEL_NAME / MODEL_VERSION / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(onnx_path))
    elapsed = time.perf_counter() - started
    card = {
        "model": MODEL_NAME,
        "version": MODEL_VERSION,
        "threshold": round(threshold, 6),
        "heldout_auc": round(auc_test, 4),
        "heldout_sensitivity": round(sens, 4),
        "heldout_specificity": round(spec, 4),
        "heldout_n": int(args.test),
        "heldout_seed": int(args.seed + 1),
        "train_n": int(args.train),
        "train_auc": round(auc_train, 4),
        "seed": int(args.seed),
        "training_seconds": round(elapsed, 1),
        "input": {"name": "image", "shape": [1, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE]},
        "output": {"name": "lesion_score", "shape": [1]},
    }
    cards = args.out / "model_cards"
    cards.mkdir(parents=True, exist_ok=True)
    (cards / f"{MODEL_NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    (cards / f"{MODEL_NAME}.md").write_text(_model_card(card))
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes) in {elapsed:.1f}s total")
    return 0


def _model_card(card: dict[str, object]) -> str:
    return f"""# Model card: `cxr_lesion` v{card["version"]}

> **NOT FOR CLINICAL USE.** This model was trained only on synthetic chest X-ray phantoms. It
> exists to exercise the radstream pipeline (batching, latency, quality monitoring) end to end.
> It has never seen a real radiograph and must never inform a diagnosis.

## Task
Binary detection of a round lung nodule on a PA chest radiograph (DX/CR, BodyPartExamined
CHEST). Output is a study-level score; no localisation.

## Inputs and outputs (Triton / ONNX)
| name | type | shape (per item) | meaning |
|---|---|---|---|
| `image` | FP32 | [1, 128, 128] | output of `streams.imaging.preprocess.to_model_input` (below) |
| `lesion_score` | FP32 | [1] | probability-like score in [0, 1]; positive when `>= threshold` |

`to_model_input`: apply RescaleSlope/Intercept, map the DICOM window (first value; the
1st..99th percentile range when the file has none) to [0, 1] with clipping, invert MONOCHROME1,
area-average to 128x128. Clients must send exactly this; no normalisation happens in the model.

Batch dimension is dynamic (Triton `max_batch_size` 64, dynamic batching).

## Architecture
Fixed scale-normalised Hessian filter bank (Gaussian second derivatives, sigma =
{", ".join(str(s) for s in SIGMAS)} px, {KERNEL_SIZE}x{KERNEL_SIZE}) -> per scale bright-blob
measure `relu(-lambda_max)` and negative Laplacian, gated to lung-grey regions (a tent over a
15x15 Gaussian blur) and cropped 8 px at the border -> global max / mean / top-{TOP_K} mean pooling
-> log -> standardisation -> MLP ({HIDDEN} hidden ReLU units) -> sigmoid. Trained head only
(full-batch Adam, binary cross-entropy, L2), fixed seed. One ONNX graph, opset {ONNX_OPSET}.

## Training data
`services.synth.cxr_phantom.render_chest_xray` phantoms (512x512, 12-bit MONOCHROME2), 50 %
with a planted Gaussian-profile soft-tissue nodule (radius 5..16 px at 512, contrast 0.04..0.30,
skewed to subtle), random position/scale/brightness/contrast/noise per image.
Training: {card["train_n"]} phantoms, seed {card["seed"]}. Held-out: {card["heldout_n"]} phantoms,
seed {card["heldout_seed"]}.

## Measured performance (held-out synthetic phantoms)
| metric | value |
|---|---|
| AUC | {card["heldout_auc"]} |
| sensitivity at threshold | {card["heldout_sensitivity"]} |
| specificity at threshold | {card["heldout_specificity"]} |
| operating threshold (Youden on training set) | {card["threshold"]} |
| training AUC | {card["train_auc"]} |

`tests/unit/test_model_auc.py` re-checks AUC >= 0.9 on fresh phantoms written as DICOM and
read back through the worker's own reader and preprocessing.

## Retraining
```
.venv/bin/python -m services.training.train_cxr_lesion --train {card["train_n"]} \\
    --test {card["heldout_n"]} --seed {card["seed"]}
```
Writes `model_repository/cxr_lesion/1/model.onnx`, this card and `cxr_lesion.json` (the single
source of the operating threshold). Training took {card["training_seconds"]} s on 2 CPU cores.
The script asserts that onnxruntime reproduces the numpy forward pass before saving.

## Limitations
Synthetic anatomy only; a single nodule type; no other pathology, devices, or positioning
errors. Scores are not calibrated probabilities.
"""


if __name__ == "__main__":
    raise SystemExit(main())
