"""Triton Python-backend model: flat-foot arch-angle measurement (foot-xray service).

Why a Python model without ONNX: the measurement is classical geometry in numpy (see
arch_measure.py beside this file, the single source of the algorithm, which the unit tests
import by path). Outputs per image: ``scores`` = sigmoid((angle - threshold) / scale) and
``angle_deg`` = the measured angle; threshold and scale come from config.pbtxt parameters.
An image without a measurable arch fails its own request only, not its batch neighbours.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

INPUT_NAME = "image"
SCORE_NAME = "scores"
ANGLE_NAME = "angle_deg"


def load_arch_measure() -> ModuleType:
    """Import arch_measure.py from this file's directory (Triton does not put it on sys.path)."""
    name = "foot_arch_measure"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arch_measure.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value else default


class ArchModel:
    """The Triton-free core: a batch of images -> (scores, angles), or an error per image."""

    def __init__(self, threshold_deg: float, scale_deg: float) -> None:
        self.measure = load_arch_measure()
        self.threshold_deg = threshold_deg
        self.scale_deg = scale_deg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ArchModel:
        return cls(float(_parameter(config, "angle_threshold_deg", "140")),
                   float(_parameter(config, "angle_scale_deg", "3")))

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images [batch, 1, H, W] float32 -> scores [batch, 1], angle_deg [batch, 1].

        Raises ValueError (MeasurementError) when the input is malformed or any image has no
        measurable arch."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"{INPUT_NAME} must be [batch,1,H,W], got {images.shape}")
        angles = np.array([self.measure.measure(img).angle_deg for img in images],
                          dtype=np.float32)
        scores = np.array([self.measure.score(float(a), self.threshold_deg, self.scale_deg)
                           for a in angles], dtype=np.float32)
        return scores[:, None], angles[:, None]


class TritonPythonModel:
    """Triton entry point: one measurement per request image."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self._model = ArchModel.from_config(json.loads(args["model_config"]))

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self._pb
        responses: list[Any] = []
        for request in requests:
            try:
                tensor = pb.get_input_tensor_by_name(request, INPUT_NAME)
                if tensor is None:
                    raise ValueError(f"missing input {INPUT_NAME!r}")
                scores, angles = self._model.run(tensor.as_numpy())
            except Exception as exc:  # one bad request must not fail its batch neighbours
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(exc))))
                continue
            responses.append(pb.InferenceResponse(output_tensors=[
                pb.Tensor(SCORE_NAME, scores), pb.Tensor(ANGLE_NAME, angles)]))
        return responses

    def finalize(self) -> None:
        self._model = None  # type: ignore[assignment]
