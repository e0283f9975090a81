"""The AI service catalog, loaded from ``streams/contract/catalog.toml``: which studies each service
reads, which model it calls, how pixels are prepared, which defects are checked, and how the
model's outputs become findings. The one source of truth for services and their thresholds.

Operating thresholds come from each model's card (written by its training script), so the number
the model card reports is the number the worker applies. They are read lazily: a card missing
for one service breaks that service's Findings (an ``internal_error`` dead letter, loudly), not the
whole worker.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

#: The `service` named on a not_applicable Finding: the router itself, since no service applied.
NOT_APPLICABLE_SERVICE = "none"

#: Package data beside this module, so an installed worker finds them without a checkout.
_DATA = Path(str(resources.files(__package__)))
CATALOG_FILE = _DATA / "catalog.toml"
#: One JSON card per model, written by its training script (services/training/).
MODEL_CARDS = _DATA / "model_cards"

@dataclass(frozen=True)
class PreprocessSpec:
    """How one AI service turns a series into its model's input (declared in the catalog).

    The tensor has ``len(windows) * slabs`` channels of ``size`` x ``size`` (window-major:
    channel ``w * slabs + s`` is window ``w`` of slab ``s``). Slabs are contiguous runs of
    slices, so a 40-slice CT and a 56-slice CT both become ``slabs`` channels; each window
    projects a slab either by its mean (the default) or by its maximum, a MIP slab, which keeps
    a small bright nodule or calcification at full contrast where a mean would dilute it.
    """

    size: int
    slabs: int = 1
    #: (center, width) pairs in rescaled units (HU for CT). Empty: the file's own window, else
    #: the robust percentile window of the series.
    windows: tuple[tuple[float, float], ...] = ()
    #: Per window: "mean" or "max" slab projection; empty means "mean" for every window.
    projections: tuple[str, ...] = ()

    def projection(self, window: int) -> str:
        return self.projections[window] if self.projections else "mean"

    @property
    def channels(self) -> int:
        return max(1, len(self.windows)) * self.slabs


_ID = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


@dataclass(frozen=True)
class FindingSpec:
    """One model output that becomes one finding."""

    code: str
    display: str
    #: Column of the model's output tensor holding this finding's score (0..1).
    output_index: int
    model: str
    description: str = ""
    #: Unit of the measured value for measurement findings ("deg", "mm"), else "".
    unit: str = ""
    #: A threshold given here instead of the model card's (synthetic services in tests).
    threshold_override: float | None = None

    @property
    def threshold(self) -> float:
        if self.threshold_override is not None:
            return self.threshold_override
        return finding_threshold(self.model, self.code)


@dataclass(frozen=True)
class Selection:
    """Which series a service reads (all given conditions must hold for one series)."""

    modalities: frozenset[str]
    body_parts: frozenset[str]
    series_description: re.Pattern[str] | None = None
    exclude_series_description: re.Pattern[str] | None = None
    sexes: frozenset[str] = frozenset()
    min_age: int | None = None
    max_age: int | None = None


@dataclass(frozen=True)
class DefectChecks:
    """Technical-defect limits checked on the decoded series before inference."""

    min_slices: int = 1
    max_slices: int = 1
    pixel_spacing_mm: tuple[float, float] = (0.02, 5.0)
    slice_spacing_mm: tuple[float, float] = (0.2, 20.0)
    #: What the inverted-contrast check may read as evidence (CONTRAST_EVIDENCE; their meaning
    #: is in streams/imaging/defects.py): "air" (the background around the body), "midline"
    #: (the body's central column brighter than both sides), "hounsfield" (CT numbers of air
    #: and soft tissue). Empty: the check never fires for the service.
    contrast_evidence: tuple[str, ...] = ("air",)


#: The kinds of evidence ``[service.checks] contrast_evidence`` may name.
CONTRAST_EVIDENCE = frozenset({"air", "burned_out_air", "midline", "hips", "hounsfield"})


@dataclass(frozen=True)
class ServiceSpec:
    id: str
    clinical_area: str
    select: Selection
    #: Triton model name/version and tensor names.
    model: str
    model_version: str
    input_name: str
    output_name: str
    findings: tuple[FindingSpec, ...]
    preprocess: PreprocessSpec = field(default_factory=lambda: PreprocessSpec(size=128))
    checks: DefectChecks = field(default_factory=DefectChecks)
    description: str = ""
    #: Urgent and emergency studies get their own work topic, drained first.
    priority_lane: bool = False
    #: Optional second output with the measured value of each finding (measurement services).
    measurement_output: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def modalities(self) -> frozenset[str]:
        return self.select.modalities

    @property
    def body_parts(self) -> frozenset[str]:
        return self.select.body_parts


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the service and field."""


@cache
def model_card(model: str) -> dict[str, Any]:
    """The machine-readable model card written by the model's training script."""
    path = MODEL_CARDS / f"{model}.json"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise CatalogError(f"model {model!r} has no card at {path}; train it first "
                           f"(make train)") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"model card {path.name} is not an object")
    return data


def finding_threshold(model: str, code: str) -> float:
    """A finding's operating threshold from its model's card (per finding, or one for all)."""
    card = model_card(model)
    per_finding = card.get("findings", {})
    value = per_finding.get(code, {}).get("threshold") if isinstance(per_finding, dict) else None
    if value is None:
        value = card.get("threshold")
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise CatalogError(f"model card {model}.json has no threshold in [0, 1] for {code!r}")
    return float(value)


def _regex(entry: dict[str, Any], key: str, where: str) -> re.Pattern[str] | None:
    value = entry.get(key)
    if value is None:
        return None
    try:
        return re.compile(str(value))
    except re.error as exc:
        raise CatalogError(f"{where}: {key} is not a valid regex: {exc}") from exc


def _pair(value: Any, default: tuple[float, float], where: str) -> tuple[float, float]:
    if value is None:
        return default
    if not (isinstance(value, list) and len(value) == 2 and value[0] <= value[1]):
        raise CatalogError(f"{where}: expected [low, high], got {value!r}")
    return float(value[0]), float(value[1])


def parse_service(entry: dict[str, Any]) -> ServiceSpec:
    """One ``[[service]]`` table to a ServiceSpec, with every field checked."""
    sid = entry.get("id")
    if not isinstance(sid, str) or not _ID.match(sid):
        raise CatalogError(f"service id {sid!r} must match {_ID.pattern}")
    where = f"service {sid}"
    try:
        sel, model, prep = entry["select"], entry["model"], entry["preprocess"]
        chk = entry.get("checks", {})
        selection = Selection(
            modalities=frozenset(sel["modalities"]), body_parts=frozenset(sel["body_parts"]),
            series_description=_regex(sel, "series_description", where),
            exclude_series_description=_regex(sel, "exclude_series_description", where),
            sexes=frozenset(sel.get("sexes", ())), min_age=sel.get("min_age"),
            max_age=sel.get("max_age"))
        raw_windows = prep.get("windows", [])
        windows = tuple((float(w[0]), float(w[1])) for w in raw_windows)
        projections = tuple(str(w[2]) if len(w) > 2 else "mean" for w in raw_windows)
        if any(w <= 0 for _, w in windows) or any(len(w) not in (2, 3) for w in raw_windows):
            raise CatalogError(f"{where}: windows are [center, width] or [center, width, "
                               f"projection] with width > 0")
        if not set(projections) <= {"mean", "max"}:
            raise CatalogError(f"{where}: a window's projection is 'mean' or 'max'")
        preprocess = PreprocessSpec(
            size=int(prep["size"]), slabs=int(prep.get("slabs", 1)), windows=windows,
            projections=projections if "max" in projections else ())
        checks = DefectChecks(
            min_slices=int(chk.get("min_slices", 1)), max_slices=int(chk.get("max_slices", 1)),
            pixel_spacing_mm=_pair(chk.get("pixel_spacing_mm"), DefectChecks.pixel_spacing_mm,
                                   where),
            slice_spacing_mm=_pair(chk.get("slice_spacing_mm"), DefectChecks.slice_spacing_mm,
                                   where),
            contrast_evidence=tuple(str(e) for e in chk.get("contrast_evidence",
                                                            DefectChecks.contrast_evidence)))
        if not set(checks.contrast_evidence) <= CONTRAST_EVIDENCE:
            raise CatalogError(f"{where}: contrast_evidence is a list of "
                               f"{sorted(CONTRAST_EVIDENCE)}")
        findings = tuple(
            FindingSpec(code=f["code"], display=f["display"], output_index=i,
                        model=model["name"], description=f.get("description", ""),
                        unit=f.get("unit", ""))
            for i, f in enumerate(entry["findings"]))
        spec = ServiceSpec(
            id=sid, clinical_area=entry["clinical_area"], select=selection,
            model=model["name"], model_version=str(model.get("version", "1")),
            input_name=model.get("input", "image"), output_name=model.get("output", "scores"),
            measurement_output=model.get("measurement_output", ""),
            findings=findings, preprocess=preprocess, checks=checks,
            description=entry.get("description", ""),
            priority_lane=bool(entry.get("priority_lane", False)))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CatalogError):
            raise
        raise CatalogError(f"{where}: {type(exc).__name__}: {exc}") from exc
    if not spec.findings or not spec.modalities or not spec.body_parts:
        raise CatalogError(f"{where}: needs findings, modalities and body_parts")
    if preprocess.size < 8 or preprocess.slabs < 1 or checks.min_slices > checks.max_slices:
        raise CatalogError(f"{where}: implausible preprocess or checks")
    for f in spec.findings:
        if not _CODE.match(f.code):
            raise CatalogError(f"{where}: finding code {f.code!r} must match {_CODE.pattern}")
    return spec


def load_catalog(path: Path = CATALOG_FILE) -> tuple[ServiceSpec, ...]:
    """Parse and check a catalog file: ids and finding codes must be unique across it."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    specs = tuple(parse_service(e) for e in data.get("service", []))
    if not specs:
        raise CatalogError(f"{path} defines no [[service]]")
    ids = [s.id for s in specs]
    codes = [f.code for s in specs for f in s.findings]
    for kind, values in (("service id", ids), ("finding code", codes)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise CatalogError(f"{path}: duplicate {kind}s {dupes}")
    if NOT_APPLICABLE_SERVICE in ids:
        raise CatalogError(f"{NOT_APPLICABLE_SERVICE!r} is reserved for not_applicable Findings")
    return specs


@cache
def catalog() -> tuple[ServiceSpec, ...]:
    return load_catalog()


def service(service_id: str) -> ServiceSpec:
    for spec in catalog():
        if spec.id == service_id:
            return spec
    raise KeyError(f"unknown AI service {service_id!r}; known: {[s.id for s in catalog()]}")


def select(service_ids: Sequence[str]) -> tuple[ServiceSpec, ...]:
    """The services a worker runs: all of them when none are named."""
    return tuple(service(s) for s in service_ids) if service_ids else catalog()
