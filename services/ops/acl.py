"""Least-privilege ACLs and topics for a secured broker (`deploy/kafka-secure.sh setup` runs it).

Who may do what is a pure plan (`plan()`, unit-tested without a broker); `apply()` creates it with
confluent-kafka's AdminClient as a super user (RADSTREAM_KAFKA_* environment, see
streams/kafka/security.py). Creating an ACL that exists is a no-op, so this is idempotent.

Principals (SCRAM user names; the Kafka principal is `User:<name>`):
- `hospital-<id>`: WRITE on its own intake topics only (`radiology.intake.<id>.` PREFIXED).
- `worker`: the stream workers. Reads what its agents consume, writes what they produce, manages
  only its own Faust internal topics (`<app_id>-…`: table changelogs, the assignor leader topic)
  and only its consumer group. No cluster, ACL or other-group rights.
- `analytics`: READ on findings, latency, stats and alerts, with groups named `analytics-…`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from streams.contract import topics
from streams.kafka.security import KafkaSecurity
from streams.rules.origin import INTAKE_PREFIX, intake_acl_prefix, intake_topic

Resource = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "create", "describe"]

WORKER_USER = "worker"
ANALYTICS_USER = "analytics"
#: Consumer groups the analytics principal may use start with this.
ANALYTICS_GROUP_PREFIX = "analytics-"


def hospital_user(hospital_id: str) -> str:
    """SCRAM user name of a hospital (validated like the schema's hospital_id)."""
    intake_topic(hospital_id)  # raises ValueError on an invalid id
    return f"hospital-{hospital_id}"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may `operation` on the resource, from any host."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


def _topic(user: str, name: str, *ops: Operation, prefixed: bool = False) -> list[Grant]:
    pattern: Pattern = "prefixed" if prefixed else "literal"
    return [Grant(f"User:{user}", "topic", name, pattern, op) for op in ops]


def hospital_grants(hospital_id: str) -> list[Grant]:
    """A hospital writes its own intake topics and nothing else (not even radiology.studies.v1)."""
    return _topic(hospital_user(hospital_id), intake_acl_prefix(hospital_id), "write",
                  prefixed=True)


def worker_grants(app_id: str, user: str = WORKER_USER) -> list[Grant]:
    """What the Faust worker's agents consume and produce, plus its own internal topics/group.

    READ: intake (the gateway that checks origin), studies, work, reviews, and findings, latency
    and deadletter, which the aggregator and quality agents consume. WRITE: studies (verified
    announcements forwarded from intake), work, findings, latency, deadletter, stats, alerts.
    """
    grants = [
        *_topic(user, INTAKE_PREFIX, "read", prefixed=True),
        *_topic(user, "radiology.work.", "read", "write", prefixed=True),
        *_topic(user, topics.STUDIES.name, "read", "write"),
        *_topic(user, topics.REVIEWS.name, "read"),
        *_topic(user, topics.FINDINGS.name, "read", "write"),
        *_topic(user, topics.LATENCY.name, "read", "write"),
        *_topic(user, topics.DEADLETTER.name, "read", "write"),
        *_topic(user, topics.STATS.name, "write"),
        *_topic(user, topics.ALERTS.name, "write"),
        # Faust's own topics: <app_id>-<table>-changelog, <app_id>-__assignor-__leader.
        *_topic(user, f"{app_id}-", "create", "read", "write", "describe", prefixed=True),
        Grant(f"User:{user}", "group", app_id, "literal", "read"),
    ]
    return grants


def analytics_grants(user: str = ANALYTICS_USER) -> list[Grant]:
    """Read-only on the published results; consumer groups `analytics-…` only."""
    return [
        *[g for t in (topics.FINDINGS, topics.LATENCY, topics.STATS, topics.ALERTS)
          for g in _topic(user, t.name, "read")],
        Grant(f"User:{user}", "group", ANALYTICS_GROUP_PREFIX, "prefixed", "read"),
    ]


def plan(hospitals: Iterable[str], app_id: str) -> list[Grant]:
    """Every ACL of a deployment, sorted (stable output, easy to diff)."""
    grants = [*worker_grants(app_id), *analytics_grants()]
    for h in hospitals:
        grants += hospital_grants(h)
    return sorted(set(grants))


_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION = {"read": AclOperation.READ, "write": AclOperation.WRITE,
              "create": AclOperation.CREATE, "describe": AclOperation.DESCRIBE}


def binding(grant: Grant) -> AclBinding:
    return AclBinding(_RESOURCE[grant.resource], grant.name, _PATTERN[grant.pattern],
                      grant.principal, "*", _OPERATION[grant.operation],
                      AclPermissionType.ALLOW)


def admin_client(bootstrap: str, security: KafkaSecurity) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0,
                        **security.librdkafka()})


def wait_ready(admin: AdminClient, timeout_s: float) -> bool:
    """Poll metadata until the broker answers an authenticated request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=2).brokers:
                return True
        except Exception:  # not listening yet, or still loading its metadata
            pass
        time.sleep(0.5)
    return False


def ensure_topics(admin: AdminClient, hospitals: Iterable[str]) -> list[str]:
    """Create the contract topics and each hospital's intake topic; return those created."""
    specs = [*topics.all_topics(),
             *(topics.TopicSpec(intake_topic(h), topics.STUDY_PARTITIONS, "study_uid",
                                topics.STUDIES.event_type) for h in hospitals)]
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in specs if t.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics([
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1,
                 config={"cleanup.policy": "compact"} if t.compacted else {})
        for t in wanted])
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as exc:  # a concurrent creator won: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


#: Every ACL (None matches any name, principal and host; the stubs only know str).
_ANY: Any = None
_ALL_ACLS = AclBindingFilter(ResourceType.ANY, _ANY, ResourcePatternType.ANY, _ANY, _ANY,
                             AclOperation.ANY, AclPermissionType.ANY)


def apply(admin: AdminClient, grants: Iterable[Grant], timeout_s: float = 30) -> int:
    """Create the ACLs (existing ones are left as they are) and wait until the broker enforces
    them; return how many were requested.

    The controller commits an ACL before the broker's authorizer has loaded it: a client that
    starts right after `setup` would otherwise be refused for a moment. DescribeAcls is answered
    from the broker's authorizer, so once it lists every binding they are in force.
    """
    bindings = [binding(g) for g in grants]
    for fut in admin.create_acls(bindings).values():
        fut.result()
    wanted = set(map(str, bindings))
    deadline = time.monotonic() + timeout_s
    while not wanted <= set(map(str, admin.describe_acls(_ALL_ACLS).result())):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ACLs not in force after {timeout_s:.0f}s")
        time.sleep(0.2)
    return len(bindings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("wait", "setup", "plan"))
    parser.add_argument("--bootstrap", default="127.0.0.1:29092")
    parser.add_argument("--hospitals", default="H001,H002",
                        help="comma-separated hospital ids to grant intake topics to")
    parser.add_argument("--app-id", default="radstream", help="the worker's Faust app id")
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args(argv)
    hospitals = [h for h in args.hospitals.split(",") if h]
    grants = plan(hospitals, args.app_id)
    if args.command == "plan":
        for g in grants:
            print(f"ALLOW {g.principal} {g.operation.upper()} {g.resource}:{g.pattern}:{g.name}")
        return 0
    admin = admin_client(args.bootstrap, KafkaSecurity.from_env())
    if not wait_ready(admin, args.timeout):
        print(f"kafka-secure: no authenticated answer from {args.bootstrap}", file=sys.stderr)
        return 1
    if args.command == "wait":
        print(f"kafka-secure: ready at {args.bootstrap}")
        return 0
    created = ensure_topics(admin, hospitals)
    n = apply(admin, grants)
    print(f"kafka-secure: {len(created)} topics created, {n} ACLs in place "
          f"(hospitals: {', '.join(hospitals) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
