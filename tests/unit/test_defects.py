"""Technical-defect checks (streams/imaging/defects.py) and the priority gate
(streams/rules/priority.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from services.synth.phantoms.chest_xray import render_chest_xray
from services.synth.phantoms.registry import phantom_module
from streams.contract.catalog import CatalogError, DefectChecks, catalog, parse_service, service
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.imaging.defects import (
    check_contrast,
    check_geometry,
    check_identity,
    contrast_votes,
)
from streams.rules.priority import PriorityGate


@dataclass(frozen=True)
class G:
    modality: str = "CT"
    body_part: str = "CHEST"
    instance_number: int | None = None
    pixel_spacing: tuple[float, float] | None = (0.8, 0.8)
    position_z: float | None = None


CT = DefectChecks(min_slices=24, max_slices=1000, pixel_spacing_mm=(0.3, 2.0),
                  slice_spacing_mm=(0.5, 10.0))


def volume(n: int = 30, step: float = 2.0, **kw: object) -> list[G]:
    return [G(instance_number=i + 1, position_z=i * step, **kw) for i in range(n)]  # type: ignore[arg-type]


def reason_of(fn: object, *args: object, **kw: object) -> Reason | None:
    try:
        fn(*args, **kw)  # type: ignore[operator]
    except InputRejected as exc:
        return exc.reason
    return None


def test_a_complete_plausible_series_passes() -> None:
    assert reason_of(check_geometry, CT, (30, 128, 128), volume(), 30) is None


@pytest.mark.parametrize(("geoms", "shape", "announced", "reason"), [
    # a slice missing from the middle: gap in numbers and positions
    (volume()[:10] + volume()[11:], (29, 128, 128), 29, Reason.SERIES_INCOMPLETE),
    # fewer slices than announced (transfer cut short)
    (volume(), (30, 128, 128), 36, Reason.SERIES_INCOMPLETE),
    # too few slices for a chest CT service
    (volume(10), (10, 128, 128), 10, Reason.SERIES_INCOMPLETE),
    # every slice at the same position
    (volume(step=0.0), (30, 128, 128), 30, Reason.GEOMETRY_IMPLAUSIBLE),
    # 50 mm pixels
    (volume(pixel_spacing=(50.0, 50.0)), (30, 128, 128), 30, Reason.GEOMETRY_IMPLAUSIBLE),
    # a 4x4 matrix
    (volume(), (30, 4, 4), 30, Reason.GEOMETRY_IMPLAUSIBLE),
    # 30 mm between slices
    (volume(step=30.0), (30, 128, 128), 30, Reason.GEOMETRY_IMPLAUSIBLE),
])
def test_geometry_defects(geoms: list[G], shape: tuple[int, int, int], announced: int,
                          reason: Reason) -> None:
    assert reason_of(check_geometry, CT, shape, geoms, announced) is reason
    assert reason in TECHNICAL_DEFECTS


def test_identity_mismatch_is_a_defect_but_absent_tags_are_not() -> None:
    select = service("chest-ct").select
    assert reason_of(check_identity, select, [G(body_part="KNEE")]) is Reason.BODY_PART_MISMATCH
    assert reason_of(check_identity, select, [G(modality="MR")]) is Reason.BODY_PART_MISMATCH
    assert reason_of(check_identity, select, [G(modality="", body_part="")]) is None


@pytest.mark.parametrize("service_id", [s.id for s in catalog()])
def test_inverted_series_are_caught_and_upright_ones_pass(service_id: str) -> None:
    """The project's own phantoms, inverted as the city plants the defect, with the evidence
    the catalog declares for the service."""
    module = phantom_module(service_id)
    evidence = service(service_id).checks.contrast_evidence
    for seed in range(8):
        rng = np.random.default_rng(seed)
        positives = frozenset(c for c in module.FINDINGS if rng.random() < 0.5)
        phantom = module.render(rng, positives)
        wide = phantom.pixels.astype(np.int64)
        inverted = (wide.max() + wide.min() - wide).astype(phantom.pixels.dtype)
        kw = {"evidence": evidence, "slope": phantom.slope, "intercept": phantom.intercept}
        assert reason_of(check_contrast, phantom.pixels, phantom.photometric, **kw) is None
        assert reason_of(check_contrast, inverted, phantom.photometric, **kw) \
            is Reason.CONTRAST_INVERTED
        assert "upright" in contrast_votes(phantom.pixels, phantom.photometric,
                                           evidence=evidence, slope=phantom.slope,
                                           intercept=phantom.intercept).votes.values()


def test_contrast_check_reads_monochrome1_the_other_way_round() -> None:
    pixels, _ = render_chest_xray(np.random.default_rng(3), lesion=False)
    flipped = (int(pixels.max()) + int(pixels.min()) - pixels.astype(np.int64)).astype(np.uint16)
    evidence = service("chest-xray").checks.contrast_evidence
    # the same inverted values are upright when the file says bright = air
    assert reason_of(check_contrast, flipped, "MONOCHROME1", evidence=evidence) is None
    assert reason_of(check_contrast, pixels, "MONOCHROME1", evidence=evidence) \
        is Reason.CONTRAST_INVERTED


def test_a_bright_border_alone_is_no_evidence() -> None:
    """Issue 19: a film whose collimated edges are bright (as film shows unexposed area) is
    upright; before, the border being brighter than the centre was called inversion."""
    pixels, _ = render_chest_xray(np.random.default_rng(5), lesion=False)
    framed = pixels.copy()
    edge = pixels.shape[0] // 10
    top = int(pixels.max())
    framed[:edge], framed[-edge:], framed[:, :edge], framed[:, -edge:] = top, top, top, top
    for evidence in (("midline", "burned_out_air"), ("air",), ("burned_out_air",)):
        assert reason_of(check_contrast, framed, evidence=evidence) is None


def test_no_evidence_declared_never_fires() -> None:
    pixels, _ = render_chest_xray(np.random.default_rng(3), lesion=False)
    inverted = (int(pixels.max()) + int(pixels.min()) - pixels.astype(np.int64)).astype(np.uint16)
    assert reason_of(check_contrast, inverted, evidence=()) is None


def test_identity_reads_synonyms_and_abstains_on_unknown_terms() -> None:
    chest = service("chest-xray").select
    for same in ("THORAX", "Chest", "LUNG", "CHEST_PA"):
        assert reason_of(check_identity, chest, [G(modality="DX", body_part=same)]) is None
    # a term of a vendor's own that names no known region is no evidence
    assert reason_of(check_identity, chest, [G(modality="DX", body_part="PA ERECT")]) is None
    # an unknown modality (OT, SC) is none either; a radiograph's retired code RG is a DX
    assert reason_of(check_identity, chest, [G(modality="OT", body_part="CHEST")]) is None
    assert reason_of(check_identity, chest, [G(modality="RG", body_part="CHEST")]) is None
    assert reason_of(check_identity, chest,
                     [G(modality="DX", body_part="KNEE")]) is Reason.BODY_PART_MISMATCH
    assert reason_of(check_identity, service("head-ct").select,
                     [G(modality="CT", body_part="SKULL")]) is None


def test_the_catalog_accepts_only_known_contrast_evidence() -> None:
    entry = {"id": "x-ray", "clinical_area": "a", "select": {"modalities": ["DX"],
             "body_parts": ["CHEST"]}, "model": {"name": "m"}, "preprocess": {"size": 64},
             "checks": {"contrast_evidence": ["midline", "vibes"]},
             "findings": [{"code": "a_b", "display": "A"}]}
    with pytest.raises(CatalogError, match="contrast_evidence"):
        parse_service(entry)
    entry["checks"] = {"contrast_evidence": []}
    assert parse_service(entry).checks.contrast_evidence == ()
    assert DefectChecks().contrast_evidence == ("air",)


def test_positions_judge_completeness_when_instance_numbers_skip() -> None:
    """Numbering may skip (a re-sent or deleted instance) while the slices are complete."""
    geoms = [G(instance_number=i + 1 + (i >= 15), position_z=2.0 * i) for i in range(30)]
    assert reason_of(check_geometry, CT, (30, 128, 128), geoms, 30) is None


async def test_routine_waits_for_priority_work_and_gives_up_after_max_wait() -> None:
    gate = PriorityGate(max_wait_s=0.05)
    assert await gate.routine_turn() is True
    order: list[str] = []
    release = asyncio.Event()

    async def priority() -> None:
        async with gate.priority_work():
            await release.wait()
            order.append("priority")

    async def routine() -> None:
        await gate.routine_turn()
        order.append("routine")

    task = asyncio.create_task(priority())
    await asyncio.sleep(0)
    assert gate.busy
    waiter = asyncio.create_task(routine())
    await asyncio.sleep(0.01)
    assert order == []  # routine is held while priority work is in hand
    release.set()
    await asyncio.gather(task, waiter)
    assert order == ["priority", "routine"]
    # a priority batch that never ends cannot starve the routine lane
    async with gate.priority_work():
        assert await gate.routine_turn() is False
