#!/usr/bin/env bash
# The same benchmark on a machine with an NVIDIA GPU, against NVIDIA's official Triton container:
#   bench/gpu.sh                       # needs docker with the NVIDIA runtime, nvidia-smi, make
# The reference model is a DenseNet-121-sized network at 224x224 with RANDOM WEIGHTS
# (bench/densenet.py): a throughput load only, NOT A DIAGNOSTIC MODEL. It is served by the
# onnxruntime backend on the GPU (KIND_GPU); `identity` (Python backend) isolates the stream
# layer as on the CPU run. Kafka and the workers run on the host, as in `make bench`.
# Environment: TRITON_IMAGE (default nvcr.io/nvidia/tritonserver:24.10-py3), GPU_PORT_BASE
# (default 38000: HTTP, +1 gRPC, +2 metrics), SOAK_S, BENCH_ARGS (passed to bench.run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
image=${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:24.10-py3}
base=${GPU_PORT_BASE:-38000}
repo=$root/.state/bench-gpu/model_repository
name=radstream-bench-triton-$$

command -v nvidia-smi >/dev/null || { echo "gpu.sh: no nvidia-smi: this needs an NVIDIA GPU" >&2; exit 1; }
command -v docker >/dev/null || { echo "gpu.sh: needs docker with the NVIDIA container runtime" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

make -s .venv/.installed
.venv/bin/pip install -q onnx
rm -rf "$repo" && mkdir -p "$repo"
cp -r services/triton/model_repository/identity "$repo/"
.venv/bin/python -m bench.densenet "$repo/densenet121_bench"

deploy/kafka.sh up
docker run -d --rm --name "$name" --gpus all --shm-size=1g \
  -p "$base:8000" -p "$((base + 1)):8001" -p "$((base + 2)):8002" \
  -v "$repo:/models:ro" "$image" \
  tritonserver --model-repository=/models --strict-readiness=true >/dev/null
trap 'docker stop "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 240); do
  curl -fs "http://127.0.0.1:$base/v2/health/ready" >/dev/null && break
  sleep 1
done
curl -fs "http://127.0.0.1:$base/v2/health/ready" >/dev/null || { docker logs "$name" | tail -40; exit 1; }
# The container's processes are host processes: its init pid lets the bench count Triton's CPU.
pid=$(docker inspect -f '{{.State.Pid}}' "$name")

.venv/bin/python -m bench.run --triton-grpc "127.0.0.1:$((base + 1))" \
  --triton-metrics "http://127.0.0.1:$((base + 2))/metrics" --triton-pid "$pid" \
  --reference-model densenet121_bench --soak-s "${SOAK_S:-60}" ${BENCH_ARGS:-}
