"""City statistics from Findings (pure logic): counting rules and roll-ups.

Counts are kept per (source partition, hospital, service) so every table key is written from
one partition only, which keeps Faust's changelog consistent; the API sums the partitions.
Each (study, service, model version) is counted once: `finding_identity` is the dedup key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COUNTERS = ("findings", "ok", "positive", "technical_defect", "not_applicable")


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


def finding_identity(finding: Mapping[str, Any]) -> str:
    model = finding.get("model") or {}
    return f"{finding['study_uid']}|{finding['service']}|{model.get('version', '')}"


def cell_key(partition: int, hospital_id: str, service: str) -> str:
    return f"{partition}|{hospital_id}|{service}"


def split_cell_key(key: str) -> tuple[int, str, str]:
    partition, hospital, service = key.split("|", 2)
    return int(partition), hospital, service


def count_finding(counts: Mapping[str, int], finding: Mapping[str, Any]) -> dict[str, int]:
    """Counts after adding one Finding (returns a new dict; the input is not changed)."""
    out = {**empty_counts(), **counts}
    out["findings"] += 1
    status = finding["status"]
    if status in out:
        out[status] += 1
    if status == "ok" and any(f.get("positive") for f in finding.get("findings", ())):
        out["positive"] += 1
    return out


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for k in COUNTERS:
        into[k] = into.get(k, 0) + int(counts.get(k, 0))


def rollup(cells: Iterable[tuple[str, Mapping[str, int]]],
           studies: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """City, per-hospital and per-service totals from table cells and per-hospital study counts."""
    city = empty_counts()
    by_hospital: dict[str, dict[str, int]] = {}
    by_service: dict[str, dict[str, int]] = {}
    for key, counts in cells:
        _, hospital, service = split_cell_key(key)
        _add(city, counts)
        _add(by_hospital.setdefault(hospital, empty_counts()), counts)
        _add(by_service.setdefault(service, empty_counts()), counts)
    study_total = 0
    for key, n in studies:
        _, hospital = key.split("|", 1)
        by_hospital.setdefault(hospital, empty_counts())["studies"] = (
            by_hospital[hospital].get("studies", 0) + n)
        study_total += n
    for row in by_hospital.values():
        row.setdefault("studies", 0)
    return {
        "city": {"studies": study_total, **city},
        "hospitals": dict(sorted(by_hospital.items())),
        "services": dict(sorted(by_service.items())),
    }
