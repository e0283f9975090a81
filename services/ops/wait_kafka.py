"""Block until the Kafka broker answers metadata requests, or fail after a timeout."""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka.admin import AdminClient


def wait_for_kafka(bootstrap: str, timeout_s: float) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return True
        except Exception:  # broker not listening yet
            pass
        time.sleep(0.5)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    if wait_for_kafka(args.bootstrap, args.timeout):
        print(f"kafka: ready at {args.bootstrap}")
        return 0
    print(f"kafka: no answer from {args.bootstrap} after {args.timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
