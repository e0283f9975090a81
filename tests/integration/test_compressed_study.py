"""Studies stored compressed, as most PACS store them, go through the publisher and the real
worker to a Finding, not a dead letter; a lossless syntax gives the same score as the
uncompressed original it was written from."""

from __future__ import annotations

import shutil
import uuid

import pytest
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from services.ops.follow import OutcomeReader
from services.publisher import publish_path
from services.synth.city import generate_service_studies
from services.synth.compressed import recompress
from streams.contract import topics

from .conftest import TEST_KEY, Worker

pytestmark = pytest.mark.integration

#: One study per syntax; the last is lossy (JPEG 2000 at a compression ratio of 10).
SYNTAXES = (JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1, RLELossless, JPEG2000)
LOSSLESS = 4
#: Largest score difference between an uncompressed study and its lossless copy: the same
#: pixels, so only float noise from batching them with different neighbours.
SCORE_TOLERANCE = 1e-4


def deadletters(worker: Worker) -> float:
    """Dead letters this worker produced so far, all reasons together."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics_text().splitlines()
               if line.startswith("radstream_deadletters_total{"))


def test_compressed_studies_get_findings(worker: Worker, bootstrap: str) -> None:
    plain_id, packed_id = (f"T{uuid.uuid4().hex[:8]}" for _ in range(2))
    plain, packed = worker.root / plain_id, worker.root / packed_id
    truths = generate_service_studies(plain, len(SYNTAXES), seed=1604)
    shutil.copytree(plain, packed)
    for truth, syntax in zip(truths, SYNTAXES, strict=True):
        for file in truth.files:
            copy = packed / file.relative_to(plain)
            recompress(file, copy.with_suffix(".tmp"), syntax).replace(copy)

    before = deadletters(worker)
    outcomes = OutcomeReader(bootstrap).start()
    try:
        reports = {hospital: publish_path(folder, root=worker.root, hospital_id=hospital,
                                          priority="routine", bootstrap=bootstrap,
                                          key=TEST_KEY.encode())
                   for hospital, folder in ((plain_id, plain), (packed_id, packed))}
        for report in reports.values():
            assert report.delivered == len(SYNTAXES) and report.failed == 0
        uids = {uid for r in reports.values() for uid in r.study_uids.values()}
        findings = outcomes.wait_for(topics.FINDINGS, uids, len(uids), timeout_s=180)
    finally:
        outcomes.close()

    # This worker dead-lettered none of them (workers of other consumer groups on a shared
    # broker, with other DICOM roots, may dead-letter the same records for their own reasons).
    assert deadletters(worker) == before
    by_uid = {r.key: r.body for r in findings}
    assert set(by_uid) == uids
    for truth, syntax in zip(truths, SYNTAXES, strict=True):
        original = by_uid[reports[plain_id].study_uids[truth.study_uid]]
        compressed = by_uid[reports[packed_id].study_uids[truth.study_uid]]
        assert compressed["status"] == "ok", (syntax, compressed)
        assert original["status"] == "ok"
        if syntax in SYNTAXES[:LOSSLESS]:
            score, again = (b["findings"][0]["score"] for b in (original, compressed))
            assert abs(score - again) <= SCORE_TOLERANCE, (syntax, score, again)
