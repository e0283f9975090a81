"""The simulated city through the real pipeline: 2,000 studies across every AI service, each
accounted for against what the simulator planted.

Every study must end as the outcome its ground truth implies: an ok Finding from its service, a
technical_defect Finding with the planted defect's reason, or a not_applicable Finding; nothing
may be missing and nothing may land elsewhere.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from services.demo.city import CityConfig, account, announcements, publish_paced
from services.ops.follow import OutcomeReader
from services.ops.progress import Progress
from services.publisher.pseudonym import Pseudonymizer
from services.synth.city import CityModel, Load, expected_outcomes, generate_city
from streams.contract import topics
from streams.contract.catalog import catalog
from tests.integration.conftest import TEST_KEY, Worker

pytestmark = pytest.mark.integration

STUDIES = 2000


def test_city_of_2000_studies_is_fully_accounted_for(worker: Worker, bootstrap: str) -> None:
    cfg = CityConfig(studies=STUDIES, rate_per_s=400.0, seed=7301, defect_rate=0.06,
                     not_applicable_rate=0.05)
    started = time.monotonic()
    out = worker.root / "city-itest"
    truths = generate_city(out, STUDIES, seed=cfg.seed, model=CityModel(),
                           load=Load(rate_per_s=cfg.rate_per_s), defect_rate=cfg.defect_rate,
                           not_applicable_rate=cfg.not_applicable_rate)
    generated_s = time.monotonic() - started
    services = Counter(t.service for t in truths)
    # the simulated city exercises every catalog service, defects and not-applicable studies
    assert {s.id for s in catalog()} <= set(services)
    assert sum(1 for t in truths if t.defect) > 0 and services["none"] > 0

    # Staged under the worker's root; truths come back with the keyed UIDs the bus carries.
    events, truths = announcements(out, truths, Pseudonymizer(TEST_KEY.encode()), worker.root)
    reader = OutcomeReader(bootstrap).start()
    uids = {t.study_uid for t in truths}
    try:
        delivered = publish_paced(bootstrap, events, reader)
        assert delivered == STUDIES
        deadline = time.monotonic() + 900
        progress = Progress()
        while time.monotonic() < deadline and len(reader.resolved(uids)) < STUDIES:
            reader.poll(1.0)
            progress.update(f"city: {len(reader.resolved(uids))}/{STUDIES} resolved")
        reader.poll(3.0)  # let a duplicate, if any, arrive
        acc = account(truths, reader)
        latency = reader.on(topics.LATENCY, uids)
    finally:
        reader.close()
    processed_s = time.monotonic() - started - generated_s

    expected_kinds = Counter(o.split(":")[0] for t in truths for o in expected_outcomes(t).values())
    print(f"\ncity: {STUDIES} studies generated in {generated_s:.0f}s, processed in "
          f"{processed_s:.0f}s; services {dict(services)}; expected outcomes "
          f"{dict(expected_kinds)}; got {dict(acc.by_kind)}; matched {acc.matched}, lost "
          f"{acc.lost}, other outcome {len(acc.wrong)}, duplicates {acc.duplicates}, latency "
          f"events {len(latency)}")
    assert acc.lost == 0, f"{acc.lost} studies without an outcome, e.g. {acc.missing[:3]}"
    assert acc.wrong == [], f"{len(acc.wrong)} studies with another outcome: {acc.wrong[:3]}"
    assert acc.matched == STUDIES
    assert dict(acc.by_kind) == dict(expected_kinds)
