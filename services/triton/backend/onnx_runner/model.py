"""Triton Python-based backend ``onnx_runner``: runs a model's ``model.onnx`` with onnxruntime.

One runner for every ONNX model of the repository, never copied into it: Triton finds it as
``<backend directory>/onnx_runner/model.py`` (deploy/triton.sh links this folder there; in
NVIDIA's container mount it at /opt/tritonserver/backends/onnx_runner) and runs it for each
model whose config.pbtxt says ``backend: "onnx_runner"``. Tensor names, per-item dims and dtypes
come from that config, never from this code. Why one onnxruntime call per execute(): Triton's
dynamic batcher hands over several requests at once; running their concatenation as one batch
turns queueing delay into throughput. A request with a wrong shape or non-finite values gets
its own error response; its batch neighbours are still answered. A KIND_GPU instance runs on
its GPU through onnxruntime's CUDA provider. Dependencies: numpy + onnxruntime.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value else default


def providers(kind: str, device_id: int, available: list[str]) -> list[Any]:
    """onnxruntime providers for a Triton instance of ``kind`` (``CPU`` or ``GPU``).

    A GPU instance without the CUDA provider (the CPU-only onnxruntime wheel) fails to load
    rather than quietly running on the CPU under a GPU instance's name.
    """
    if kind != "GPU":
        return [CPU]
    if CUDA not in available:
        raise RuntimeError(f"a KIND_GPU instance needs onnxruntime's {CUDA} "
                           f"(install onnxruntime-gpu); this onnxruntime has {available}")
    return [(CUDA, {"device_id": device_id}), CPU]


def check_request(images: np.ndarray, name: str, dims: tuple[int, ...]) -> None:
    """Raise ValueError unless ``images`` is a finite [batch, *dims] array."""
    if images.ndim != len(dims) + 1 or tuple(images.shape[1:]) != dims:
        raise ValueError(f"{name} must be [batch, {', '.join(map(str, dims))}], "
                         f"got {list(images.shape)}")
    if not np.isfinite(images).all():
        raise ValueError(f"{name} contains non-finite values")


class TritonPythonModel:
    """Loads the ONNX graph once per instance and answers batched requests."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        onnx_file = parameter(config, "onnx_file", "model.onnx")
        threads = int(parameter(config, "intra_op_threads", "1"))
        path = os.path.join(args["model_repository"], args["model_version"], onnx_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        chosen = providers(args.get("model_instance_kind", "CPU"),
                           int(args.get("model_instance_device_id", "0")),
                           ort.get_available_providers())
        self._session = ort.InferenceSession(path, sess_options=options, providers=chosen)
        (inp,) = config["input"]
        self._input = str(inp["name"])
        self._dims = tuple(int(d) for d in inp["dims"])
        self._in_dtype = pb_utils.triton_string_to_numpy(inp["data_type"])
        self._outputs = [
            (str(o["name"]), pb_utils.triton_string_to_numpy(o["data_type"]))
            for o in config["output"]
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        batches: list[np.ndarray] = []
        owners: list[int] = []
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self._input)
                if tensor is None:
                    raise ValueError(f"missing input {self._input!r}")
                images = np.asarray(tensor.as_numpy(), dtype=self._in_dtype)
                check_request(images, self._input, self._dims)
            except Exception as exc:  # one bad request must not fail its batch neighbours
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            batches.append(images)
            owners.append(i)

        if batches:
            names = [name for name, _ in self._outputs]
            try:
                results = self._session.run(names, {self._input: np.concatenate(batches)})
            except Exception as exc:
                for i in owners:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"onnxruntime failed: {exc}")
                    )
            else:
                start = 0
                for i, images in zip(owners, batches, strict=True):
                    stop = start + images.shape[0]
                    outs = [pb_utils.Tensor(name, np.ascontiguousarray(r[start:stop], dtype))
                            for (name, dtype), r in zip(self._outputs, results, strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=outs)
                    start = stop
        return responses

    def finalize(self) -> None:
        self._session = None
