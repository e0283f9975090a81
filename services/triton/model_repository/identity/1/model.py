"""Benchmark-only Triton Python model: one mean per image, nothing else (NOT FOR DIAGNOSIS).

Why it exists: with the model's own cost near zero, a benchmark run against it shows what the
stream layer and Triton's request path cost (bench/run.py, scenario (e)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT_NAME = "image"
OUTPUT_NAME = "lesion_score"


class TritonPythonModel:
    """Answers each request with the per-image mean pixel value, shape [batch, 1]."""

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
            if tensor is None:
                error = pb_utils.TritonError(f"missing input {INPUT_NAME!r}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            images = tensor.as_numpy()
            scores = images.reshape(images.shape[0], -1).mean(axis=1, keepdims=True)
            out = pb_utils.Tensor(OUTPUT_NAME, scores.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
