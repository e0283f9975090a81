"""`make bench` keeps working: a tiny run of every scenario (a few dozen studies each) against
the real broker, a real Triton and real worker processes must write a complete, well-formed
results file. No timing is asserted: speed is shown by the benchmark, never by the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import SCENARIO_KEYS, TARGETS
from streams.settings import REPO_ROOT

pytestmark = pytest.mark.integration

KINDS = {"triton_alone", "naive", "radstream", "radstream_half_load"}


def test_smoke_benchmark_writes_complete_results(tmp_path: Path) -> None:
    # The benchmark runs its own broker and Triton (ports 29092, 28000-28002).
    run = subprocess.run([sys.executable, "-m", "bench.run", "--smoke",
                          "--out", str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    runs = list(tmp_path.glob("bench-*.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text()) == result
    assert (tmp_path / "latest.png").stat().st_size > 0

    assert result["smoke"] is True
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0 and machine["cpu_model"]
    assert "gpu" in machine

    models = {result["reference_model"], result["identity_model"]}
    seen = {(s["kind"], s["model"]) for s in result["scenarios"]}
    assert {(k, m) for k in ("triton_alone", "naive", "radstream") for m in models} <= seen
    assert ("radstream_half_load", result["reference_model"]) in seen
    for s in result["scenarios"]:
        assert set(SCENARIO_KEYS) <= set(s), s["name"]
        assert s["kind"] in KINDS and s["model"] in models
        assert s["studies_per_s"] > 0, s["name"]
        assert set(s["latency_s"]) == {"p50", "p95", "p99", "mean"}
        if s["kind"] == "triton_alone":
            continue
        # Every study published in a pipeline scenario got its Finding, once.
        assert s["completed"] == s["studies"] and s["deadletters"] == 0, s["name"]
        assert s["duplicates"] == 0, s["name"]
        # A few dozen studies can all land between two CPU readings: the per-study figure may
        # be missing or zero in a smoke run, the process's own CPU time may not.
        assert s["latency_s"]["p50"] > 0 and s["process_cpu_s"] > 0, s["name"]
        assert "cpu_s_per_study" in s and "triton_cpu_s_per_study" in s
        assert s["peak_rss_bytes"] > 0, s["name"]
        assert s["mean_triton_batch"] >= 1, s["name"]
    half = next(s for s in result["scenarios"] if s["kind"] == "radstream_half_load")
    assert half["rss_start_bytes"] > 0 and half["rss_end_bytes"] > 0 and half["rss_samples"]
    assert set(result["ratios"]) >= {key for key, _, _ in TARGETS}
    assert set(result["targets_met"]) == {key for key, _, _ in TARGETS}
