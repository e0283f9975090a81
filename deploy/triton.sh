#!/usr/bin/env bash
# Local NVIDIA Triton Inference Server, CPU-only, from the nvidia-pytriton wheel's binary.
#   deploy/triton.sh start | wait | stop | status
# Serves services/triton/model_repository on loopback (HTTP 8000, gRPC 8001, metrics 8002),
# model control mode `none` (the repository is fixed at start; nothing can load models remotely).
# The ONNX models name `backend: "onnx_runner"`: our Python-based backend,
# services/triton/backend/onnx_runner/model.py, linked into the backend directory below.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${RADSTREAM_STATE:-$root/.state}
venv=${RADSTREAM_VENV:-$root/.venv}
py=$venv/bin/python
repo=${RADSTREAM_MODEL_REPOSITORY:-$root/services/triton/model_repository}
http_port=${RADSTREAM_TRITON_HTTP_PORT:-8000}
grpc_port=${RADSTREAM_TRITON_GRPC_PORT:-8001}
metrics_port=${RADSTREAM_TRITON_METRICS_PORT:-8002}
dir=$state/triton
pidfile=$dir/triton.pid
log=$dir/triton.log

name=triton
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

start() {
  if running; then echo "triton: already running (pid $(cat "$pidfile"))"; return 0; fi
  sp=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  pyver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  wheel=$sp/pytriton/tritonserver
  [ -x "$wheel/bin/tritonserver" ] || { echo "triton: $wheel/bin/tritonserver missing (pip install nvidia-pytriton)" >&2; exit 1; }
  # The Python backend needs a stub built for the running Python next to libtriton_python.so,
  # or every Python model fails to load. Keep our own backend folder rather than editing the wheel.
  mkdir -p "$dir/backends/python"
  cp -f "$wheel/backends/python/"* "$dir/backends/python/" 2>/dev/null || true
  cp -f "$wheel/python_backend_stubs/$pyver/triton_python_backend_stub" "$dir/backends/python/"
  # A Python-based backend is a folder <backend dir>/<name>/model.py run by the Python backend.
  ln -sfn "$root/services/triton/backend/onnx_runner" "$dir/backends/onnx_runner"
  # Python models run in this virtualenv's interpreter, so onnxruntime imports there.
  PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" \
  LD_LIBRARY_PATH="$sp/nvidia_pytriton.libs:${LD_LIBRARY_PATH:-}" \
  nohup "$wheel/bin/tritonserver" \
    --model-repository="$repo" \
    --backend-directory="$dir/backends" \
    --model-control-mode=none \
    --http-address=127.0.0.1 --http-port="$http_port" \
    --grpc-address=127.0.0.1 --grpc-port="$grpc_port" \
    --metrics-address=127.0.0.1 --metrics-port="$metrics_port" \
    --allow-metrics=true --allow-gpu-metrics=false --strict-readiness=true \
    --log-verbose=0 >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "triton: started (pid $!, log $log)"
}

ready_detail() {
  echo "models: $(curl -s -X POST "http://127.0.0.1:$http_port/v2/repository/index" | "$py" -c 'import json,sys; print(", ".join(m["name"]+":"+m.get("state","?") for m in json.load(sys.stdin)))')"
}
wait_ready() { wait_http "http://127.0.0.1:$http_port/v2/health/ready" "${1:-120}" 0.5; }

case "${1:-}" in
  start) start ;;
  wait) wait_ready "${2:-120}" ;;
  up) start; wait_ready ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|wait|up|stop|status" >&2; exit 2 ;;
esac
