"""Write a DenseNet-121-sized ONNX model for GPU throughput runs (bench/gpu.sh).

RANDOM WEIGHTS: this is a compute load of DenseNet-121's size and shape (about 8 M parameters,
about 2.9 GFLOPs per image at 224x224), NOT A DIAGNOSTIC MODEL. It takes the pipeline's own
tensor, image [batch, 1, 128, 128], resizes it to 224x224 inside the graph and returns
lesion_score [batch, 1], so the worker runs it unchanged through RADSTREAM_MODEL_OVERRIDE.

    python -m bench.densenet OUT_DIR/densenet121_bench   # writes 1/model.onnx + config.pbtxt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BLOCKS = (6, 12, 24, 16)
GROWTH = 32
BOTTLENECK = 4 * GROWTH

CONFIG = """# Benchmark-only, RANDOM WEIGHTS, NOT A DIAGNOSTIC MODEL (bench/densenet.py).
name: "densenet121_bench"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 128, 128 ] } ]
output [ { name: "lesion_score" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { kind: KIND_GPU count: 2 } ]
"""


class Graph:
    def __init__(self, seed: int = 121) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def op(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        w = self.rng.normal(0, (2.0 / (c_in * k * k)) ** 0.5, (c_out, c_in, k, k))
        return self.op("Conv", [x, self.const("w", w)], kernel_shape=[k, k],
                       strides=[stride, stride], pads=[k // 2] * 4)

    def bn_relu(self, x: str, c: int) -> str:
        params = [self.const(p, v) for p, v in (("scale", np.ones(c)), ("bias", np.zeros(c)),
                                                ("mean", np.zeros(c)), ("var", np.ones(c)))]
        return self.op("Relu", [self.op("BatchNormalization", [x, *params])])


def build() -> onnx.ModelProto:
    g = Graph()
    # 128 * 1.75 = 224: DenseNet-121's own input size, whatever the pipeline's tensor is.
    x = g.op("Resize", ["image", "", g.const("scales", np.array([1.0, 1.0, 1.75, 1.75]))],
             mode="linear")
    x = g.conv(x, 1, 64, 7, 2)
    x = g.bn_relu(x, 64)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 64
    for i, layers in enumerate(BLOCKS):
        for _ in range(layers):
            y = g.conv(g.bn_relu(x, channels), channels, BOTTLENECK, 1)
            y = g.conv(g.bn_relu(y, BOTTLENECK), BOTTLENECK, GROWTH, 3)
            x = g.op("Concat", [x, y], axis=1)
            channels += GROWTH
        if i < len(BLOCKS) - 1:
            x = g.conv(g.bn_relu(x, channels), channels, channels // 2, 1)
            x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            channels //= 2
    x = g.op("Flatten", [g.op("GlobalAveragePool", [g.bn_relu(x, channels)])])
    w = g.const("fc_w", g.rng.normal(0, channels ** -0.5, (channels, 1)))
    b = g.const("fc_b", np.zeros(1))
    logits = g.op("Gemm", [x, w, b])
    g.nodes.append(helper.make_node("Sigmoid", [logits], ["lesion_score"]))
    graph = helper.make_graph(
        g.nodes, "densenet121_bench",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 128, 128])],
        [helper.make_tensor_value_info("lesion_score", TensorProto.FLOAT, ["batch", 1])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="radstream-bench (random weights, not diagnostic)")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="DenseNet-121-sized ONNX, random weights")
    parser.add_argument("out", type=Path, help="model folder in a Triton repository")
    args = parser.parse_args(argv)
    (args.out / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(build(), str(args.out / "1" / "model.onnx"))
    (args.out / "config.pbtxt").write_text(CONFIG)
    print(f"wrote {args.out} (random weights: a throughput load, not a diagnostic model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
