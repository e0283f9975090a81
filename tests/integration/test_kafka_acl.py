"""Authentication and least-privilege ACLs on a real, secured Kafka broker.

Starts a second broker (deploy/kafka-secure.sh: SASL_SSL + SCRAM-SHA-512, StandardAuthorizer,
deny by default) on its own ports and state directory, next to the shared one, and proves:
who cannot get in, that a hospital can publish only as itself (the broker refuses other topics,
and the origin check refuses a body naming another hospital), that analytics is read-only, and
that a real `radstream worker` runs on the worker principal's ACLs alone.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AclBinding, AdminClient

from services.ops.acl import Grant, binding
from services.ops.processes import spawn_worker, stop
from services.publisher.producer import StudyPublisher
from streams.contract import topics
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, schema
from streams.kafka.security import KafkaSecurity
from streams.rules.intake import parse_study
from streams.rules.origin import check_origin, intake_topic
from streams.settings import REPO_ROOT

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "deploy" / "kafka-secure.sh"
#: Not the script's defaults (29092-29094), so a developer's own secure broker may keep running.
CLIENT_PORT, CONTROLLER_PORT, INTERNAL_PORT = 29095, 29096, 29097
APP_ID = "radstream-acl"
HOSPITALS = ("H001", "H002")
_quiet = logging.getLogger("radstream.test.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    state: Path
    env: dict[str, str]

    @property
    def ca(self) -> str:
        return str(self.state / "kafka-secure" / "tls" / "ca.pem")

    def password_file(self, user: str) -> Path:
        return self.state / "kafka-secure" / "secrets" / f"{user}.password"

    def security(self, user: str, password: str | None = None) -> KafkaSecurity:
        secret = self.password_file(user).read_text().strip() if password is None else password
        return KafkaSecurity("sasl_ssl", user, secret, self.ca)

    def conf(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, "logger": _quiet,
                **self.security(user, password).librdkafka()}


def _script(broker_env: dict[str, str], *args: str) -> None:
    subprocess.run([str(SCRIPT), *args], env=broker_env, check=True, timeout=150)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    state = tmp_path_factory.mktemp("kafka-secure-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_KAFKA")}
    env.update(RADSTREAM_STATE=str(state), RADSTREAM_APP_ID=APP_ID,
               RADSTREAM_SECURE_HOSPITALS=" ".join(HOSPITALS),
               RADSTREAM_SECURE_KAFKA_PORT=str(CLIENT_PORT),
               RADSTREAM_SECURE_KAFKA_CONTROLLER_PORT=str(CONTROLLER_PORT),
               RADSTREAM_SECURE_KAFKA_INTERNAL_PORT=str(INTERNAL_PORT))
    try:
        _script(env, "up")
        yield SecureBroker(f"127.0.0.1:{CLIENT_PORT}", state, env)
    finally:
        _script(env, "stop")


def study(hospital_id: str, **changes: Any) -> dict[str, Any]:
    """A valid StudyAnnounced (an MR head: no AI service applies, so no Triton is involved)."""
    event = dict(schema(EventKind.STUDY_ANNOUNCED)["examples"][0])
    uid = f"1.2.826.0.1.3680043.8.498.{uuid.uuid4().int % 10**12}"
    series = [{**s, "modality": "MR", "body_part": "HEAD", "series_uid": f"{uid}.1"}
              for s in event["series"]]
    event.update(study_uid=uid, hospital_id=hospital_id, device_id=f"mr-{hospital_id}",
                 modality="MR", body_part="HEAD", series=series, study_description="HEAD")
    event.update(changes)
    return event


def produce(conf: dict[str, Any], topic: str, event: dict[str, Any], *,
            idempotent: bool = True) -> KafkaError | None:
    """Send one record and return its delivery error (None: the broker stored it)."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**conf, "acks": "all", "enable.idempotence": idempotent,
                         "message.timeout.ms": 15000})
    producer.produce(topic, orjson.dumps(event), key=str(event["study_uid"]).encode(),
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert outcome, "no delivery report"
    return outcome[0]


def read_until(conf: dict[str, Any], group: str, topic: str, keys: str | set[str],
               timeout_s: float) -> list[Any]:
    """Every record of `topic` (from its start) until one keyed by each of `keys` has been read.

    Records of different keys may sit on different partitions, and partitions are read in no
    fixed order: stopping at the last key published would race the others.

    Partitions are assigned, not subscribed, so the group is never joined (no rebalance of a
    worker using it), but the principal still needs a READ ACL on it.
    """
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        wanted = {keys} if isinstance(keys, str) else set(keys)
        seen = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            seen.append(msg)
            wanted.discard((msg.key() or b"").decode())
            if not wanted:
                return seen
        raise AssertionError(f"no record keyed {sorted(wanted)} on {topic} within {timeout_s:.0f}s")
    finally:
        consumer.close()


def metadata_errors(conf: dict[str, Any]) -> list[KafkaError]:
    """Ask for metadata; return the client errors seen. Fails the test if the broker answers."""
    errors: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": errors.append, "logger": _quiet})  # type: ignore[dict-item]
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=4)
    admin.poll(1)  # serve error_cb
    return errors


def test_unauthenticated_clients_and_wrong_passwords_are_refused(secure: SecureBroker) -> None:
    # No TLS, no SASL at all.
    metadata_errors({"bootstrap.servers": secure.bootstrap})
    # TLS but no SASL login.
    metadata_errors({"bootstrap.servers": secure.bootstrap, "security.protocol": "SSL",
                     "ssl.ca.location": secure.ca})
    # A real user with a wrong password: the broker says so.
    errors = metadata_errors(secure.conf("hospital-H001", password="not-the-password"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    # The internal listener is no back door: it wants a client certificate signed by our CA.
    metadata_errors({"bootstrap.servers": f"127.0.0.1:{INTERNAL_PORT}",
                     "security.protocol": "SSL", "ssl.ca.location": secure.ca})
    # The right password gets in (so the refusals above are about credentials).
    admin = AdminClient({**secure.conf("hospital-H001")})
    assert admin.list_topics(timeout=10).brokers


def test_hospital_publishes_its_own_study(secure: SecureBroker) -> None:
    event = study("H001")
    with StudyPublisher(secure.bootstrap, security=secure.security("hospital-H001")) as pub:
        assert pub.intake  # on by default with SASL_SSL
        pub.publish(event)
        report = pub.flush(20)
    assert (report.delivered, report.failed, report.pending) == (1, 0, 0), report.last_error
    records = read_until(secure.conf("worker"), APP_ID, intake_topic("H001"),
                         event["study_uid"], 30)
    assert orjson.loads(records[-1].value()) == event


def test_hospital_cannot_publish_as_another(secure: SecureBroker) -> None:
    h001 = secure.conf("hospital-H001")
    # The publisher routes an H002 study to H002's intake topic: the broker refuses H001 there.
    with StudyPublisher(secure.bootstrap, security=secure.security("hospital-H001")) as pub:
        pub.publish(study("H002"))
        report = pub.flush(20)
    assert (report.delivered, report.failed) == (0, 1)
    assert "Topic authorization failed" in report.last_error
    # A raw client fares no better, on H002's topic or on the shared studies topic.
    for topic in (intake_topic("H002"), topics.STUDIES.name):
        err = produce(h001, topic, study("H002"))
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic

    # On its own intake topic the broker cannot read the body: an H002 claim is stored ...
    forged, genuine = study("H002"), study("H001")
    assert produce(h001, intake_topic("H001"), genuine) is None
    assert produce(h001, intake_topic("H001"), forged) is None
    # ... and the worker's origin check, on the records as the worker principal reads them,
    # rejects the forgery with its reason code and lets the genuine study through.
    records = read_until(secure.conf("worker"), APP_ID, intake_topic("H001"),
                         {forged["study_uid"], genuine["study_uid"]}, 30)
    by_key = {m.key().decode(): m for m in records}
    ok = by_key[genuine["study_uid"]]
    check_origin(ok.topic(), parse_study(ok.value(), headers=ok.headers()))
    bad = by_key[forged["study_uid"]]
    with pytest.raises(InputRejected) as caught:
        check_origin(bad.topic(), parse_study(bad.value(), headers=bad.headers()))
    assert caught.value.reason is Reason.HOSPITAL_MISMATCH
    assert caught.value.detail == "hospital_id H002 announced on the intake topic of H001"


def test_analytics_cannot_write_findings(secure: SecureBroker) -> None:
    analytics = secure.conf("analytics")
    finding = {"study_uid": "1.2.3.4", "forged": True}
    err = produce(analytics, topics.FINDINGS.name, finding, idempotent=False)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer = Consumer({**analytics, "group.id": "analytics-acl-probe",
                         "auto.offset.reset": "earliest"})
    try:  # nor may it read what it has no business with (hospital announcements)
        consumer.subscribe([topics.STUDIES.name])
        msg = consumer.poll(15)
        error = msg.error() if msg is not None else None
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_worker_runs_on_least_privilege(secure: SecureBroker,
                                             tmp_path: Path) -> None:
    """A real `radstream worker` (Faust) as the worker principal: it joins its group, creates
    its table changelogs, consumes radiology.studies.v1 and publishes the Finding, which the
    analytics principal then reads. It may not administer ACLs."""
    log_path = REPO_ROOT / "artifacts" / "secure-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    env = {**secure.env, "RADSTREAM_KAFKA": secure.bootstrap,
           "RADSTREAM_KAFKA_SECURITY": "sasl_ssl", "RADSTREAM_KAFKA_USER": "worker",
           "RADSTREAM_KAFKA_PASSWORD_FILE": str(secure.password_file("worker")),
           "RADSTREAM_KAFKA_CA": secure.ca, "RADSTREAM_APP_ID": APP_ID,
           "RADSTREAM_WEB_PORT": str(_free_port()), "RADSTREAM_METRICS_PORT": str(_free_port()),
           "RADSTREAM_DATADIR": str(tmp_path / "faust"),
           "RADSTREAM_DICOM_ROOTS": str(tmp_path / "dicom")}
    log_path.unlink(missing_ok=True)
    proc = spawn_worker(env, log_path)
    try:
        # What the intake gateway forwards after its origin check (here sent by the admin).
        event = study("H001")
        assert produce(secure.conf("admin"), topics.STUDIES.name, event) is None
        records = read_until(secure.conf("analytics"), "analytics-acl", topics.FINDINGS.name,
                             event["study_uid"], 90)
        finding = orjson.loads(records[-1].value())
        assert (finding["hospital_id"], finding["status"]) == ("H001", "not_applicable")
        assert proc.poll() is None, f"worker exited; see {log_path}"
        assert "authorization" not in log_path.read_text().lower(), f"see {log_path}"
    finally:
        stop(proc)
    # Least privilege: the worker cannot grant itself (or anyone) more rights.
    admin = AdminClient(secure.conf("worker"))
    grant = Grant("User:worker", "topic", "radiology.", "prefixed", "write")
    futures = admin.create_acls([binding(grant)])
    acl: AclBinding
    for acl, fut in futures.items():
        with pytest.raises(KafkaException) as caught:
            fut.result()
        assert caught.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, acl
