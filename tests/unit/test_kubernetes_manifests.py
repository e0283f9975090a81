"""deploy/kubernetes: every manifest parses, and Triton stays reachable from the worker pods only.

No cluster here, so the NetworkPolicies are evaluated by a small model of their semantics
(label selectors, namespace scoping, ports): enough to catch a policy that lets in more than the
workers, or one that does not select the Triton pods at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "kubernetes"
NAMESPACE = "radstream"
TRITON_PORTS = {8000, 8001}
TRITON_METRICS = 8002


def _docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


DOCS = _docs()


def _of_kind(kind: str) -> Iterator[dict[str, Any]]:
    return (d for d in DOCS if d["kind"] == kind)


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _peer_admits(peer: Mapping[str, Any], policy_ns: str, pod_ns: str,
                 pod: Mapping[str, str], ns_labels: Mapping[str, str]) -> bool:
    if "ipBlock" in peer:
        return True  # addresses, not pods: treat as open to the world
    if "namespaceSelector" in peer:
        in_ns = matches(peer["namespaceSelector"], ns_labels)
    else:
        in_ns = pod_ns == policy_ns  # a bare podSelector means: this namespace only
    return in_ns and matches(peer.get("podSelector"), pod)


def reachable_ports(target: Mapping[str, str], port_set: set[int], pod_ns: str,
                    pod: Mapping[str, str],
                    policies: list[dict[str, Any]] | None = None) -> set[int]:
    """Ports of `target` (pod labels in radstream) that a pod may connect to, per the policies."""
    ns_labels = {"kubernetes.io/metadata.name": pod_ns}
    candidates = list(_of_kind("NetworkPolicy")) if policies is None else policies
    policies = [p for p in candidates
                if p["metadata"]["namespace"] == NAMESPACE
                and matches(p["spec"]["podSelector"], target)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not policies:
        return set(port_set)  # no policy selects the pod: Kubernetes allows everything
    allowed: set[int] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            admitted = not peers or any(
                _peer_admits(p, NAMESPACE, pod_ns, pod, ns_labels) for p in peers)
            if not admitted:
                continue
            ports = rule.get("ports")
            allowed |= set(port_set) if not ports else {int(p["port"]) for p in ports}
    return allowed & port_set


def _pod_labels(deployment: str) -> dict[str, str]:
    return dict(_one("Deployment", deployment)["spec"]["template"]["metadata"]["labels"])


ALL_TRITON = TRITON_PORTS | {TRITON_METRICS}


def test_every_manifest_parses_and_is_namespaced() -> None:
    assert DOCS, "no manifests found"
    for doc in DOCS:
        assert {"apiVersion", "kind"} <= doc.keys()
        if doc["kind"] == "Kustomization":  # kustomize's own file, not a cluster object
            continue
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
    listed = set(next(_of_kind("Kustomization"))["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_nothing_is_exposed_outside_the_cluster() -> None:
    assert not list(_of_kind("Ingress"))
    for svc in _of_kind("Service"):
        assert svc["spec"].get("type") == "ClusterIP", svc["metadata"]["name"]
        assert not svc["spec"].get("externalIPs")
    for policy in _of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from"), f"{policy['metadata']['name']}: a rule open to all sources"
            assert not any("ipBlock" in p for p in rule["from"])


def test_triton_admits_only_the_workers() -> None:
    triton = _pod_labels("triton")
    worker = _pod_labels("radstream-worker")
    assert reachable_ports(triton, ALL_TRITON, NAMESPACE, worker) == TRITON_PORTS
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    assert reachable_ports(triton, ALL_TRITON, "monitoring", prometheus) == {TRITON_METRICS}
    # Everyone else: a hospital gateway, any other pod here, worker look-alikes elsewhere.
    for ns, pod in [(NAMESPACE, {"app.kubernetes.io/name": "hospital-gateway"}),
                    (NAMESPACE, {}),
                    ("hospitals", worker),
                    ("default", worker),
                    (NAMESPACE, prometheus)]:
        assert reachable_ports(triton, ALL_TRITON, ns, pod) == set(), (ns, pod)


def test_the_policy_model_notices_open_policies() -> None:
    """The checker itself: without policies, or with a rule lacking `from`, Triton is open."""
    triton, stranger = _pod_labels("triton"), {"app.kubernetes.io/name": "hospital-gateway"}
    assert reachable_ports(triton, ALL_TRITON, "hospitals", stranger, policies=[]) == ALL_TRITON
    open_rule = {"metadata": {"namespace": NAMESPACE},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                          "ingress": [{"ports": [{"port": 8001}]}]}}
    assert reachable_ports(triton, ALL_TRITON, "hospitals", stranger,
                           policies=[open_rule]) == {8001}
    assert matches({"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
                   {"a": "b"})
    assert not matches({"matchLabels": {"a": "b"}}, {"a": "c"})


def test_triton_service_and_server_are_locked_down() -> None:
    svc = _one("Service", "triton")
    deployment = _one("Deployment", "triton")
    assert matches({"matchLabels": svc["spec"]["selector"]}, _pod_labels("triton"))
    assert {p["port"] for p in svc["spec"]["ports"]} == ALL_TRITON
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--model-control-mode=none" in container["args"]
    assert all(m.get("readOnly") for m in container["volumeMounts"])
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in volumes)


def test_worker_reads_kafka_credentials_from_secrets() -> None:
    container = _one("Deployment", "radstream-worker")["spec"]["template"]["spec"][
        "containers"][0]
    config = _one("ConfigMap", "radstream-kafka")["data"]
    assert config["RADSTREAM_KAFKA_SECURITY"] == "sasl_ssl"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["RADSTREAM_KAFKA_USER"]["valueFrom"]
    assert "RADSTREAM_KAFKA_PASSWORD" not in env  # the password is a mounted file
    assert not any("PASSWORD" in k for k in config if k != "RADSTREAM_KAFKA_PASSWORD_FILE")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(config["RADSTREAM_KAFKA_PASSWORD_FILE"]).parent) in mounts
    assert str(Path(config["RADSTREAM_KAFKA_CA"]).parent) in mounts
    assert env["RADSTREAM_TRITON_GRPC"]["value"].startswith("triton.radstream.svc")


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_no_secret_values_in_the_repository(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc is None or doc["kind"] != "Secret", f"{path.name} holds a Secret"
