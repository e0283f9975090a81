"""Publish-only-as-itself (streams/rules/origin.py), client security settings
(streams/kafka/security.py) and the ACL plan (services/ops/acl.py), without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ops.acl import Grant, analytics_grants, hospital_grants, plan, worker_grants
from streams.contract import topics
from streams.contract.reasons import InputRejected, Reason
from streams.kafka.security import KafkaSecurity, KafkaSecurityError
from streams.rules.origin import (
    INTAKE_PATTERN,
    check_origin,
    hospital_of_topic,
    intake_acl_prefix,
    intake_topic,
)

# --- origin --------------------------------------------------------------------------------


def test_intake_topic_round_trips() -> None:
    assert intake_topic("H001") == "radiology.intake.H001.v1"
    assert hospital_of_topic("radiology.intake.H001.v1") == "H001"
    assert hospital_of_topic(topics.STUDIES.name) is None
    assert hospital_of_topic("radiology.intake.H001.v2") is None
    assert hospital_of_topic("radiology.intake.H0.01.v1") is None


@pytest.mark.parametrize("bad", ["", "H.001", "H 001", "x" * 33, "../H001"])
def test_invalid_hospital_ids_get_no_topic(bad: str) -> None:
    with pytest.raises(ValueError):
        intake_topic(bad)


def test_acl_prefix_of_one_hospital_does_not_cover_another() -> None:
    """A PREFIXED ACL on "radiology.intake.H001" would also match H0012's topic."""
    assert intake_topic("H0012").startswith("radiology.intake.H001")
    assert not intake_topic("H0012").startswith(intake_acl_prefix("H001"))
    assert intake_topic("H001").startswith(intake_acl_prefix("H001"))


def test_check_origin_accepts_own_hospital_and_the_plain_studies_topic() -> None:
    check_origin(intake_topic("H001"), {"hospital_id": "H001"})
    check_origin(topics.STUDIES.name, {"hospital_id": "H002"})


@pytest.mark.parametrize(("claimed", "shown"), [("H002", "H002"), (None, "?"),
                                                ("Jane Doe", "?")])
def test_check_origin_rejects_another_hospital(claimed: object, shown: str) -> None:
    with pytest.raises(InputRejected) as caught:
        check_origin(intake_topic("H001"), {"hospital_id": claimed})
    assert caught.value.reason is Reason.HOSPITAL_MISMATCH
    # Only registered ids are echoed; anything else (it could be anything) is not.
    assert caught.value.detail == f"hospital_id {shown} announced on the intake topic of H001"


def test_intake_pattern_matches_only_intake_topics() -> None:
    import re

    pattern = re.compile(INTAKE_PATTERN)
    assert pattern.match(intake_topic("gkb-67"))
    assert not pattern.match(topics.STUDIES.name)


# --- client settings -----------------------------------------------------------------------


def test_default_is_plaintext_and_adds_nothing() -> None:
    sec = KafkaSecurity.from_env({})
    assert not sec.enabled
    assert sec.librdkafka() == {}
    assert sec.faust_credentials() is None


def test_sasl_ssl_from_env_with_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    sec = KafkaSecurity.from_env({"RADSTREAM_KAFKA_SECURITY": "SASL_SSL",
                                  "RADSTREAM_KAFKA_USER": "hospital-H001",
                                  "RADSTREAM_KAFKA_PASSWORD_FILE": str(secret),
                                  "RADSTREAM_KAFKA_CA": "/etc/ca.pem"})
    assert sec.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "hospital-H001", "sasl.password": "s3cret-value",
        "ssl.endpoint.identification.algorithm": "https", "ssl.ca.location": "/etc/ca.pem"}
    assert "s3cret" not in repr(sec)


def test_faust_credentials_are_scram_over_tls(tmp_path: Path) -> None:
    import faust

    sec = KafkaSecurity("sasl_ssl", "worker", "pw")
    creds = sec.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is not None and creds.ssl_context.check_hostname
    assert "pw" not in repr(creds)


@pytest.mark.parametrize("env", [
    {"RADSTREAM_KAFKA_SECURITY": "sasl_ssl", "RADSTREAM_KAFKA_USER": "worker"},
    {"RADSTREAM_KAFKA_SECURITY": "sasl_ssl", "RADSTREAM_KAFKA_PASSWORD": "pw"},
    {"RADSTREAM_KAFKA_SECURITY": "ssl"},
    {"RADSTREAM_KAFKA_SECURITY": "sasl_ssl", "RADSTREAM_KAFKA_USER": "w",
     "RADSTREAM_KAFKA_PASSWORD": "hunter2", "RADSTREAM_KAFKA_SASL_MECHANISM": "PLAIN"},
])
def test_incomplete_settings_fail_without_echoing_the_password(env: dict[str, str]) -> None:
    with pytest.raises(KafkaSecurityError) as caught:
        KafkaSecurity.from_env(env)
    assert "hunter2" not in str(caught.value)


# --- ACL plan ------------------------------------------------------------------------------


def _writes(grants: list[Grant]) -> set[tuple[str, str]]:
    return {(g.name, g.pattern) for g in grants if g.operation == "write"}


def test_hospital_may_write_only_its_own_intake() -> None:
    grants = hospital_grants("H001")
    assert grants == [Grant("User:hospital-H001", "topic", "radiology.intake.H001.", "prefixed",
                            "write")]


def test_analytics_is_read_only_on_results() -> None:
    grants = analytics_grants()
    assert {g.operation for g in grants} == {"read"}
    assert {g.name for g in grants if g.resource == "topic"} == {
        topics.FINDINGS.name, topics.LATENCY.name, topics.STATS.name, topics.ALERTS.name}


def test_worker_has_least_privilege() -> None:
    grants = worker_grants("radstream")
    assert {g.resource for g in grants} == {"topic", "group"}  # nothing on the cluster
    writes = _writes(grants)
    assert (topics.REVIEWS.name, "literal") not in writes  # radiologists write reviews
    assert not any(name.startswith("radiology.intake.") for name, _ in writes)
    for t in (topics.FINDINGS, topics.LATENCY, topics.DEADLETTER, topics.STATS, topics.ALERTS):
        assert (t.name, "literal") in writes
    # Topic creation only for its own Faust internals, and only its own group.
    assert {(g.name, g.pattern) for g in grants if g.operation == "create"} == {
        ("radstream-", "prefixed")}
    assert [g.name for g in grants if g.resource == "group"] == ["radstream"]


def test_plan_is_sorted_and_free_of_duplicates() -> None:
    grants = plan(["H002", "H001", "H001"], "radstream")
    assert grants == sorted(set(grants))
    assert sum(1 for g in grants if g.principal.startswith("User:hospital-")) == 2
