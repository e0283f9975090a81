"""Triton Python-backend model: runs cxr_lesion's ONNX graph with onnxruntime.

Why one onnxruntime call per execute(): Triton's dynamic batcher hands us several requests at
once; concatenating their images into one batch is what turns queueing delay into throughput.
Dependencies stay at numpy + onnxruntime so the backend's interpreter needs nothing else.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT_NAME = "image"
OUTPUT_NAME = "lesion_score"


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value else default


class TritonPythonModel:
    """Loads model.onnx once per instance and answers batched requests."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        onnx_file = _parameter(config, "onnx_file", "model.onnx")
        threads = int(_parameter(config, "intra_op_threads", "1"))
        path = os.path.join(args["model_repository"], args["model_version"], onnx_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        out_cfg = pb_utils.get_output_config_by_name(config, OUTPUT_NAME)
        self._out_dtype = pb_utils.triton_string_to_numpy(out_cfg["data_type"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        batches: list[np.ndarray] = []
        owners: list[int] = []
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
                if tensor is None:
                    raise ValueError(f"missing input {INPUT_NAME!r}")
                images = np.asarray(tensor.as_numpy(), dtype=np.float32)
                if images.ndim != 4 or images.shape[1:] != (1, 128, 128):
                    raise ValueError(f"{INPUT_NAME} must be [batch,1,128,128], got {images.shape}")
                if not np.isfinite(images).all():
                    raise ValueError(f"{INPUT_NAME} contains non-finite values")
            except Exception as exc:  # one bad request must not fail its batch neighbours
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            batches.append(images)
            owners.append(i)

        if batches:
            try:
                (scores,) = self._session.run(
                    [OUTPUT_NAME], {INPUT_NAME: np.concatenate(batches, axis=0)}
                )
            except Exception as exc:
                for i in owners:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"onnxruntime failed: {exc}")
                    )
            else:
                start = 0
                for i, images in zip(owners, batches):
                    part = scores[start : start + images.shape[0]].astype(self._out_dtype)
                    start += images.shape[0]
                    out = pb_utils.Tensor(OUTPUT_NAME, part)
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
        return responses

    def finalize(self) -> None:
        self._session = None
