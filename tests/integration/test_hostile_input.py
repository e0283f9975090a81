"""The whole hostile corpus (services/synth/hostile.py) through the real pipeline: every bad
file and bad event ends in radiology.deadletter.v1 with its precise reason, duplicates are
judged by content, a good study published afterwards still gets its Finding, and the worker
stays alive with bounded memory. tests/integration/test_bad_input.py has the basic cases."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from services.synth.city import generate_service_studies
from services.synth.hostile import (
    HOSPITAL_ID,
    HostileEvent,
    announcement,
    hostile_events,
    hostile_uris,
    write_hostile_files,
)
from streams.contract import topics
from streams.contract.reasons import Reason
from streams.contract.schemas import EventKind, validate
from streams.settings import REPO_ROOT, Settings

from .conftest import Worker

pytestmark = pytest.mark.integration

#: A worker that decodes one image at a time with two preprocessing threads needs a few hundred
#: MiB; a leak or an unbounded decode of the corpus (GiB-sized declared images) would show.
MAX_RSS_BYTES = int(1.5 * 1024**3)


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc (Linux), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def metric(text: str, name: str, labels: str) -> float:
    m = re.search("^" + re.escape(f"{name}{{{labels}}}") + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def deadletter_counts(worker: Worker) -> Counter[str]:
    text = worker.metrics_text()
    return Counter({r.value: metric(text, "radstream_deadletters_total", f'reason="{r.value}"')
                    for r in Reason})


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def rfc3339(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def produce(bootstrap: str, events: list[HostileEvent]) -> None:
    """As a hospital's own Kafka client would: compressed, so a body above our 1 MiB event cap
    still fits the broker's record-batch limit and reaches the worker."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "compression.type": "lz4", "message.max.bytes": 8 * 1024 * 1024})
    for e in events:
        producer.produce(topics.STUDIES.name, key=e.key.encode(), value=e.value,
                         headers=list[tuple[str, str | bytes | None]](e.headers) or None)
    assert producer.flush(30) == 0


def test_hostile_corpus_is_dead_lettered_precisely(worker: Worker, bootstrap: str,
                                                   tmp_path: Path) -> None:
    settings = Settings()  # the worker fixture runs with the defaults for every cap
    # The worker reads a hospital's files only under <root>/<hospital_id>/.
    root = worker.root / HOSPITAL_ID / f"hostile-{uuid.uuid4().hex[:6]}"
    outside = tmp_path / "outside"
    files = write_hostile_files(root, outside, max_file_bytes=settings.max_file_bytes)
    now = datetime.now(UTC)
    published, later = rfc3339(now), rfc3339(now + timedelta(seconds=5))

    events: list[HostileEvent] = []
    for f in files:
        key = uid()
        events.append(HostileEvent(f"file:{f.name}", key, orjson.dumps(
            announcement(key, f.path.as_uri(), published_at=published)), f.reason, f.what))
    for name, uri, reason in hostile_uris(root, outside):
        key = uid()
        events.append(HostileEvent(f"uri:{name}", key, orjson.dumps(
            announcement(key, uri, published_at=published)), reason, name))
    events += hostile_events(uid, (root / "template.dcm").as_uri(), published_at=published,
                             later=later, max_event_bytes=settings.max_event_bytes)
    rejected = {e.key: e.reason for e in events if e.reason is not None}
    names = {e.key: e.name for e in events if e.reason is not None}
    accepted = {e.key for e in events if e.reason is None}
    assert accepted <= set(rejected)  # the duplicate trio shares one study_uid

    good_truth = generate_service_studies(root / "good", 1, seed=4711)[0]
    good = announcement(uid(), good_truth.files[0].as_uri(), published_at=published)

    rss_before = rss_bytes(worker.proc.pid)
    counts_before = deadletter_counts(worker)
    # The router reads radiology.studies.v1 in this worker's own consumer group, so its counts
    # are exact. Work topics are shared by every worker on the broker: when other workers run
    # (other engineers' consumer groups) this worker may see their copies of a work item too.
    at_router = Counter(r.value for k, r in rejected.items() if not names[k].startswith(
        ("file:", "uri:")))
    at_inference = Counter(r.value for k, r in rejected.items() if names[k].startswith(
        ("file:", "uri:")))
    outcomes = OutcomeReader(bootstrap).start()
    try:
        produce(bootstrap, events)
        produce(bootstrap, [HostileEvent("good", good["study_uid"], orjson.dumps(good), None,
                                         "a good study after the corpus")])
        findings = outcomes.wait_for(topics.FINDINGS, [good["study_uid"], *accepted],
                                     1 + 2 * len(accepted), timeout_s=180)
        # This worker's own count per reason: other workers on a shared broker (other
        # consumer groups) may dead-letter the same records for their own reasons.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            moved = deadletter_counts(worker) - counts_before
            if all(moved[r] >= n for r, n in (at_router + at_inference).items()):
                break
            time.sleep(0.5)
        dead = outcomes.wait_for(topics.DEADLETTER, rejected, len(rejected), timeout_s=30)
        stray = outcomes.on(topics.FINDINGS, set(rejected) - accepted)
    finally:
        outcomes.close()
    rss_after = rss_bytes(worker.proc.pid)

    report = {"cases": {names[k]: r.value for k, r in rejected.items()},
              "rss_before_bytes": rss_before, "rss_after_bytes": rss_after}
    out = REPO_ROOT / "artifacts" / "hostile-input.json"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"\nworker RSS before the corpus {rss_before / 2**20:.0f} MiB, "
          f"after {rss_after / 2**20:.0f} MiB ({len(rejected)} hostile cases)")

    assert worker.proc.poll() is None, "the worker died"
    assert rss_after < MAX_RSS_BYTES, f"worker RSS {rss_after / 2**20:.0f} MiB"
    assert {r: moved[r] for r in at_router} == at_router, moved
    short = {str(r): (moved[r], n) for r, n in at_inference.items() if moved[r] < n}
    assert not short, f"(counted, expected) per reason short of its count: {short}"
    seen: dict[str, set[str]] = {}
    for rec in dead:
        validate(EventKind.DEADLETTER, rec.body)
        assert len(rec.body["payload_excerpt"].encode()) <= 1024
        seen.setdefault(names[rec.key], set()).add(rec.body["reason"])
    missing = {names[k]: r.value for k, r in rejected.items()
               if r.value not in seen.get(names[k], set())}
    assert missing == {}, f"cases without their precise reason: {missing}, seen {seen}"
    assert stray == [], "a dead-lettered study also got a Finding"
    ok: Counter[str] = Counter(r.key for r in findings if r.body["status"] == "ok")
    # The first and the identical re-announcement are both processed; the conflict is not.
    assert all(ok[k] >= 2 for k in accepted), ok
    assert ok[good["study_uid"]] >= 1, "the good study after the corpus got no Finding"
