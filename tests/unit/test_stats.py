"""Counting rules of the aggregator and the roll-up the stats API serves."""

from __future__ import annotations

from typing import Any

from streams.stats import (
    cell_key,
    count_finding,
    empty_counts,
    finding_identity,
    rollup,
    split_cell_key,
)


def finding(status: str = "ok", positive: bool = False, service: str = "chest-xray",
            study: str = "1.2.3") -> dict[str, Any]:
    items = [{"code": "lung_nodule", "display": "x", "score": 0.9 if positive else 0.1,
              "positive": positive, "threshold": 0.5}] if status == "ok" else []
    return {"study_uid": study, "hospital_id": "H001", "service": service,
            "model": {"name": "m", "version": "1"}, "status": status, "findings": items}


def test_count_finding_by_status_and_positivity() -> None:
    c = empty_counts()
    for f in [finding(positive=True), finding(), finding("technical_defect"),
              finding("not_applicable", service="none")]:
        c = count_finding(c, f)
    assert c == {"findings": 4, "ok": 2, "positive": 1, "technical_defect": 1,
                 "not_applicable": 1}


def test_count_finding_does_not_mutate_its_input() -> None:
    c = empty_counts()
    count_finding(c, finding())
    assert c == empty_counts()


def test_identity_separates_services_and_model_versions() -> None:
    a = finding()
    b = {**finding(), "model": {"name": "m", "version": "2"}}
    c = finding(service="other")
    assert len({finding_identity(a), finding_identity(b), finding_identity(c)}) == 3
    assert finding_identity(a) == finding_identity(finding())


def test_rollup_sums_partitions() -> None:
    cells = [
        (cell_key(0, "H001", "chest-xray"), {"findings": 2, "ok": 2, "positive": 1}),
        (cell_key(3, "H001", "chest-xray"), {"findings": 1, "ok": 1, "positive": 0}),
        (cell_key(1, "H002", "none"), {"findings": 1, "not_applicable": 1}),
    ]
    out = rollup(cells, [("0|H001", 2), ("3|H001", 1), ("1|H002", 1)])
    assert out["city"]["studies"] == 4 and out["city"]["findings"] == 4
    assert out["hospitals"]["H001"]["studies"] == 3 and out["hospitals"]["H001"]["positive"] == 1
    assert out["services"]["none"]["not_applicable"] == 1
    assert split_cell_key(cell_key(2, "H9", "a|b")) == (2, "H9", "a|b")
