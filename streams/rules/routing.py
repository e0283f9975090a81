"""Which AI services apply to a study, and which lane a work item takes (pure logic, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.contract.catalog import Selection, ServiceSpec

#: Priorities that take a service's priority lane (when it has one).
PRIORITY_LANE_PRIORITIES = frozenset({"urgent", "emergency"})


def series_matches(select: Selection, study: Mapping[str, Any],
                   series: Mapping[str, Any]) -> bool:
    """Series-level attributes win over the study-level ones: a chest CT study can carry a
    scout image, and a mixed study must still reach the right service."""
    modality = series.get("modality") or study.get("modality")
    body_part = series.get("body_part") or study.get("body_part")
    if modality not in select.modalities or body_part not in select.body_parts:
        return False
    description = str(series.get("description") or study.get("study_description") or "")
    if select.series_description is not None and not select.series_description.search(
            description):
        return False
    return not (select.exclude_series_description is not None
                and select.exclude_series_description.search(description))


def patient_matches(select: Selection, study: Mapping[str, Any]) -> bool:
    """Sex and age filters; a service that filters on them never applies when they are unknown
    (a screening programme must not read a study it cannot tell is eligible)."""
    if select.sexes and study.get("patient_sex") not in select.sexes:
        return False
    if select.min_age is None and select.max_age is None:
        return True
    age = study.get("patient_age_years")
    if not isinstance(age, int):
        return False
    return ((select.min_age is None or age >= select.min_age)
            and (select.max_age is None or age <= select.max_age))


def matching_series(spec: ServiceSpec, study: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not patient_matches(spec.select, study):
        return []
    return [s for s in study.get("series", ()) if series_matches(spec.select, study, s)]


def applies(spec: ServiceSpec, study: Mapping[str, Any]) -> bool:
    return bool(matching_series(spec, study))


def route(study: Mapping[str, Any], services: Iterable[ServiceSpec]) -> list[ServiceSpec]:
    return [s for s in services if applies(s, study)]


def lane(spec: ServiceSpec, study: Mapping[str, Any]) -> str:
    """``"priority"`` for urgent/emergency studies of a service with a priority lane."""
    if spec.priority_lane and study.get("priority") in PRIORITY_LANE_PRIORITIES:
        return "priority"
    return "routine"
