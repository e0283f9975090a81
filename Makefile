# radstream — the two set-up commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test chaos lint unit integration up down kafka triton orthanc train clean help bench

help:
	@echo "make demo   - set up everything, run a simulated city end to end, print city statistics"
	@echo "make test   - set up everything, start Kafka, Triton and Orthanc, run lint, types and the suite"
	@echo "make chaos  - the full fault suite (kill -9, broker restart, Triton outage, rebalance)"
	@echo "make up / make down - start / stop the local Kafka broker and Triton server (down: Orthanc too)"
	@echo "make orthanc - start the local Orthanc archive (DICOMweb on 127.0.0.1:8042)"
	@echo "make train  - retrain every service's reference model (ONNX, config, model card), with progress"
	@echo "make bench  - benchmark: Triton alone, naive baseline, radstream, ratios (SOAK_S=600: full soak)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

kafka: $(STAMP)
	deploy/kafka.sh up

triton: $(STAMP)
	deploy/triton.sh up

# The city archive (Debian packages orthanc, orthanc-dicomweb; .ci/run installs them).
orthanc:
	deploy/orthanc.sh up

up: kafka triton

down:
	-deploy/orthanc.sh stop
	-deploy/triton.sh stop
	-deploy/kafka.sh stop

lint: $(STAMP)
	$(VENV)/bin/ruff check streams services tests bench
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

test: $(STAMP)
	deploy/run-tests.sh

# The full fault suite (10,000-study kill -9 run, minutes-long Triton outage); `make test` runs
# a shortened version of the same tests.
chaos: $(STAMP)
	RADSTREAM_CHAOS=full $(VENV)/bin/pytest -s -m chaos tests/chaos

demo: $(STAMP)
	deploy/demo.sh

# One service at a time, each rendering on 2 processes; prints a line per stage and a summary.
train: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m services.training.train_service --all

clean: down
	rm -rf .state artifacts

# Benchmark (docs/performance.md): baselines and radstream in one run, results in bench/results/.
# The benchmark starts its own Kafka (29092) and Triton (28000-28002, same model repository,
# identity model included) with deploy/kafka.sh and deploy/triton.sh, so no other worker on the
# shared broker answers its studies, and stops them at the end.
SOAK_S ?= 60
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m bench.run --soak-s $(SOAK_S) $(BENCH_ARGS)
