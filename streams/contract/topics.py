"""Topic names and partition counts: the one source of truth for the bus layout.

Everything that creates, produces to or consumes from a topic reads it from here: the topic
creation script, the Faust app, the publisher, the tests and the AsyncAPI document's checker.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.contract.catalog import catalog


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    #: The record key's meaning, as documented in schemas/asyncapi.yaml.
    key: str
    #: CloudEvents type of the events carried, or "" for internal topics.
    event_type: str
    compacted: bool = False


#: Partition count shared by every per-study topic. Faust tables must match their source topic.
STUDY_PARTITIONS = 4

STUDIES = TopicSpec("radiology.studies.v1", STUDY_PARTITIONS, "study_uid",
                    "radiology.study.announced.v1")
FINDINGS = TopicSpec("radiology.findings.v1", STUDY_PARTITIONS, "study_uid",
                     "radiology.finding.v1")
LATENCY = TopicSpec("radiology.latency.v1", STUDY_PARTITIONS, "study_uid",
                    "radiology.latency.v1")
REVIEWS = TopicSpec("radiology.reviews.v1", STUDY_PARTITIONS, "study_uid",
                    "radiology.review.v1")
STATS = TopicSpec("radiology.stats.v1", 1, "window + dimension",
                  "radiology.stats.snapshot.v1", compacted=True)
ALERTS = TopicSpec("radiology.alerts.v1", 1, "service", "radiology.quality.alert.v1")
DEADLETTER = TopicSpec("radiology.deadletter.v1", STUDY_PARTITIONS, "original key",
                       "radiology.deadletter.v1")

#: AI services with their own work topic (`radiology.work.<service>.v1`): every catalog entry.
WORK_SERVICES: tuple[str, ...] = tuple(s.id for s in catalog())
#: Services that also have a priority lane (`radiology.work.<service>.priority.v1`).
PRIORITY_LANE_SERVICES: tuple[str, ...] = tuple(s.id for s in catalog() if s.priority_lane)


#: librdkafka's partitioner for keyed records, merged into every confluent-kafka producer's
#: settings. Faust (aiokafka) and Java clients place a key with murmur2; librdkafka's default
#: (CRC32) places it elsewhere, and records that must meet in one partition would not: a study's
#: Review (demo, reference centre tools) and its Finding (worker) share the quality join's entry.
LIBRDKAFKA_PARTITIONER: dict[str, str] = {"partitioner": "murmur2_random"}


#: Header naming the deployment (Faust app id) whose router made a work item. Work topics are
#: shared by every deployment on a cluster (staging beside production, a second city), and each
#: must run inference only on what its own router routed, or studies are processed twice.
DEPLOYMENT_HEADER = "radstream-deployment"


def work_topic(service: str, lane: str = "routine") -> TopicSpec:
    """A service's work topic; the ``priority`` lane carries its urgent and emergency studies."""
    if lane == "priority":
        return TopicSpec(f"radiology.work.{service}.priority.v1", STUDY_PARTITIONS, "study_uid",
                         "")
    if lane != "routine":
        raise ValueError(f"unknown lane {lane!r}")
    return TopicSpec(f"radiology.work.{service}.v1", STUDY_PARTITIONS, "study_uid", "")


def all_topics() -> list[TopicSpec]:
    """Every topic the contract names, in creation order."""
    fixed = [STUDIES, FINDINGS, LATENCY, REVIEWS, STATS, ALERTS, DEADLETTER]
    return (fixed + [work_topic(s) for s in WORK_SERVICES]
            + [work_topic(s, "priority") for s in PRIORITY_LANE_SERVICES])
