"""schemas/asyncapi.yaml agrees with streams/contract/topics.py and points at schema files that
exist."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from streams.contract.schemas import SCHEMA_DIR, EventKind
from streams.contract.topics import PRIORITY_LANE_SERVICES, WORK_SERVICES, all_topics
from streams.rules.origin import intake_topic

SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"


@cache
def document() -> dict[str, Any]:
    loaded = yaml.safe_load((SCHEMA_DIR / "asyncapi.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def resolve(ref: str) -> Any:
    """Follow a local `#/a/b` reference inside the document."""
    assert ref.startswith("#/"), ref
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"}:
        node = resolve(node["$ref"])
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def channel_by_address() -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in document()["channels"].values()}


def header_ce_type(headers: Any) -> str | None:
    headers = deref(headers)
    parts = [deref(p) for p in headers.get("allOf", [])] + [headers]
    for part in reversed(parts):
        ce_type = part.get("properties", {}).get("ce_type", {})
        if "const" in ce_type:
            return str(ce_type["const"])
    return None


def test_is_asyncapi_3_with_local_kafka_server() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "radstream"
    assert doc["info"]["version"]
    assert "ce_specversion" in doc["info"]["description"]
    assert doc["servers"]["local"] == {
        **doc["servers"]["local"], "host": "127.0.0.1:9092", "protocol": "kafka"}


def channel_for(topic_name: str) -> dict[str, Any] | None:
    """The channel whose address is the topic, or whose parameterised address (one
    ``{service}`` from its enum) expands to it: the work topics, one per catalog service."""
    for address, channel in channel_by_address().items():
        if address == topic_name:
            return channel
        service = channel.get("parameters", {}).get("service")
        if service and any(address.replace("{service}", s) == topic_name
                           for s in service.get("enum", [])):
            return channel
    return None


@pytest.mark.parametrize("topic", all_topics(), ids=lambda t: t.name)
def test_every_topic_is_a_channel_with_its_partitions_and_key(topic: Any) -> None:
    channel = channel_for(topic.name)
    assert channel is not None, f"no channel with address {topic.name}"
    kafka = channel["bindings"]["kafka"]
    assert kafka.get("topic", topic.name) == topic.name
    assert kafka["partitions"] == topic.partitions
    compacted = "compact" in kafka.get("topicConfiguration", {}).get("cleanup.policy", [])
    assert compacted == topic.compacted
    assert channel["messages"]
    for message in channel["messages"].values():
        message = deref(message)
        key = message["bindings"]["kafka"]["key"]
        assert "string" in (key["type"] if isinstance(key["type"], list) else [key["type"]])
        assert key["description"].startswith(topic.key)
        if topic.event_type:
            assert header_ce_type(message["headers"]) == topic.event_type


def test_parameterised_work_channels_list_exactly_the_catalog_services() -> None:
    routine = channel_by_address()["radiology.work.{service}.v1"]
    priority = channel_by_address()["radiology.work.{service}.priority.v1"]
    assert "internal" in routine["description"].lower()
    assert routine["parameters"]["service"]["enum"] == list(WORK_SERVICES)
    assert priority["parameters"]["service"]["enum"] == list(PRIORITY_LANE_SERVICES)


def test_every_channel_address_is_a_known_topic_or_a_pattern() -> None:
    intake = "radiology.intake.{hospital_id}.v1"
    assert intake.replace("{hospital_id}", "H001") == intake_topic("H001")
    known = {t.name for t in all_topics()} | {"radiology.work.{service}.v1",
                                              "radiology.work.{service}.priority.v1", intake}
    assert set(channel_by_address()) <= known


def test_every_schema_file_ref_exists_and_every_event_is_published() -> None:
    file_refs = {r.split("#")[0] for r in refs(document()) if not r.startswith("#")}
    assert file_refs
    for ref in file_refs:
        assert (SCHEMA_DIR / ref).is_file(), f"{ref} not found in {SCHEMA_DIR}"
    assert file_refs == {kind.filename for kind in EventKind}


def test_every_local_ref_resolves() -> None:
    for ref in refs(document()):
        if ref.startswith("#"):
            assert resolve(ref) is not None


def test_json_schema_payloads_declare_their_format() -> None:
    for message in document()["components"]["messages"].values():
        payload = message["payload"]
        if "schemaFormat" in payload or "schema" in payload:
            assert payload["schemaFormat"] == SCHEMA_FORMAT
            assert not payload["schema"]["$ref"].startswith("#")


def test_operations_point_at_channels_and_their_messages() -> None:
    operations = document()["operations"]
    actions = {(op["action"], deref(op["channel"])["address"]) for op in operations.values()}
    assert ("send", "radiology.studies.v1") in actions
    for topic in ("findings", "latency", "stats", "alerts", "deadletter"):
        assert ("receive", f"radiology.{topic}.v1") in actions
    for op in operations.values():
        channel_ref = op["channel"]["$ref"]
        for message in op["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/")
