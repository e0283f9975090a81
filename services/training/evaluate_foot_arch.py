"""Measure the foot_arch model on fresh held-out phantoms and write its model card.

Why a module of its own: foot_arch is a measurement with no training, so the generic trainer
has nothing to fit; it calls this instead (``train_service --all`` and ``--service foot-xray``).
This renders foot-xray phantoms with a fixed seed, runs exactly the worker's preprocessing and
the served model's Triton-free core (model_repository/foot_arch/1/model.py ArchModel, which uses
1/arch_measure.py beside it), and compares the measured angle with the planted one.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python -m services.training.evaluate_foot_arch
    .venv/bin/python -m services.training.evaluate_foot_arch --check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from services.synth.phantoms import foot_xray
from streams.analytics.auc import roc_auc
from streams.contract.catalog import MODEL_CARDS, PreprocessSpec
from streams.imaging.preprocess import to_series_input

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The served model's folder in the Triton repository (its code is imported from there).
MODEL_DIR = REPO_ROOT / "services" / "triton" / "model_repository" / "foot_arch"
AUC_TARGET = 0.9
#: Mean absolute angle error (degrees) the card promises not to exceed on fresh phantoms.
MAE_BOUND_DEG = 2.0
#: Seed whose phantoms the algorithm's constants were developed on (never the held-out seed).
DEV_SEED = 5


def load_model_module() -> ModuleType:
    """Import 1/model.py by path (the model repository is not a Python package)."""
    spec = importlib.util.spec_from_file_location("foot_arch_model", MODEL_DIR / "1" / "model.py")
    if spec is None or spec.loader is None:
        raise ImportError("cannot load foot_arch/1/model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["foot_arch_model"] = module
    spec.loader.exec_module(module)
    return module


def config_parameters(path: Path = MODEL_DIR / "config.pbtxt") -> dict[str, str]:
    """The string parameters of config.pbtxt, as Triton would hand them to the model."""
    text = path.read_text()
    pairs = re.findall(r'key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text)
    return dict(pairs)


def measure_phantoms(n: int, seed: int) -> dict[str, np.ndarray]:
    """Render ``n`` foot phantoms (positives at PREVALENCE, rng per study as the trainer
    does) and measure each; failures count as the threshold angle (score 0.5)."""
    params = config_parameters()
    model = load_model_module().ArchModel.from_config(
        {"parameters": {k: {"string_value": v} for k, v in params.items()}})
    spec = PreprocessSpec(size=128)
    truth, measured, labels, failed = [], [], [], 0
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        positives = frozenset(c for c in foot_xray.FINDINGS
                              if rng.random() < foot_xray.PREVALENCE[c])
        ph = foot_xray.render(rng, positives)
        x = to_series_input(ph.pixels, spec, photometric=ph.photometric, slope=ph.slope,
                            intercept=ph.intercept)
        try:
            _, angle = model.run(x[np.newaxis])
            value = float(angle[0, 0])
        except ValueError:
            failed += 1
            value = model.threshold_deg
        truth.append(ph.measurements["flat_foot"])
        measured.append(value)
        labels.append(ph.labels["flat_foot"])
    return {"truth": np.array(truth), "measured": np.array(measured),
            "labels": np.array(labels, dtype=bool), "failed": np.array(failed)}


def card(n: int, seed: int) -> dict[str, Any]:
    """The JSON model card (keys per the catalog contract, plus the angle figures)."""
    params = config_parameters()
    threshold = float(params["angle_threshold_deg"])
    start = time.perf_counter()
    r = measure_phantoms(n, seed)
    seconds = time.perf_counter() - start
    err = r["measured"] - r["truth"]
    pred = r["measured"] > threshold
    pos, neg = r["labels"], ~r["labels"]
    return {
        "model": "foot_arch", "version": "1", "service": "foot-xray",
        "not_for_clinical_use": True,
        "findings": {"flat_foot": {
            "threshold": 0.5,
            "heldout_auc": round(roc_auc(r["labels"], r["measured"]), 4),
            "sensitivity": round(float(pred[pos].mean()), 4),
            "specificity": round(float((~pred[neg]).mean()), 4),
            "auc_target": AUC_TARGET,
            "heldout_positives": int(pos.sum()),
        }},
        "heldout_n": n, "heldout_seed": seed, "train_n": 0, "seed": DEV_SEED,
        "training_seconds": 0.0,
        "input": {"name": "image", "shape": [1, 128, 128]},
        "output": {"name": "scores", "shape": [1]},
        "measurement_output": {"name": "angle_deg", "shape": [1], "unit": "deg"},
        "angle_threshold_deg": threshold,
        "angle_scale_deg": float(params["angle_scale_deg"]),
        "mean_abs_error_deg": round(float(np.abs(err).mean()), 3),
        "mean_error_deg": round(float(err.mean()), 3),
        "p95_abs_error_deg": round(float(np.percentile(np.abs(err), 95)), 3),
        "mae_bound_deg": MAE_BOUND_DEG,
        "measurement_failures": int(r["failed"]),
        "evaluation_seconds": round(seconds, 1),
    }


def markdown(c: dict[str, Any]) -> str:
    f = c["findings"]["flat_foot"]
    pos, thr = f["heldout_positives"], c["angle_threshold_deg"]
    return f"""# Model card: `foot_arch` v1 (service `foot-xray`)

> **NOT FOR CLINICAL USE.** A geometric measurement checked only on synthetic phantoms, to
> exercise the radstream pipeline end to end. It has never seen a real patient image and must
> never inform a diagnosis.

## What it does
Measures the longitudinal arch angle on a weight-bearing lateral foot radiograph: the angle at
the highest point of the arch's plantar bone contour between the lines to the calcaneal and
first-metatarsal-head ground-contact points. Classical image processing in numpy
(`services/triton/model_repository/foot_arch/1/arch_measure.py`, documented step by step
there): Otsu bone threshold, sub-pixel half-maximum plantar contour, lower convex hull for the
contact points, robust line fits to the middle of both arch limbs. No learned weights.
Evaluation: `services/training/evaluate_foot_arch.py`.

## Inputs and outputs (Triton Python backend)
| name | type | shape (per item) | meaning |
|---|---|---|---|
| `image` | FP32 | [1, 128, 128] | `to_series_input` with the catalog's spec (robust window) |
| `scores` | FP32 | [1] | sigmoid((angle - {thr:g}) / {c["angle_scale_deg"]:g}) |
| `angle_deg` | FP32 | [1] | measured arch angle, degrees |

Flat foot when the angle exceeds **{c["angle_threshold_deg"]:g} degrees** (score threshold
0.5); threshold and scale are parameters in `config.pbtxt`, equal to
`ANGLE_THRESHOLD_DEG` in `services/synth/phantoms/foot_xray.py` (a unit test checks). An image
with no measurable arch fails its request with an error rather than returning a guess.

## Evaluation data
Synthetic phantoms from `services/synth/phantoms/foot_xray.py` (its docstring documents the
planted anatomy and angle distribution: normal 115..135, borderline 135..145, flat 145..165
degrees). No training; constants were developed on phantoms of seed {c["seed"]}. Held-out:
{c["heldout_n"]} phantoms, seed {c["heldout_seed"]}, rng per study
`default_rng(SeedSequence([seed, index]))`.

## Measured performance (held-out synthetic phantoms)
| finding | held-out AUC (angle vs label) | sensitivity | specificity | positives |
|---|---|---|---|---|
| flat_foot | {f["heldout_auc"]:.4f} | {f["sensitivity"]:.3f} | {f["specificity"]:.3f} | {pos} |

Angle error (measured - planted): mean absolute **{c["mean_abs_error_deg"]:.2f} deg**, mean
{c["mean_error_deg"]:+.2f} deg, 95th percentile of the absolute error
{c["p95_abs_error_deg"]:.2f} deg; {c["measurement_failures"]} measurement failures. AUC target
{f["auc_target"]}; the unit test bounds the mean absolute error by {c["mae_bound_deg"]:g} deg.

## Re-measuring
```
OMP_NUM_THREADS=1 .venv/bin/python -m services.training.evaluate_foot_arch
.venv/bin/python -m services.training.evaluate_foot_arch --check
```

## Limitations
Phantom arches are straight-limbed with gentle bows and a rounded apex, bones do not overlap
the plantar contour, and the foot stands on a horizontal platform. Real radiographs (overlapping
lateral column, sesamoids, rotation, non-weight-bearing views) will need more than this.
"""


def summary(c: dict[str, Any]) -> str:
    f = c["findings"]["flat_foot"]
    return (f"  flat_foot AUC {f['heldout_auc']:.4f} sens {f['sensitivity']:.3f} "
            f"spec {f['specificity']:.3f} MAE {c['mean_abs_error_deg']:.2f} deg "
            f"(failures {c['measurement_failures']})")


def meets_targets(c: dict[str, Any]) -> bool:
    return bool(c["findings"]["flat_foot"]["heldout_auc"] >= AUC_TARGET
                and c["mean_abs_error_deg"] <= MAE_BOUND_DEG)


def write_card(cards: Path = MODEL_CARDS, heldout_n: int = 600,
               heldout_seed: int = 20251) -> dict[str, Any]:
    """Measure, print and write ``foot_arch.json`` and ``foot_arch.md`` into ``cards``."""
    c = card(heldout_n, heldout_seed)
    print(summary(c), flush=True)
    cards.mkdir(parents=True, exist_ok=True)
    (cards / "foot_arch.json").write_text(json.dumps(c, indent=2) + "\n")
    (cards / "foot_arch.md").write_text(markdown(c))
    return c


def check(cards: Path = MODEL_CARDS) -> bool:
    """Re-measure on the card's held-out phantoms without writing; True when targets are met."""
    committed = json.loads((cards / "foot_arch.json").read_text())
    c = card(int(committed["heldout_n"]), int(committed["heldout_seed"]))
    print(summary(c), flush=True)
    return meets_targets(c)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--heldout-n", type=int, default=600)
    parser.add_argument("--heldout-seed", type=int, default=20251)
    parser.add_argument("--cards", type=Path, default=MODEL_CARDS)
    parser.add_argument("--check", action="store_true",
                        help="print only; exit 1 if the AUC or the error misses its target")
    args = parser.parse_args(argv)
    if args.check:
        return 0 if check(args.cards) else 1
    write_card(args.cards, args.heldout_n, args.heldout_seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
