"""The generic reference model every catalog service shares: a fixed feature bank + a learned head.

Why this design: torch is not a dependency and training must take minutes on one shared core,
yet the model must be a real learned classifier that runs unchanged in Triton. So the image
features are FIXED ONNX ops (nothing to train, bit-identical at training and serving time) and
only a small linear head is fitted, in closed form:

* per input channel (window x slab), three maps: the image itself and two difference-of-
  Gaussians band-passes (sigma 0.8-1.6 px and 1.6-3.2 px: bright/dark blobs of about 2-8 px),
  computed by separable depthwise Convs;
* each map is pooled over a grid of 8x8-pixel regions: mean, max, min (= -max of -x), plus the
  mean absolute fine band-pass (texture energy) and a 5-bin soft intensity histogram of the
  image. A finding's location in the anatomy is thus a region, and its appearance a pooled
  statistic of one window of one slab;
* a Hessian bright-blob measure, max-pooled per region, over each whole channel and over the
  whole series (all channels), so a small round lesion counts wherever it lies;
* optionally (``band``, for a service whose lesions sit in a known intensity band of the input,
  such as lung fields on a radiograph), blob and negative-Laplacian maps at four small scales
  gated to that band, pooled over the whole channel by max, mean and top-k mean, log-compressed;
* head: standardisation, then per finding an L2 logistic regression on the features that best
  separate that finding's classes (how many, and the penalty, chosen by cross-validation).
  Gather the selected features -> standardise -> Gemm -> Sigmoid in the same ONNX graph.

Pure numpy/onnx: no file or Triton I/O here (``train_service`` does that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from streams.analytics.auc import roc_auc

ONNX_OPSET = 17
#: Gaussian scales (px of the model input) whose differences give the two band-pass maps.
BLUR_SIGMAS = (0.8, 1.6, 3.2)
#: Maps per input channel: the image, fine band-pass, coarse band-pass.
MAPS_PER_CHANNEL = 3
#: Scales (px) of the Hessian bright-blob detector, pooled by region and over the whole image.
BLOB_SIGMAS = (1.0, 2.0)
#: Intensity levels of the soft histogram (tent half-width HIST_WIDTH) pooled per region.
HIST_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
HIST_WIDTH = 0.2
#: Pooling cells are this many pixels square (the grid is size // CELL_PX regions a side).
CELL_PX = 8
#: Candidate numbers of features kept per finding, and L2 penalties, tried by cross-validation.
SELECT_GRID = (16, 64, 256)
PENALTY_GRID = (1.0, 10.0, 100.0)
#: Band-gated blob features (``band``): Gaussian scales (px), full 2-D kernel size, the blur
#: (px) whose intensity must fall in the band, pixels dropped at each edge (zero padding makes
#: false blobs there), pixels averaged by the top-k pooling (a subtle nodule covers a few
#: dozen) and the floor of the log compression.
BAND_SIGMAS = (0.8, 1.2, 1.8, 2.6)
BAND_KERNEL_PX = 15
BAND_GATE_SIGMA = 3.0
BAND_BORDER_PX = 8
BAND_TOP_K = 16
BAND_LOG_EPS = 1e-4


def derivative_taps(sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian, first and (zero-mean) second derivative taps on the shared half-width."""
    half = int(np.ceil(3 * max(BLUR_SIGMAS)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = gaussian_1d(sigma)
    d1 = -x / sigma**2 * g
    d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
    return g, d1, d2 - d2.mean()


def gaussian_1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian truncated at 3 sigma of the largest scale (shared half-width)."""
    half = int(np.ceil(3 * max(BLUR_SIGMAS)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def feature_count(channels: int, size: int, grid: int | None = None, groups: int = 1,
                  band: bool = False) -> int:
    """Length of the feature vector the fixed bank produces for a (channels, size, size) input
    whose channels form ``groups`` equal runs (one per window), with or without band features."""
    grid = grid or default_grid(size)
    cells = (size // (size // grid)) ** 2
    per_cell = MAPS_PER_CHANNEL * 3 + 1 + len(HIST_LEVELS) + 2 * len(BLOB_SIGMAS)
    band_count = channels * 3 * 2 * len(BAND_SIGMAS) if band else 0
    return (channels * (cells * per_cell + 2 * len(BLOB_SIGMAS))
            + groups * 2 * len(BLOB_SIGMAS) + band_count)


def band_kernels() -> np.ndarray:
    """Scale-normalised Gaussian second derivatives for the band features, (3S + 1, 1, K, K):
    all Lxx, all Lyy, all Lxy, then one Gaussian blur (sigma BAND_GATE_SIGMA) for the gate."""
    half = BAND_KERNEL_PX // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy, xy = [], [], []
    for sigma in BAND_SIGMAS:
        g = np.exp(-(x**2) / (2 * sigma**2))
        g /= g.sum()
        d1 = -x / sigma**2 * g
        d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
        d2 -= d2.mean()  # zero response to flat regions despite truncation
        xx.append(sigma**2 * np.outer(g, d2))  # rows = y, cols = x
        yy.append(sigma**2 * np.outer(d2, g))
        xy.append(sigma**2 * np.outer(d1, d1))
    g = np.exp(-(x**2) / (2 * BAND_GATE_SIGMA**2))
    blur = np.outer(g, g) / np.outer(g, g).sum()
    return np.stack([*xx, *yy, *xy, blur])[:, None].astype(np.float32)


def default_grid(size: int) -> int:
    """Regions per side: cells of about CELL_PX pixels, at least one."""
    return max(1, size // CELL_PX)


@dataclass
class Head:
    """Per-finding linear head: ``sigmoid(((f - mean) * inv_std) @ weights + bias)``."""

    mean: np.ndarray  # (d,)
    inv_std: np.ndarray  # (d,)
    weights: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)
    #: (features kept, L2 penalty) chosen per finding, for the model card.
    chosen: tuple[tuple[int, float], ...]

    def logits(self, feats: np.ndarray) -> np.ndarray:
        z = (feats.astype(np.float64) - self.mean) * self.inv_std
        return z @ self.weights + self.bias

    def scores(self, feats: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.logits(feats)))).astype(np.float32)


# ---------------------------------------------------------------------------- ONNX graph


def build_graph(channels: int, size: int, *, input_name: str, output_name: str,
                head: Head | None = None, grid: int | None = None, groups: int = 1,
                band: tuple[float, float] | None = None,
                name: str = "radstream_feature_model") -> onnx.ModelProto:
    """The fixed feature bank as ONNX; with ``head``, the full model ending in a Sigmoid.

    Without a head the output ``output_name`` is the raw feature vector (batch, d): training
    computes features with exactly the graph that will serve. ``band`` = (low, high) adds the
    band-gated blob features (see the module docstring); None keeps the bank without them.
    """
    grid = grid or default_grid(size)
    if groups < 1 or channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} window groups")
    if size % grid:
        raise ValueError(f"input size {size} is not a multiple of the pooling grid {grid}")
    n_blur = len(BLUR_SIGMAS)
    taps = np.stack([gaussian_1d(s) for s in BLUR_SIGMAS]).astype(np.float32)  # (3, k)
    k = taps.shape[1]
    p = k // 2
    cell = size // grid
    # Per blob scale: vertical taps (g, d2, d1) then horizontal (d2, g, d1) -> Lxx, Lyy, Lxy,
    # scale-normalised by sigma^2 so both scales compare.
    n_blob = len(BLOB_SIGMAS)
    n_hess = 3 * n_blob
    vs, hs = [], []
    for sigma in BLOB_SIGMAS:
        g1, d1, d2 = derivative_taps(sigma)
        vs += [g1 * sigma**2, d2 * sigma**2, d1 * sigma**2]
        hs += [d2, g1, d1]
    hess_v, hess_h = np.array(vs, np.float32), np.array(hs, np.float32)
    vertical = np.tile(taps[:, None, :, None], (channels, 1, 1, 1))  # (C*3, 1, k, 1)
    horizontal = np.tile(taps[:, None, None, :], (channels, 1, 1, 1))  # (C*3, 1, 1, k)

    def const(cname: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name=cname)

    inits = [
        const("blur_v", vertical),
        const("blur_h", horizontal),
        const("split5", np.array([0, channels, n_blur, size, size], np.int64)),
        const("maps4", np.array([0, channels * MAPS_PER_CHANNEL, size, size], np.int64)),
        const("hist4", np.array([0, channels * len(HIST_LEVELS), size, size], np.int64)),
        const("levels", np.array(HIST_LEVELS, np.float32).reshape(1, 1, -1, 1, 1)),
        const("inv_width", np.array(1.0 / HIST_WIDTH, np.float32)),
        const("one", np.array(1.0, np.float32)),
        const("half", np.array(0.5, np.float32)),
        const("ax3", np.array([3], np.int64)),
        const("hess_v", np.tile(hess_v[:, None, :, None], (channels, 1, 1, 1))),
        const("hess_h", np.tile(hess_h[:, None, None, :], (channels, 1, 1, 1))),
        const("hess6", np.array([0, channels, n_blob, 3, size, size], np.int64)),
        const("blob4", np.array([0, channels * 2 * n_blob, size, size], np.int64)),
        const("gate_gain", np.array(1.5, np.float32)),
        const("ax2", np.array([2], np.int64)),
        const("per_group4", np.array([0, groups, channels // groups, 2 * n_blob], np.int64)),
        const("i0", np.array([0], np.int64)),
        const("i1", np.array([1], np.int64)),
        const("i2", np.array([2], np.int64)),
        const("i3", np.array([3], np.int64)),
    ]
    n = helper.make_node
    pool: dict[str, Any] = {"kernel_shape": [cell, cell], "strides": [cell, cell]}
    nodes = [
        n("Conv", [input_name, "blur_v"], ["bv"], group=channels, kernel_shape=[k, 1],
          pads=[p, 0, p, 0]),
        n("Conv", ["bv", "blur_h"], ["blur"], group=channels * n_blur, kernel_shape=[1, k],
          pads=[0, p, 0, p]),
        n("Reshape", ["blur", "split5"], ["blur5"]),
        n("Slice", ["blur5", "i0", "i1", "ax2"], ["g0"]),
        n("Slice", ["blur5", "i1", "i2", "ax2"], ["g1"]),
        n("Slice", ["blur5", "i2", "i3", "ax2"], ["g2"]),
        n("Sub", ["g0", "g1"], ["dog_fine"]),
        n("Sub", ["g1", "g2"], ["dog_coarse"]),
        n("Unsqueeze", [input_name, "ax2"], ["image5"]),
        n("Concat", ["image5", "dog_fine", "dog_coarse"], ["maps5"], axis=2),
        n("Reshape", ["maps5", "maps4"], ["maps"]),
        n("AveragePool", ["maps"], ["p_mean"], **pool),
        n("MaxPool", ["maps"], ["p_max"], **pool),
        n("Neg", ["maps"], ["neg_maps"]),
        n("MaxPool", ["neg_maps"], ["p_negmin"], **pool),
        n("Neg", ["p_negmin"], ["p_min"]),
        n("Squeeze", ["dog_fine", "ax2"], ["fine4"]),
        n("Abs", ["fine4"], ["fine_abs"]),
        n("AveragePool", ["fine_abs"], ["p_texture"], **pool),
        n("Flatten", ["p_mean"], ["f_mean"], axis=1),
        n("Flatten", ["p_max"], ["f_max"], axis=1),
        n("Flatten", ["p_min"], ["f_min"], axis=1),
        n("Flatten", ["p_texture"], ["f_texture"], axis=1),
        n("Sub", ["image5", "levels"], ["from_level"]),
        n("Abs", ["from_level"], ["dist_level"]),
        n("Mul", ["dist_level", "inv_width"], ["dist_scaled"]),
        n("Sub", ["one", "dist_scaled"], ["tent"]),
        n("Relu", ["tent"], ["bands5"]),
        n("Reshape", ["bands5", "hist4"], ["bands"]),
        n("AveragePool", ["bands"], ["p_hist"], **pool),
        n("Flatten", ["p_hist"], ["f_hist"], axis=1),
        # Hessian bright-blob measure relu(-lambda_max): large on round bright spots (nodules,
        # plaques), near zero on edges and ridges, so its whole-image max is location-free.
        n("Conv", [input_name, "hess_v"], ["hv"], group=channels, kernel_shape=[k, 1],
          pads=[p, 0, p, 0]),
        n("Conv", ["hv", "hess_h"], ["hess"], group=channels * n_hess, kernel_shape=[1, k],
          pads=[0, p, 0, p]),
        n("Reshape", ["hess", "hess6"], ["hess_split"]),
        n("Slice", ["hess_split", "i0", "i1", "ax3"], ["lxx"]),
        n("Slice", ["hess_split", "i1", "i2", "ax3"], ["lyy"]),
        n("Slice", ["hess_split", "i2", "i3", "ax3"], ["lxy"]),
        *blob_nodes(str, "blob6"),
        # Gated copy: blobs on a dark neighbourhood (a nodule in lung, not the aorta in the
        # mediastinum): weight relu(1 - 1.5 * coarse blur).
        n("Mul", ["g2", "gate_gain"], ["g2_gain"]),
        n("Sub", ["one", "g2_gain"], ["gate_raw"]),
        n("Relu", ["gate_raw"], ["gate5"]),
        n("Unsqueeze", ["gate5", "ax3"], ["gate6"]),
        n("Mul", ["blob6", "gate6"], ["gblob6"]),
        n("Concat", ["blob6", "gblob6"], ["blobs6"], axis=2),
        n("Reshape", ["blobs6", "blob4"], ["blob"]),
        n("MaxPool", ["blob"], ["p_blob"], **pool),
        n("Flatten", ["p_blob"], ["f_blob"], axis=1),
        n("ReduceMax", ["blob"], ["g_blob"], axes=[2, 3], keepdims=0),
        n("Flatten", ["g_blob"], ["f_blob_global"], axis=1),
        # ... and its maximum over each window's slabs: the strongest blob anywhere in the
        # series as that window shows it, a location-free detector of a nodule whatever slab it
        # falls in (a linear head cannot form a max of its own). Per window, so the bones of a
        # bone window cannot mask the nodules of a lung window.
        n("Reshape", ["g_blob", "per_group4"], ["g_blob4"]),
        n("ReduceMax", ["g_blob4"], ["g_blob_series"], axes=[2], keepdims=0),
        n("Flatten", ["g_blob_series"], ["f_blob_series"], axis=1),
    ]
    parts = ["f_mean", "f_max", "f_min", "f_texture", "f_hist", "f_blob", "f_blob_global",
             "f_blob_series"]
    if band is not None:
        band_inits, band_nodes = band_graph(input_name, channels, size, band, "f_band")
        inits += band_inits
        nodes += band_nodes
        parts.append("f_band")
    feats = "features" if head is not None else output_name
    nodes.append(n("Concat", parts, [feats], axis=1))
    d = feature_count(channels, size, grid, groups, band=band is not None)
    if head is not None:
        # Only the features some finding uses (a few hundred of tens of thousands) go into the
        # file: Gather them, then standardise and Gemm; the weights of the rest are zero anyway,
        # and a dense head would make a many-channel model megabytes (the contract: < 2 MB).
        used = np.flatnonzero(np.any(head.weights != 0, axis=1))
        if used.size == 0:
            used = np.array([0])
        inits += [
            const("used", used.astype(np.int64)),
            const("feat_mean", head.mean[used].astype(np.float32)),
            const("feat_inv_std", head.inv_std[used].astype(np.float32)),
            const("head_w", head.weights[used].astype(np.float32)),
            const("head_b", head.bias.astype(np.float32)),
        ]
        nodes += [
            n("Gather", [feats, "used"], ["feats_used"], axis=1),
            n("Sub", ["feats_used", "feat_mean"], ["centred"]),
            n("Mul", ["centred", "feat_inv_std"], ["z"]),
            n("Gemm", ["z", "head_w", "head_b"], ["logits"]),
            n("Sigmoid", ["logits"], [output_name]),
        ]
        out_dim = head.weights.shape[1]
    else:
        out_dim = d
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                       ["batch", channels, size, size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", out_dim])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="radstream.train_service",
        doc_string="Synthetic-phantom reference model. NOT FOR CLINICAL USE.",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def blob_nodes(t: Callable[[str], str], output: str) -> list[onnx.NodeProto]:
    """Nodes of the bright-blob measure relu(-lambda_max) from the tensors ``t("lxx")``,
    ``t("lyy")``, ``t("lxy")`` and the constant ``t("half")``; also leaves ``t("trace")``.

    lambda_max = (Lxx + Lyy) / 2 + sqrt(((Lxx - Lyy) / 2)^2 + Lxy^2), the larger Hessian
    eigenvalue: negative in every direction only on a round bright spot, not on an edge or ridge.
    """
    n = helper.make_node
    return [
        n("Add", [t("lxx"), t("lyy")], [t("trace")]),
        n("Mul", [t("trace"), t("half")], [t("half_trace")]),
        n("Sub", [t("lxx"), t("lyy")], [t("diff")]),
        n("Mul", [t("diff"), t("half")], [t("half_diff")]),
        n("Mul", [t("half_diff"), t("half_diff")], [t("half_diff_sq")]),
        n("Mul", [t("lxy"), t("lxy")], [t("lxy_sq")]),
        n("Add", [t("half_diff_sq"), t("lxy_sq")], [t("disc_sq")]),
        n("Sqrt", [t("disc_sq")], [t("disc")]),
        n("Add", [t("half_trace"), t("disc")], [t("lam_max")]),
        n("Neg", [t("lam_max")], [t("neg_lam")]),
        n("Relu", [t("neg_lam")], [output]),
    ]


def band_graph(input_name: str, channels: int, size: int, band: tuple[float, float],
               output: str) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """ONNX initialisers and nodes of the band-gated blob features, (batch, channels * 6S).

    Per channel and scale: the bright-blob measure relu(-lambda_max) and the negative
    Laplacian relu(-(Lxx + Lyy)), times a tent gate relu(min(high - b, b - low)) on the
    blurred intensity b (a nodule sits on grey lung; air is darker, mediastinum and spine
    brighter), cropped by BAND_BORDER_PX, pooled by max, mean and top-k mean, then log.
    """
    low, high = band
    if not 0.0 <= low < high:
        raise ValueError(f"band {band} must be 0 <= low < high")
    s = len(BAND_SIGMAS)
    kernels = np.tile(band_kernels(), (channels, 1, 1, 1))  # (C * (3S + 1), 1, K, K)
    k = BAND_KERNEL_PX
    p = k // 2

    def const(cname: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name=f"band_{cname}")

    inits = [
        const("kernels", kernels),
        const("split5", np.array([0, channels, 3 * s + 1, size, size], np.int64)),
        const("ax2", np.array([2], np.int64)),
        const("i0", np.array([0], np.int64)),
        const("is", np.array([s], np.int64)),
        const("i2s", np.array([2 * s], np.int64)),
        const("i3s", np.array([3 * s], np.int64)),
        const("i3s1", np.array([3 * s + 1], np.int64)),
        const("half", np.array(0.5, np.float32)),
        const("low", np.array(low, np.float32)),
        const("high", np.array(high, np.float32)),
        const("crop_start", np.array([BAND_BORDER_PX, BAND_BORDER_PX], np.int64)),
        const("crop_end", np.array([-BAND_BORDER_PX, -BAND_BORDER_PX], np.int64)),
        const("crop_axes", np.array([3, 4], np.int64)),
        const("flat3", np.array([0, channels * 2 * s, -1], np.int64)),
        const("topk", np.array([BAND_TOP_K], np.int64)),
        const("eps", np.array(BAND_LOG_EPS, np.float32)),
    ]

    def t(tensor: str) -> str:
        return f"band_{tensor}"

    n = helper.make_node
    nodes = [
        n("Conv", [input_name, t("kernels")], [t("resp")], group=channels, kernel_shape=[k, k],
          pads=[p, p, p, p]),
        n("Reshape", [t("resp"), t("split5")], [t("resp5")]),
        n("Slice", [t("resp5"), t("i0"), t("is"), t("ax2")], [t("lxx")]),
        n("Slice", [t("resp5"), t("is"), t("i2s"), t("ax2")], [t("lyy")]),
        n("Slice", [t("resp5"), t("i2s"), t("i3s"), t("ax2")], [t("lxy")]),
        n("Slice", [t("resp5"), t("i3s"), t("i3s1"), t("ax2")], [t("blurred")]),
        *blob_nodes(t, t("blob")),
        n("Neg", [t("trace")], [t("neg_trace")]),
        n("Relu", [t("neg_trace")], [t("neg_lap")]),
        n("Sub", [t("high"), t("blurred")], [t("below_high")]),
        n("Sub", [t("blurred"), t("low")], [t("above_low")]),
        n("Min", [t("below_high"), t("above_low")], [t("tent")]),
        n("Relu", [t("tent")], [t("gate")]),
        n("Concat", [t("blob"), t("neg_lap")], [t("ungated")], axis=2),
        n("Mul", [t("ungated"), t("gate")], [t("gated")]),
        n("Slice", [t("gated"), t("crop_start"), t("crop_end"), t("crop_axes")], [t("maps")]),
        n("Reshape", [t("maps"), t("flat3")], [t("flat")]),
        n("ReduceMax", [t("flat")], [t("f_max")], axes=[2], keepdims=0),
        n("ReduceMean", [t("flat")], [t("f_mean")], axes=[2], keepdims=0),
        n("TopK", [t("flat"), t("topk")], [t("top_vals"), t("top_idx")], axis=2),
        n("ReduceMean", [t("top_vals")], [t("f_top")], axes=[2], keepdims=0),
        n("Concat", [t("f_max"), t("f_mean"), t("f_top")], [t("pooled")], axis=1),
        n("Add", [t("pooled"), t("eps")], [t("pooled_eps")]),
        n("Log", [t("pooled_eps")], [output]),
    ]
    return inits, nodes


def session(proto: onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), sess_options=options,
                                providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, images: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Run a one-input, one-output session over ``images`` in chunks (bounded memory)."""
    name = sess.get_inputs()[0].name
    parts = [sess.run(None, {name: images[i : i + chunk]})[0]
             for i in range(0, images.shape[0], chunk)]
    return np.concatenate(parts, axis=0)


# ---------------------------------------------------------------------------- head fitting


def fit_head(feats: np.ndarray, labels: np.ndarray, *, folds: int = 5,
             seed: int = 0) -> tuple[Head, np.ndarray]:
    """Fit the per-finding head; return it and the out-of-fold training scores (n, k).

    Per finding: keep the ``m`` features whose standardised class-mean difference is largest
    (thousands of pooled features but a few hundred training phantoms: a penalised fit on all
    of them drowns a lesion's few informative regions), then an L2 logistic regression on
    those. ``m`` and the penalty are chosen by ``folds``-fold cross-validated AUC with the
    selection redone inside each fold, so the out-of-fold scores are honest: the trainer picks
    the operating thresholds on them.
    """
    x = feats.astype(np.float64)
    y = labels.astype(bool)
    mean = x.mean(0)
    std = x.std(0)
    inv_std = np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-12), 0.0)
    z = ((x - mean) * inv_std).astype(np.float32)
    del x
    n, d = z.shape
    k = y.shape[1]
    fold = np.random.default_rng(seed).permutation(n) % folds
    top = min(max(SELECT_GRID), d)
    ranked = [rank_features(z[fold != f], y[fold != f], top) for f in range(folds)]
    weights = np.zeros((d, k))
    bias = np.zeros(k)
    oof = np.zeros(y.shape, dtype=np.float64)
    chosen: list[tuple[int, float]] = []
    for j in range(k):
        best: tuple[float, int, float, np.ndarray] | None = None
        for m in SELECT_GRID:
            for lam in PENALTY_GRID:
                scores = np.zeros(n)
                for f in range(folds):
                    tr, te = fold != f, fold == f
                    zs = z[:, ranked[f][j, :m]]
                    w, b = logistic(zs[tr], y[tr, j], lam)
                    scores[te] = zs[te] @ w + b
                auc = roc_auc(y[:, j], scores)
                if best is None or auc > best[0] + 1e-9:
                    best = (auc, m, lam, scores)
        assert best is not None
        _, m, lam, scores = best
        sel = rank_features(z, y[:, j : j + 1], m)[0]
        w, b = logistic(z[:, sel], y[:, j], lam)
        weights[sel, j] = w
        bias[j] = b
        oof[:, j] = scores
        chosen.append((m, lam))
    probs = (1.0 / (1.0 + np.exp(-oof))).astype(np.float32)
    return Head(mean, inv_std, weights, bias, tuple(chosen)), probs


def rank_features(z: np.ndarray, y: np.ndarray, top: int) -> np.ndarray:
    """Per finding (column of ``y``), the ``top`` feature indices by decreasing
    |mean(pos) - mean(neg)| / pooled std, shape (findings, top); all findings in one pass."""
    yf = y.astype(np.float32)
    n_pos = np.maximum(yf.sum(0), 1.0)[:, None]
    n_neg = np.maximum(len(z) - yf.sum(0), 1.0)[:, None]
    s1, s2 = z.sum(0)[None, :], (z * z).sum(0)[None, :]
    p1, p2 = yf.T @ z, yf.T @ (z * z)
    m_pos, m_neg = p1 / n_pos, (s1 - p1) / n_neg
    v_pos = p2 / n_pos - m_pos**2
    v_neg = (s2 - p2) / n_neg - m_neg**2
    spread = np.sqrt(np.maximum((v_pos * n_pos + v_neg * n_neg) / len(z), 0.0)) + 1e-6
    effect = np.abs(m_pos - m_neg) / spread
    top = min(top, z.shape[1])
    idx = np.argpartition(-effect, top - 1, axis=1)[:, :top]
    order = np.argsort(-np.take_along_axis(effect, idx, axis=1), axis=1)
    return np.take_along_axis(idx, order, axis=1)


def logistic(x: np.ndarray, y: np.ndarray, lam: float, iters: int = 25) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (penalty ``lam/2 * |w|^2``)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    pen = np.full(d + 1, lam)
    pen[-1] = 1e-6
    t = y.astype(np.float64)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -30, 30)))
        grad = xb.T @ (p - t) + pen * theta
        hess = (xb * (p * (1 - p) + 1e-9)[:, None]).T @ xb + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


# ---------------------------------------------------------------------------- operating point


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (the lowest such threshold)."""
    y = labels.astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]  # predicting >= s[i] includes every tie of s[i]
    j = tp[last] / max(y.sum(), 1) - fp[last] / max((~y).sum(), 1)
    return float(s[last][int(np.argmax(j))])


def sens_spec(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold``."""
    pred = scores >= threshold
    pos = labels.astype(bool)
    return (float((pred & pos).sum() / max(pos.sum(), 1)),
            float((~pred & ~pos).sum() / max((~pos).sum(), 1)))
