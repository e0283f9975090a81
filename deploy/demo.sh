#!/usr/bin/env bash
# `make demo`: start Kafka, Triton and one stream worker, run the simulated city (every AI
# service; DEMO_STUDIES studies, default 600), print per-service progress and the city
# statistics, and stop everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${RADSTREAM_STATE:-$PWD/.state}
mkdir -p "$state/dicom" "$state/worker"
rm -rf "$state/dicom"/city-*   # studies of earlier demo runs: nothing will read them again
export RADSTREAM_DICOM_ROOTS=${RADSTREAM_DICOM_ROOTS:-$state/dicom}
# Demo-only pseudonym key; a hospital sets its own secret (see docs/publishing.md).
export RADSTREAM_PSEUDONYM_KEY=${RADSTREAM_PSEUDONYM_KEY:-radstream-demo-key-not-for-production}
# A fresh consumer group that starts at the end of the topics: the statistics printed at the end
# are this run's city, not whatever an earlier run or test left on the bus.
export RADSTREAM_APP_ID=${RADSTREAM_APP_ID:-radstream-demo-$(date +%s)}
export RADSTREAM_OFFSET_RESET=${RADSTREAM_OFFSET_RESET:-latest}
export RADSTREAM_WEB_PORT=${RADSTREAM_WEB_PORT:-6066}
export RADSTREAM_METRICS_PORT=${RADSTREAM_METRICS_PORT:-9108}

started=()
worker_pid=
cleanup() {
  if [ -n "$worker_pid" ]; then kill "$worker_pid" 2>/dev/null || true; wait "$worker_pid" 2>/dev/null || true; fi
  for svc in "${started[@]}"; do "deploy/$svc.sh" stop || true; done
}
trap cleanup EXIT

deploy/kafka.sh status >/dev/null 2>&1 || started+=(kafka)
deploy/kafka.sh up
deploy/triton.sh status >/dev/null 2>&1 || started+=(triton)
deploy/triton.sh up

echo "worker: starting (log $state/worker/worker.log)"
.venv/bin/radstream worker -l warn >"$state/worker/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 180); do
  curl -fs "http://127.0.0.1:$RADSTREAM_WEB_PORT/stats" >/dev/null && break
  kill -0 "$worker_pid" 2>/dev/null || { echo "worker: exited during start-up"; tail -n 40 "$state/worker/worker.log"; exit 1; }
  sleep 0.5
done
curl -fs "http://127.0.0.1:$RADSTREAM_WEB_PORT/stats" >/dev/null \
  || { echo "worker: stats API not up after 90s"; tail -n 40 "$state/worker/worker.log"; exit 1; }
echo "worker: ready (stats API http://127.0.0.1:$RADSTREAM_WEB_PORT/stats, dashboard http://127.0.0.1:$RADSTREAM_WEB_PORT/dashboard)"

.venv/bin/radstream demo "$@"
echo "metrics: $(curl -s "127.0.0.1:$RADSTREAM_METRICS_PORT/metrics" | grep -c '^radstream_') radstream samples at http://127.0.0.1:$RADSTREAM_METRICS_PORT/metrics"
