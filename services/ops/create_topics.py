"""Create every contract topic with its partition count (idempotent).

Explicit creation matters: a broker that auto-creates a source topic with a different partition
count than a Faust table's changelog makes the worker crash with PartitionsMismatch.
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka.admin import AdminClient, NewTopic

from streams.contract.topics import all_topics


def create_topics(bootstrap: str) -> list[str]:
    """Create missing topics; return the names that were created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in all_topics() if t.name not in existing]
    created: list[str] = []
    if not wanted:
        return created
    futures = admin.create_topics([
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1,
                 config={"cleanup.policy": "compact"} if t.compacted else {})
        for t in wanted
    ])
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    created = create_topics(args.bootstrap)
    print(f"kafka: {len(all_topics())} topics present ({len(created)} created)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
