"""The AI service catalog: which studies each service reads, which model it calls, and how the
model's outputs become findings. The one source of truth for services and their thresholds.

Operating thresholds come from each model's card (written by its training script), so the number
the model card reports is the number the worker applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

#: The `service` named on a not_applicable Finding: the router itself, since no service applied.
NOT_APPLICABLE_SERVICE = "none"

MODEL_CARDS = Path(__file__).resolve().parent.parent / "services" / "triton" / "model_cards"


@dataclass(frozen=True)
class FindingSpec:
    """One model output that becomes one finding."""

    code: str
    display: str
    #: Column of the model's output tensor holding this finding's score (0..1).
    output_index: int
    threshold: float


@dataclass(frozen=True)
class ServiceSpec:
    id: str
    clinical_area: str
    modalities: frozenset[str]
    body_parts: frozenset[str]
    #: Triton model name/version and tensor names.
    model: str
    model_version: str
    input_name: str
    output_name: str
    findings: tuple[FindingSpec, ...]


@cache
def model_card(model: str) -> dict[str, object]:
    """The machine-readable model card written by the model's training script."""
    data = orjson.loads((MODEL_CARDS / f"{model}.json").read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"model card {model}.json is not an object")
    return data


def _threshold(model: str) -> float:
    value = model_card(model)["threshold"]
    if not isinstance(value, int | float):
        raise ValueError(f"model card {model}.json has no numeric threshold")
    return float(value)


@cache
def catalog() -> tuple[ServiceSpec, ...]:
    return (
        ServiceSpec(
            id="chest-xray",
            clinical_area="chest radiography / fluorography",
            modalities=frozenset({"DX", "CR"}),
            body_parts=frozenset({"CHEST"}),
            model="cxr_lesion",
            model_version="1",
            input_name="image",
            output_name="lesion_score",
            findings=(
                FindingSpec("lung_nodule", "Lung nodule or mass", 0, _threshold("cxr_lesion")),
            ),
        ),
    )


def service(service_id: str) -> ServiceSpec:
    for spec in catalog():
        if spec.id == service_id:
            return spec
    raise KeyError(f"unknown AI service {service_id!r}; known: {[s.id for s in catalog()]}")


def select(service_ids: Sequence[str]) -> tuple[ServiceSpec, ...]:
    """The services a worker runs: all of them when none are named."""
    return tuple(service(s) for s in service_ids) if service_ids else catalog()
