"""Train (or re-measure) the reference model of any catalog AI service from its phantoms.

Why one generic trainer: every service's model is the same fixed ONNX feature bank plus a
closed-form head (see :mod:`services.training.feature_model`), so a service only contributes
its phantom generator (``services.synth.phantoms.<id>``, found through the phantom registry), its
catalog entry (preprocessing, tensor names, finding order) and, rarely, a :class:`Recipe` entry.
The trainer renders phantoms with a fixed seed, runs exactly the worker's
:func:`streams.imaging.preprocess.to_series_input`, fits, chooses each finding's threshold on
training data (Youden on cross-validated scores), measures AUC/sensitivity/specificity on
held-out phantoms of another seed, and writes the Triton model (config.pbtxt naming the shared
``onnx_runner`` backend, and model.onnx) plus the JSON and Markdown model cards, which the worker
reads its thresholds from (``streams/contract/model_cards/``).

Run::

    OMP_NUM_THREADS=1 python -m services.training.train_service --service chest-ct
    OMP_NUM_THREADS=1 python -m services.training.train_service --all       # make train
    python -m services.training.train_service --service chest-ct --evaluate   # no retraining
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from services.synth.phantoms.registry import phantom_module
from services.training import evaluate_foot_arch
from services.training import feature_model as fm
from streams.analytics.auc import roc_auc
from streams.contract.catalog import CATALOG_FILE, MODEL_CARDS, PreprocessSpec, load_catalog
from streams.imaging.preprocess import to_series_input

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The folder holding ``model_repository/``.
DEFAULT_OUT = REPO_ROOT / "services" / "triton"
#: The Triton backend that serves every trained model: services/triton/backend/onnx_runner/.
BACKEND = "onnx_runner"
AUC_TARGET = 0.9
MAX_BATCH_SIZE = 64
#: Phantoms rendered per worker task (keeps inter-process transfers coarse).
CHUNK = 25
DEFAULT_TRAIN_N = 1500


@dataclass(frozen=True)
class Recipe:
    """How a service's training differs from the default (most services need nothing)."""

    train_n: int = DEFAULT_TRAIN_N
    #: Intensity band of the band-gated blob features (:func:`feature_model.band_graph`).
    band: tuple[float, float] | None = None


#: Chest radiographs: a subtle nodule is a few pixels on grey lung, between dark air and the
#: bright mediastinum; the default dark-neighbourhood blob gate misses it (held-out AUC 0.87
#: without the band features, 0.93 with them on 4,000 phantoms) and rib crossings compete, so
#: it also needs more phantoms.
RECIPES: dict[str, Recipe] = {"chest-xray": Recipe(train_n=8000, band=(0.25, 0.8))}

#: Services whose model is a measurement with nothing to train: the module re-measures it on
#: held-out phantoms and writes its card instead.
MEASURED: dict[str, ModuleType] = {"foot-xray": evaluate_foot_arch}


@dataclass(frozen=True)
class ServiceEntry:
    """The part of a catalog service the trainer needs."""

    id: str
    model: str
    version: str
    input_name: str
    output_name: str
    preprocess: PreprocessSpec
    findings: tuple[str, ...]


def catalog_entry(service_id: str, catalog_path: Path = CATALOG_FILE) -> ServiceEntry:
    """One service as the trainer needs it, read through streams.contract.catalog (one parser)."""
    for spec in load_catalog(catalog_path):
        if spec.id == service_id:
            return ServiceEntry(
                id=spec.id, model=spec.model, version=spec.model_version,
                input_name=spec.input_name, output_name=spec.output_name,
                preprocess=spec.preprocess, findings=tuple(f.code for f in spec.findings))
    raise KeyError(f"service {service_id!r} is not in {catalog_path}")


def say(message: str) -> None:
    """One progress line, at once (training runs for minutes)."""
    print(message, flush=True)


# ---------------------------------------------------------------------------- data


def draw_positives(rng: np.random.Generator, findings: Sequence[str],
                   prevalence: dict[str, float]) -> frozenset[str]:
    """Each finding present independently with its prevalence (one draw per finding, in order)."""
    return frozenset(f for f in findings if rng.random() < prevalence[f])


def render_chunk(job: tuple[str, PreprocessSpec, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render and preprocess phantoms ``start .. start+count`` of the stream named by ``seed``."""
    module_name, spec, seed, start, count = job
    module = importlib.import_module(module_name)
    findings: tuple[str, ...] = tuple(module.FINDINGS)
    images = np.empty((count, spec.channels, spec.size, spec.size), np.float32)
    labels = np.zeros((count, len(findings)), bool)
    for j in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, start + j]))
        positives = draw_positives(rng, findings, module.PREVALENCE)
        ph = module.render(rng, positives)
        center, width = ph.window if ph.window is not None else (None, None)
        images[j] = to_series_input(ph.pixels, spec, photometric=ph.photometric,
                                    slope=ph.slope, intercept=ph.intercept,
                                    window_center=center, window_width=width)
        labels[j] = [bool(ph.labels[f]) for f in findings]
    return images, labels


def make_dataset(module: ModuleType, spec: PreprocessSpec, n: int, seed: int,
                 workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(n, C, size, size) inputs and (n, findings) labels; identical for any worker count."""
    jobs = [(module.__name__, spec, seed, s, min(CHUNK, n - s)) for s in range(0, n, CHUNK)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(render_chunk, jobs))
    else:
        parts = [render_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------- metrics


def measure(findings: Sequence[str], labels: np.ndarray, scores: np.ndarray,
            thresholds: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Per finding: AUC, and sensitivity/specificity at the given thresholds."""
    out: dict[str, dict[str, float]] = {}
    for j, code in enumerate(findings):
        y, s = labels[:, j], scores[:, j]
        if y.all() or not y.any():
            raise ValueError(f"{code}: the held-out set needs positives and negatives; "
                             "render more phantoms")
        row = {"auc": roc_auc(y, s)}
        if thresholds is not None:
            row["sensitivity"], row["specificity"] = fm.sens_spec(y, s, thresholds[j])
        out[code] = row
    return out


# ---------------------------------------------------------------------------- training


def train(service_id: str, *, train_n: int | None = None, heldout_n: int, seed: int,
          heldout_seed: int, out: Path = DEFAULT_OUT, cards: Path = MODEL_CARDS,
          workers: int = 2, log: bool = True) -> dict[str, Any]:
    """Train, verify and write one service's model (under ``out``) and cards (in ``cards``);
    return the JSON card. ``train_n`` None: the service's recipe."""
    started = time.perf_counter()

    def stage(message: str) -> None:
        if log:
            say(f"  {service_id}: {message} ({time.perf_counter() - started:.0f} s)")

    entry = catalog_entry(service_id)
    recipe = RECIPES.get(service_id, Recipe())
    train_n = recipe.train_n if train_n is None else train_n
    module = phantom_module(service_id)
    if tuple(module.FINDINGS) != entry.findings:
        raise ValueError(f"{module.__name__}.FINDINGS {module.FINDINGS} differ from the "
                         f"catalog's {entry.findings}")
    spec = entry.preprocess
    stage(f"rendering {train_n} training + {heldout_n} held-out phantoms")
    x_train, y_train = make_dataset(module, spec, train_n, seed, workers)
    x_held, y_held = make_dataset(module, spec, heldout_n, heldout_seed, workers)

    groups = max(1, len(spec.windows))  # one series-wide blob maximum per window
    stage("computing features")
    features = fm.session(fm.build_graph(spec.channels, spec.size, input_name=entry.input_name,
                                         output_name="features", groups=groups,
                                         band=recipe.band))
    f_train = fm.run(features, x_train)
    stage(f"fitting the head on {f_train.shape[1]} features")
    head, loo = fm.fit_head(f_train, y_train, seed=seed)
    thresholds = [fm.youden_threshold(y_train[:, j], loo[:, j])
                  for j in range(len(entry.findings))]

    stage("exporting and measuring on the held-out phantoms")
    proto = fm.build_graph(spec.channels, spec.size, input_name=entry.input_name,
                           output_name=entry.output_name, head=head, groups=groups,
                           band=recipe.band, name=entry.model)
    full = fm.session(proto)
    held_scores = fm.run(full, x_held)
    # The exported graph must reproduce the numpy head on the features it was fitted on.
    np.testing.assert_allclose(fm.run(full, x_train[:16]), head.scores(f_train[:16]),
                               rtol=1e-3, atol=1e-4)
    metrics = measure(entry.findings, y_held, held_scores, thresholds)
    train_auc = measure(entry.findings, y_train, loo)
    elapsed = time.perf_counter() - started

    card: dict[str, Any] = {
        "model": entry.model,
        "version": entry.version,
        "service": entry.id,
        "not_for_clinical_use": True,
        "findings": {
            code: {
                "threshold": round(thresholds[j], 6),
                "heldout_auc": round(metrics[code]["auc"], 4),
                "sensitivity": round(metrics[code]["sensitivity"], 4),
                "specificity": round(metrics[code]["specificity"], 4),
                "auc_target": AUC_TARGET,
                "train_cv_auc": round(train_auc[code]["auc"], 4),
                "heldout_positives": int(y_held[:, j].sum()),
            }
            for j, code in enumerate(entry.findings)
        },
        "heldout_n": int(heldout_n),
        "heldout_seed": int(heldout_seed),
        "train_n": int(train_n),
        "seed": int(seed),
        "training_seconds": round(elapsed, 1),
        "input": {"name": entry.input_name, "shape": [spec.channels, spec.size, spec.size]},
        "output": {"name": entry.output_name, "shape": [len(entry.findings)]},
        "phantom_module": module.__name__,
        "features": int(f_train.shape[1]),
        "head": {code: {"features_kept": m, "l2": lam}
                 for code, (m, lam) in zip(entry.findings, head.chosen, strict=True)},
    }
    if recipe.band is not None:
        card["band"] = list(recipe.band)
    write_model(out, entry, proto)
    write_cards(cards, card, entry)
    if log:
        say(f"  {service_id}: done in {elapsed:.1f} s")
        print_metrics(card)
    return card


def print_metrics(card: dict[str, Any]) -> None:
    for code, row in card["findings"].items():
        flag = "" if row["heldout_auc"] >= row["auc_target"] else "  BELOW TARGET"
        extra = f" sens {row['sensitivity']:.3f} spec {row['specificity']:.3f}" \
            if "sensitivity" in row else ""
        print(f"  {code:28s} AUC {row['heldout_auc']:.4f}{extra}{flag}")


# ---------------------------------------------------------------------------- writing


def config_pbtxt(entry: ServiceEntry) -> str:
    """Triton config of a trained model: the onnx_runner backend, CPU, dynamic batching."""
    spec = entry.preprocess
    return f"""# Synthetic-phantom reference model for the {entry.id} service
# (NOT FOR CLINICAL USE); see streams/contract/model_cards/{entry.model}.md. Written by
# services/training/train_service.py; the {BACKEND} backend
# (services/triton/backend/{BACKEND}/model.py) runs model.onnx with onnxruntime.
name: "{entry.model}"
backend: "{BACKEND}"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{
    name: "{entry.input_name}"
    data_type: TYPE_FP32
    dims: [ {spec.channels}, {spec.size}, {spec.size} ]
  }}
]
output [
  {{
    name: "{entry.output_name}"
    data_type: TYPE_FP32
    dims: [ {len(entry.findings)} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
instance_group [
  {{
    kind: KIND_CPU
    count: 1
  }}
]
parameters: {{
  key: "onnx_file"
  value: {{ string_value: "model.onnx" }}
}}
parameters: {{
  key: "intra_op_threads"
  value: {{ string_value: "1" }}
}}
"""


def write_model(out: Path, entry: ServiceEntry, proto: onnx.ModelProto) -> Path:
    model_dir = out / "model_repository" / entry.model
    version_dir = model_dir / entry.version
    version_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(entry))
    onnx_path = version_dir / "model.onnx"
    onnx.save(proto, str(onnx_path))
    return onnx_path


def write_cards(cards: Path, card: dict[str, Any], entry: ServiceEntry) -> None:
    cards.mkdir(parents=True, exist_ok=True)
    (cards / f"{entry.model}.json").write_text(json.dumps(card, indent=2) + "\n")
    (cards / f"{entry.model}.md").write_text(model_card_md(card, entry))


def model_card_md(card: dict[str, Any], entry: ServiceEntry) -> str:
    spec = entry.preprocess
    windows = ", ".join(f"[{c:g}, {w:g}]" for c, w in spec.windows) or \
        "the file's window, else the robust 1st..99th percentile window"
    rows = "\n".join(
        f"| `{code}` | {j} | {r['heldout_auc']:.4f} | {r['sensitivity']:.3f} | "
        f"{r['specificity']:.3f} | {r['threshold']:.4f} | {r['heldout_positives']} |"
        for j, (code, r) in enumerate(card["findings"].items()))
    shape = card["input"]["shape"]
    band_text = ""
    if card.get("band"):
        low, high = card["band"]
        band_text = (f";\nand, gated to blurred intensities in [{low:g}, {high:g}] (sigma "
                     f"{fm.BAND_GATE_SIGMA:g} px), the bright-blob measure and the negative\n"
                     f"Laplacian at sigma {fm.BAND_SIGMAS} px pooled over the whole slice by "
                     f"max, mean and top-{fm.BAND_TOP_K} mean,\nlog-compressed")
    return f"""# Model card: `{card["model"]}` v{card["version"]} (service `{card["service"]}`)

> **NOT FOR CLINICAL USE.** Trained only on synthetic phantoms to exercise the radstream
> pipeline end to end. It has never seen a real patient image and must never inform a diagnosis.

## Inputs and outputs (Triton / ONNX)
| name | type | shape (per item) | meaning |
|---|---|---|---|
| `{card["input"]["name"]}` | FP32 | {shape} | `to_series_input` with the catalog's spec |
| `{card["output"]["name"]}` | FP32 | {card["output"]["shape"]} | a sigmoid per finding, in order |

Preprocessing (`streams/contract/catalog.toml`): {spec.slabs} slab(s) of contiguous slices averaged,
windows {windows} mapped to [0, 1], area-resized to {spec.size}x{spec.size}; channel
`w * slabs + s` = window `w` of slab `s`. Dynamic batch, Triton `max_batch_size` {MAX_BATCH_SIZE}.

## Architecture
Fixed feature bank as ONNX ops (nothing learned): per channel, the image and two
difference-of-Gaussians band-passes (sigma {fm.BLUR_SIGMAS} px, separable depthwise Convs),
each pooled over {fm.CELL_PX}x{fm.CELL_PX}-pixel regions by mean, max and min, plus the mean
absolute fine band-pass, a {len(fm.HIST_LEVELS)}-bin soft intensity histogram, and the
Hessian bright-blob measure relu(-lambda_max) (sigma {fm.BLOB_SIGMAS} px; also a copy gated to
dark neighbourhoods) pooled by max per region and over the whole slice{band_text}
({card["features"]} features). Learned head: standardisation, then
per finding an L2 logistic regression on the features that best separate its classes (count and
penalty by 5-fold cross-validated AUC, selection redone inside each fold), sigmoid output.
Trainer: `services/training/train_service.py`, model `services/training/feature_model.py`.

## Training data
Synthetic phantoms from `{card["phantom_module"]}` (its docstring documents every planted
lesion); each finding present independently with the module's PREVALENCE.
Training: {card["train_n"]} phantoms, seed {card["seed"]}. Held-out: {card["heldout_n"]}
phantoms, seed {card["heldout_seed"]}, never seen in training. Training took
{card["training_seconds"]} s (`OMP_NUM_THREADS=1`, rendering on 2 processes).

## Measured performance (held-out synthetic phantoms)
Thresholds are Youden-optimal on out-of-fold (cross-validated) training scores; sensitivity
and specificity are at that threshold on the held-out set. AUC target: {AUC_TARGET}.

| finding | column | held-out AUC | sensitivity | specificity | threshold | positives |
|---|---|---|---|---|---|---|
{rows}

## Retraining / re-measuring
```
OMP_NUM_THREADS=1 .venv/bin/python -m services.training.train_service --service {card["service"]} \\
    --train-n {card["train_n"]} --heldout-n {card["heldout_n"]} --seed {card["seed"]} \\
    --heldout-seed {card["heldout_seed"]}
.venv/bin/python -m services.training.train_service --service {card["service"]} --evaluate
```

## Limitations
Synthetic anatomy with a handful of planted lesion types; scores are Platt-calibrated on
synthetic data only, not clinical probabilities.
"""


# ---------------------------------------------------------------------------- evaluation


def evaluate(service_id: str, *, heldout_n: int, heldout_seed: int, out: Path = DEFAULT_OUT,
             cards: Path = MODEL_CARDS, workers: int = 2) -> dict[str, dict[str, float]]:
    """Score the COMMITTED model on freshly rendered phantoms (no retraining)."""
    entry = catalog_entry(service_id)
    module = phantom_module(service_id)
    card = json.loads((cards / f"{entry.model}.json").read_text())
    proto = onnx.load(str(out / "model_repository" / entry.model / entry.version / "model.onnx"))
    x, y = make_dataset(module, entry.preprocess, heldout_n, heldout_seed, workers)
    scores = fm.run(fm.session(proto), x)
    thresholds = [card["findings"][c]["threshold"] for c in entry.findings]
    return measure(entry.findings, y, scores, thresholds)


def check(service_id: str, args: argparse.Namespace) -> bool:
    """Re-measure one committed model and print it; True when every finding meets its target."""
    if service_id in MEASURED:
        return bool(MEASURED[service_id].check(cards=args.cards))
    seed = args.heldout_seed if args.heldout_seed is not None else args.seed + 7
    metrics = evaluate(service_id, heldout_n=args.heldout_n, heldout_seed=seed, out=args.out,
                       cards=args.cards, workers=args.workers)
    low = [c for c, m in metrics.items() if m["auc"] < AUC_TARGET]
    for code, m in metrics.items():
        print(f"  {code:28s} AUC {m['auc']:.4f} sens {m['sensitivity']:.3f} "
              f"spec {m['specificity']:.3f}{'  BELOW TARGET' if code in low else ''}")
    return not low


def build(service_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one service (or re-measure a measurement model) and write its files; its card."""
    if service_id in MEASURED:
        card: dict[str, Any] = MEASURED[service_id].write_card(cards=args.cards)
        return card
    seed = args.heldout_seed if args.heldout_seed is not None else args.seed + 1
    return train(service_id, train_n=args.train_n, heldout_n=args.heldout_n, seed=args.seed,
                 heldout_seed=seed, out=args.out, cards=args.cards, workers=args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", help="catalog id, e.g. chest-ct")
    which.add_argument("--all", action="store_true",
                       help="every catalog service in catalog order, with progress (make train)")
    parser.add_argument("--train-n", type=int, default=None,
                        help=f"training phantoms (default: the service's recipe, usually "
                             f"{DEFAULT_TRAIN_N})")
    parser.add_argument("--heldout-n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument("--heldout-seed", type=int, default=None,
                        help="default: seed + 1 (training); seed + 7 with --evaluate")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder holding model_repository/ (default services/triton)")
    parser.add_argument("--cards", type=Path, default=MODEL_CARDS,
                        help="model card folder (default streams/contract/model_cards)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluate", "--check", action="store_true",
                        help="re-measure the committed model; exit 1 if an AUC misses target")
    args = parser.parse_args(argv)
    if not args.evaluate and args.heldout_seed is not None and args.heldout_seed == args.seed:
        parser.error("the held-out seed must differ from the training seed")
    ids = [spec.id for spec in load_catalog()] if args.all else [args.service]
    started = time.perf_counter()
    failed: list[str] = []
    summary: list[str] = []
    for i, service_id in enumerate(ids, 1):
        if args.all:
            say(f"[{i}/{len(ids)}] {service_id} ({time.perf_counter() - started:.0f} s elapsed)")
        if args.evaluate:
            if not check(service_id, args):
                failed.append(service_id)
            continue
        card = build(service_id, args)
        aucs = [row["heldout_auc"] for row in card["findings"].values()]
        if min(aucs) < AUC_TARGET:
            failed.append(service_id)
        summary.append(f"  {service_id:16s} {card['model']:16s} lowest held-out AUC "
                       f"{min(aucs):.4f}")
    if args.all:
        say(f"{len(ids)} services in {time.perf_counter() - started:.0f} s")
        for line in summary:
            say(line)
    if failed:
        print(f"below the AUC target {AUC_TARGET}: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
