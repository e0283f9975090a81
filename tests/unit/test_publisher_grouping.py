"""Instances found in any order group into the same studies and series, in the same order."""

from __future__ import annotations

import random
from pathlib import Path

from services.publisher.scan import InstanceHeader, group_instances


def header(study: str, series: str, sop: str, number: int | None) -> InstanceHeader:
    return InstanceHeader(
        study_uid=study, series_uid=series, sop_uid=sop, instance_number=number,
        modality="CT", body_part="CHEST", patient_id="P1", patient_issuer="", accession="A1",
        study_description="", series_description="", patient_sex="F", patient_age_years=50,
        acquired_at=None, station="H001-D01", device_serial="", manufacturer="",
        device_model="",
        path=Path(f"/data/{study}/{series}/{sop}.dcm"),
    )


def two_by_two() -> list[InstanceHeader]:
    return [header(study, f"{study}.{s}", f"{study}.{s}.{i}", i)
            for study in ("1.2.2", "1.2.1") for s in (2, 1) for i in (3, 1, 2)]


def shape(headers: list[InstanceHeader]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    return [(study.study_uid, [(s.series_uid, [h.sop_uid for h in s.instances])
                               for s in study.series])
            for study in group_instances(headers)]


def test_two_studies_of_two_series_are_grouped_and_sorted() -> None:
    studies = group_instances(two_by_two())
    assert [s.study_uid for s in studies] == ["1.2.1", "1.2.2"]
    first = studies[0]
    assert [s.series_uid for s in first.series] == ["1.2.1.1", "1.2.1.2"]
    assert [h.instance_number for h in first.series[0].instances] == [1, 2, 3]
    assert first.instance_count == 6
    assert first.first.sop_uid == "1.2.1.1.1"


def test_grouping_does_not_depend_on_input_order() -> None:
    expected = shape(two_by_two())
    for seed in range(5):
        shuffled = two_by_two()
        random.Random(seed).shuffle(shuffled)
        assert shape(shuffled) == expected


def test_instances_without_number_go_last() -> None:
    headers = [header("1.9", "1.9.1", "1.9.1.5", None), header("1.9", "1.9.1", "1.9.1.7", 7)]
    [study] = group_instances(headers)
    assert [h.sop_uid for h in study.series[0].instances] == ["1.9.1.7", "1.9.1.5"]


def test_a_sop_instance_in_two_files_counts_once() -> None:
    copy = header("1.9", "1.9.1", "1.9.1.1", 1)
    duplicate = InstanceHeader(**{**copy.__dict__, "path": Path("/data/copy/1.dcm")})
    [study] = group_instances([copy, duplicate])
    assert study.instance_count == 1
    assert study.first.path == Path("/data/1.9/1.9.1/1.9.1.1.dcm")


def test_no_headers_no_studies() -> None:
    assert group_instances([]) == []
