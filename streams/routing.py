"""Which AI services apply to a study (pure logic, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.catalog import ServiceSpec


def applies(spec: ServiceSpec, study: Mapping[str, Any]) -> bool:
    """A service applies when any series matches its modality and body part.

    Series-level attributes win over the study-level ones: a chest CT study can carry a scout
    image, and a mixed study must still reach the right service.
    """
    for series in study.get("series", ()):
        modality = series.get("modality") or study.get("modality")
        body_part = series.get("body_part") or study.get("body_part")
        if modality in spec.modalities and body_part in spec.body_parts:
            return True
    return False


def route(study: Mapping[str, Any], services: Iterable[ServiceSpec]) -> list[ServiceSpec]:
    return [s for s in services if applies(s, study)]


def matching_series(spec: ServiceSpec, study: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        s for s in study.get("series", ())
        if (s.get("modality") or study.get("modality")) in spec.modalities
        and (s.get("body_part") or study.get("body_part")) in spec.body_parts
    ]
