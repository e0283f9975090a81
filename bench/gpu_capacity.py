"""Raw GPU capacity of a DenseNet-121-sized model at 224x224, batch 1 vs batched (PyTorch).

Why: the lent GPU machines have no tritonserver, Kafka or Java and cannot fetch them, so
``bench/gpu.sh`` (the full pipeline against the Triton container) cannot run there. This script
measures what Triton's dynamic batcher could at most gain on such a GPU: images/s of the same
network size at each batch size, plus the host-to-device copy of the input tensors. Random
weights: a throughput load only, NOT A DIAGNOSTIC MODEL.

    python3 bench/gpu_capacity.py --out gpu_capacity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torchvision


def _time_batches(model: torch.nn.Module, batch: torch.Tensor, iters: int) -> float:
    """Seconds per forward pass, timed with CUDA events after a warm-up."""
    with torch.inference_mode():
        for _ in range(5):
            model(batch)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            model(batch)
        end.record()
        torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0 / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="gpu_capacity.json")
    parser.add_argument("--batches", default="1,8,32,64,128,256")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "host": platform.node(), "model": "densenet121 (random weights)", "input": [3, 224, 224],
        "runs": [],
    }
    runs: list[dict[str, object]] = []
    for precision in ("fp32", "fp16"):
        dtype = torch.float32 if precision == "fp32" else torch.float16
        model = torchvision.models.densenet121(weights=None).to(device, dtype).eval()
        model = model.to(memory_format=torch.channels_last)
        for bs in (int(b) for b in args.batches.split(",")):
            x = torch.randn(bs, 3, 224, 224, device=device, dtype=dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            iters = max(10, min(200, 2000 // bs))
            sec = _time_batches(model, x, iters)
            runs.append({"precision": precision, "batch": bs, "ms_per_batch": round(sec * 1e3, 3),
                         "images_per_s": round(bs / sec, 1)})
            print(runs[-1], flush=True)
    # Host-to-device copy of one batch of 64 fp32 images, pinned vs pageable memory.
    host = torch.randn(64, 3, 224, 224)
    pinned = host.pin_memory()
    copies = {}
    for name, src in (("pageable", host), ("pinned", pinned)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            src.to(device, non_blocking=True)
        torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / 20
        copies[name] = {"images_per_s": round(64 / sec, 1),
                        "gb_per_s": round(host.numel() * 4 / sec / 1e9, 2)}
    results["runs"] = runs
    results["h2d_copy_batch64_fp32"] = copies
    for precision in ("fp32", "fp16"):
        mine = [r for r in runs if r["precision"] == precision]
        one = next(r for r in mine if r["batch"] == 1)
        best = max(mine, key=lambda r: float(r["images_per_s"]))  # type: ignore[arg-type]
        results[f"{precision}_batched_over_batch1"] = round(
            float(best["images_per_s"]) / float(one["images_per_s"]), 2)  # type: ignore[arg-type]
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1))
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
