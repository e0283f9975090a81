"""SRE artefacts stay true to the code: the Prometheus config and alert rules pass promtool
(syntax and the rule unit tests), and every metric the rules and the Grafana dashboard query is
one the worker really exports (streams/metrics.py) or one Triton exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import create_metrics
from streams.settings import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
GRAFANA = REPO_ROOT / "deploy" / "grafana"

#: Triton metrics the dashboard uses; tests/integration/test_prometheus.py checks a live Triton
#: exports each of them.
TRITON_METRICS = frozenset({"nv_inference_count", "nv_inference_exec_count"})

_SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "gauge": ("",), "summary": ("", "_sum", "_count")}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (CI must install the Debian package prometheus)")
        pytest.skip("promtool is not installed")
    return path


def exported_series() -> set[str]:
    """Sample names a scrape of the worker can contain."""
    registry = CollectorRegistry()
    create_metrics(registry)
    return {fam.name + suffix for fam in registry.collect()
            for suffix in _SAMPLE_SUFFIXES[fam.type]}


def metric_names(promql: str) -> set[str]:
    """Metric and recording-rule names in a PromQL expression (ours, Triton's, `up`)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    return set(re.findall(r"\b(?:radstream_\w+|radstream:[\w:]+|nv_\w+|up)\b(?!\s*\()",
                          unquoted))


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def assert_known(names: set[str], where: str) -> None:
    known = exported_series() | TRITON_METRICS | recorded_names() | {"up"}
    unknown = names - known
    assert not unknown, f"{where} queries metrics nobody exports: {sorted(unknown)}"


def test_prometheus_config_and_rules_are_valid() -> None:
    done = subprocess.run([promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule files found" in done.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert files
    done = subprocess.run([promtool(), "test", "rules", *files],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_exercised_by_a_rule_test() -> None:
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert {"RadstreamEmergencyLatencySLO", "RadstreamDeadLetterRateHigh",
            "RadstreamConsumerLagHigh", "RadstreamAUCBelowFloor", "TritonDown"} <= alerts
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", [])
                       if t.get("exp_alerts")}
    assert alerts <= tested, f"alerts never seen firing in a test: {sorted(alerts - tested)}"


def test_rules_query_only_exported_metrics() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            assert_known(metric_names(rule["expr"]), rule.get("alert") or rule.get("record"))


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "radstream.json").read_text())
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [ds] = datasource["datasources"]
    panels = dashboard["panels"]
    assert len(panels) >= 8 and len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == ds["uid"], panel["title"]
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']}"
            assert_known(names, f"panel {panel['title']!r}")
            used |= names
    # The dashboard covers what SREs asked for.
    for wanted in ("radstream_studies_received_total", "radstream_findings_total",
                   "radstream_deadletters_total", "radstream_end_to_end_seconds_bucket",
                   "radstream_inference_batch_size_bucket", "radstream_consumer_lag_records",
                   "radstream_quality_auc"):
        assert wanted in used, wanted
    assert any("histogram_quantile" in t["expr"] for p in panels for t in p["targets"])


def test_grafana_provisioning_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "radstream.yml")
                              .read_text())
    [entry] = provider["providers"]
    assert entry["type"] == "file" and Path(entry["options"]["path"]).is_absolute()


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.9, sum by (le) (rate(radstream_end_to_end_seconds_bucket'
            '{priority="radstream_fake"}[5m]))) / up{job="triton"} + radstream:x:p95')
    assert metric_names(expr) == {"radstream_end_to_end_seconds_bucket", "up",
                                  "radstream:x:p95"}
