"""An inference lane's batch functions (streams/agents/inference.py) on a list-backed sink:
which work items are read, which become technical_defect Findings or dead letters and why, and
that every study of a batch ends with an outcome, whatever fails after validation.

The preparer and the model are stand-ins here (the real ones: test_prepare_pool.py and the
integration tests); one test runs the real PreparePool on a file outside the DICOM roots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streams.agents.inference import Lane, Prepared
from streams.agents.prepare_pool import Prepared as PreparedImages
from streams.agents.prepare_pool import PreparePool
from streams.contract import topics
from streams.contract.catalog import ServiceSpec, service
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.contract.topics import DEPLOYMENT_HEADER
from streams.imaging.preparation import ReadLimits
from streams.settings import Settings
from streams.triton.client import InferenceRejected, RowResult

from .agent_support import ListSink, Probe, announcement, event, study_uid

SETTINGS = Settings(app_id="radstream-unit")
SPEC = service("chest-xray")
WORK = topics.work_topic(SPEC.id).name
TENSOR = np.zeros((1, 8, 8), dtype=np.float32)


@dataclass
class StandInPreparer:
    """Per study UID, what reading and preprocessing it gives (a tensor by default)."""

    outcomes: dict[str, Exception] = field(default_factory=dict)

    async def prepare_many(self, spec: ServiceSpec, studies: list[dict[str, Any]], *,
                           priority: bool = False) -> list[PreparedImages | Exception]:
        return [self.outcomes.get(s["study_uid"], (TENSOR, 0.01, 0.02)) for s in studies]


@dataclass
class StandInModel:
    """Scores every item 0.9, or fails as told: as a whole, or for the items listed."""

    error: Exception | None = None
    rows: int | None = None
    refused: frozenset[int] = frozenset()

    async def infer_rows(self, model: str, version: str, input_name: str,
                         output_names: tuple[str, ...], batch: np.ndarray) -> list[RowResult]:
        if self.error is not None:
            raise self.error
        width = max(f.output_index for f in SPEC.findings) + 1
        return [InferenceRejected("item refused") if i in self.refused
                else [np.full(width, 0.9, dtype=np.float32) for _ in output_names]
                for i in range(self.rows or len(batch))]


@dataclass
class Engines:
    preparer: Any = field(default_factory=StandInPreparer)
    model: Any = field(default_factory=StandInModel)


def new_lane(probe: Probe, engines: Engines | None = None) -> Lane:
    return Lane(SPEC, SETTINGS, probe.metrics, engines or Engines())


def work_item(body: dict[str, Any] | bytes, offset: int = 0,
              deployment: bytes = b"radstream-unit") -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    key = None if isinstance(body, bytes) else str(body["study_uid"]).encode()
    return event(WORK, raw, offset=offset, key=key, headers=[(DEPLOYMENT_HEADER, deployment)])


def prepared(body: dict[str, Any], offset: int = 0) -> Prepared:
    return Prepared(work_item(body, offset), body, TENSOR, 1_796_371_200.0, 0.01, 0.02)


# --- prepare_batch -------------------------------------------------------------------------

async def test_a_readable_study_is_prepared_and_has_no_outcome_yet() -> None:
    uid = study_uid()
    sink = ListSink()
    (p,) = await new_lane(Probe()).prepare_batch([work_item(announcement(uid))], sink)
    assert p.study["study_uid"] == uid and p.tensor is TENSOR
    assert sink.sent == []


async def test_a_work_item_another_deployment_routed_is_left_to_it() -> None:
    sink = ListSink()
    items = [work_item(announcement(study_uid()), deployment=b"radstream-staging")]
    assert await new_lane(Probe()).prepare_batch(items, sink) == []
    assert sink.sent == []


async def test_unreadable_images_and_events_get_their_outcome_with_the_reason() -> None:
    defect = next(iter(sorted(TECHNICAL_DEFECTS)))
    defective, missing, crashing, good = (study_uid() for _ in range(4))
    preparer = StandInPreparer({
        defective: InputRejected(defect, "background brighter than anatomy"),
        missing: InputRejected(Reason.FILE_MISSING, "no such file"),
        crashing: ValueError("decoder bug")})
    probe = Probe()
    sink = ListSink()
    batch = [work_item(b"{broken", 0), work_item(announcement(defective), 1),
             work_item(announcement(missing), 2), work_item(announcement(crashing), 3),
             work_item(announcement(good), 4)]
    ready = await new_lane(probe, Engines(preparer)).prepare_batch(batch, sink)
    assert [p.study["study_uid"] for p in ready] == [good]
    (finding,) = sink.on(topics.FINDINGS)
    assert finding.key == defective
    assert finding.body["status"] == "technical_defect"
    assert finding.body["defect_reason"] == defect.value
    letters = sink.deadletters()
    assert [(d["origin"]["offset"], d["reason"]) for d in letters] == [
        (0, "invalid_json"), (2, "file_missing"), (3, "internal_error")]
    assert all(d["service"] == SPEC.id for d in letters)
    assert probe.value("radstream_findings_total", service=SPEC.id,
                       status="technical_defect") == 1


async def test_a_file_outside_the_dicom_roots_is_dead_lettered_by_the_real_pool(
        tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(b"DICM")
    pool = PreparePool(ReadLimits((roots,), 1 << 20, 1 << 20), processes=0, threads=1)
    try:
        sink = ListSink()
        ready = await new_lane(Probe(), Engines(preparer=pool)).prepare_batch(
            [work_item(announcement(study_uid(), uri=outside.as_uri()))], sink)
    finally:
        pool.shutdown()
    assert ready == []
    assert [d["reason"] for d in sink.deadletters()] == ["file_outside_root"]


async def test_a_preparer_that_fails_as_a_whole_dead_letters_each_study() -> None:
    class Broken:
        async def prepare_many(self, *args: Any, **kwargs: Any) -> list[Any]:
            raise RuntimeError("pool bug")

    sink = ListSink()
    items = [work_item(announcement(study_uid()), i) for i in range(3)]
    assert await new_lane(Probe(), Engines(preparer=Broken())).prepare_batch(items, sink) == []
    assert [(d["origin"]["offset"], d["reason"]) for d in sink.deadletters()] == [
        (0, "internal_error"), (1, "internal_error"), (2, "internal_error")]


# --- finish_batch --------------------------------------------------------------------------

async def test_each_study_gets_its_finding_then_its_latency_all_flushed() -> None:
    probe = Probe()
    sink = ListSink()
    studies = [announcement(study_uid()) for _ in range(3)]
    await new_lane(probe).finish_batch([prepared(s, i) for i, s in enumerate(studies)], sink)
    uids = [s["study_uid"] for s in studies]
    assert [s.key for s in sink.on(topics.FINDINGS)] == uids
    assert [s.key for s in sink.on(topics.LATENCY)] == uids
    assert all(s.body["status"] == "ok" for s in sink.on(topics.FINDINGS))
    assert [s.topic for s in sink.sent] == [topics.FINDINGS.name] * 3 + [topics.LATENCY.name] * 3
    assert sink.all_flushed
    assert probe.value("radstream_findings_total", service=SPEC.id, status="ok") == 3


async def test_lower_case_rfc3339_timestamps_end_like_any_other_study() -> None:
    """Issue 15, defect 1: `t` and `z` are valid RFC 3339 (the schema accepts them). The lane
    raised after sending the batch's Findings, so the batch was never acknowledged and every
    redelivery repeated it."""
    lower = announcement(study_uid(), at="2026-12-04t10:00:00z")
    normal = announcement(study_uid())
    sink = ListSink()
    await new_lane(Probe()).finish_batch([prepared(lower, 0), prepared(normal, 1)], sink)
    uids = [lower["study_uid"], normal["study_uid"]]
    assert [s.key for s in sink.on(topics.FINDINGS)] == uids
    assert [s.key for s in sink.on(topics.LATENCY)] == uids
    assert sink.all_flushed


async def test_a_failure_after_the_findings_went_out_still_ends_the_batch() -> None:
    """Whatever fails once a study's Finding is on the bus (here: its Latency event) must not
    leave the batch unacknowledged: each redelivery would publish its Findings again."""
    broken = announcement(study_uid())
    broken["published_at"] = "not a timestamp"  # past validation, as a bug would make it
    normal = announcement(study_uid())
    sink = ListSink()
    await new_lane(Probe()).finish_batch([prepared(broken, 0), prepared(normal, 1)], sink)
    assert [s.key for s in sink.on(topics.FINDINGS)] == [broken["study_uid"],
                                                         normal["study_uid"]]
    assert [s.key for s in sink.on(topics.LATENCY)] == [normal["study_uid"]]
    assert sink.deadletters() == []  # the broken study has its outcome: the Finding
    assert sink.all_flushed


@pytest.mark.parametrize(("model", "reason"), [
    (StandInModel(error=InferenceRejected("input shape refused")), "inference_failed"),
    (StandInModel(error=RuntimeError("client bug")), "internal_error"),
    (StandInModel(rows=1), "internal_error"),  # fewer answers than studies
])
async def test_a_failed_model_call_dead_letters_every_study_of_the_batch(
        model: StandInModel, reason: str) -> None:
    probe = Probe()
    sink = ListSink()
    studies = [announcement(study_uid()) for _ in range(2)]
    await new_lane(probe, Engines(model=model)).finish_batch(
        [prepared(s, i) for i, s in enumerate(studies)], sink)
    assert sink.on(topics.FINDINGS) == []
    letters = sink.deadletters()
    assert [(d["key"], d["reason"], d["service"]) for d in letters] == [
        (s["study_uid"], reason, SPEC.id) for s in studies]
    assert [d["origin"] for d in letters] == [
        {"topic": WORK, "partition": 0, "offset": i} for i in range(2)]
    assert sink.all_flushed
    assert probe.value("radstream_deadletters_total", reason=reason) == 2


async def test_a_study_triton_refuses_alone_is_dead_lettered_and_its_batch_mates_scored() -> None:
    probe = Probe()
    sink = ListSink()
    studies = [announcement(study_uid()) for _ in range(3)]
    await new_lane(probe, Engines(model=StandInModel(refused=frozenset({1})))).finish_batch(
        [prepared(s, i) for i, s in enumerate(studies)], sink)
    uids = [s["study_uid"] for s in studies]
    assert [s.key for s in sink.on(topics.FINDINGS)] == [uids[0], uids[2]]
    assert [s.key for s in sink.on(topics.LATENCY)] == [uids[0], uids[2]]
    assert [(d["key"], d["reason"]) for d in sink.deadletters()] == [
        (uids[1], "inference_failed")]
    assert sink.all_flushed
