#!/usr/bin/env bash
# `make test`: lint and type-check, start the real Kafka broker, Triton server and Orthanc
# archive, run the whole suite (unit + integration), and stop what this script started,
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p artifacts
started=()
cleanup() {
  for svc in "${started[@]}"; do "deploy/$svc.sh" stop || true; done
}
trap cleanup EXIT

echo "== lint and types"
.venv/bin/ruff check streams services tests bench
.venv/bin/mypy

echo "== services"
deploy/kafka.sh status >/dev/null 2>&1 || started+=(kafka)
deploy/kafka.sh up
deploy/triton.sh status >/dev/null 2>&1 || started+=(triton)
deploy/triton.sh up
deploy/orthanc.sh status >/dev/null 2>&1 || started+=(orthanc)
deploy/orthanc.sh up

echo "== tests"
.venv/bin/pytest "$@" --junitxml=artifacts/junit.xml
