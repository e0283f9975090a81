"""The simulated city (issue #3): hospitals, devices and the studies they send, as real DICOM
files plus the answer key.

Why a model of a city rather than a list of phantoms: the pipeline has to cope with what a
city's radiology really sends. Chest radiographs dominate, CT follows, mammography and MRI are
fewer; arrivals follow the working day; some studies are for no AI service at all (an elbow
radiograph, an abdominal ultrasound); some are technically defective (a knee radiograph sent as
the chest the RIS ordered, a CT with missing slices, pixels that do not decode, impossible
spacing, inverted contrast). Every study's expected outcome is known from what was planted, so
an integration test can compare the pipeline's outcomes with ground truth.

Pure of Kafka: :func:`generate_city` writes ``<out>/<hospital>/<study>/<series>/<n>.dcm`` and
``<out>/city_truth.jsonl``; :func:`arrival_offsets` says when each study is announced;
:func:`apply_announcement_overrides` adds what the hospital's RIS (not the DICOM header) says.
Everything is derived from ``seed``: study ``i`` is the same whatever ``n`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
from pydicom.uid import generate_uid

from services.synth.faults import DeviceFault, apply_fault
from services.synth.phantoms.base import Phantom, ellipse, grid, to_stored
from services.synth.phantoms.registry import available_services, phantom_module
from services.synth.series_writer import SeriesHeader, Slice, series_path, write_series
from streams.contract.catalog import NOT_APPLICABLE_SERVICE, ServiceSpec, catalog, service
from streams.contract.reasons import Reason

#: The real city's load: 80,000 studies a week, as a mean rate (0.1323 studies/s). ``times_real``
#: multiplies this; the day curve shapes it (peak hours run about 1.8x the mean).
REAL_STUDIES_PER_WEEK = 80_000
REAL_RATE_PER_S = REAL_STUDIES_PER_WEEK / (7 * 24 * 3600)

CITY_TRUTH_FILE = "city_truth.jsonl"
#: The expected pipeline outcome of a study whose announcement no service reads.
NOT_APPLICABLE = "not_applicable"
OK = "ok"
TECHNICAL_DEFECT = "technical_defect"

#: The technical defects the simulator plants (reason codes of streams/contract/reasons.py).
DEFECT_KINDS: tuple[Reason, ...] = (
    Reason.BODY_PART_MISMATCH, Reason.SERIES_INCOMPLETE, Reason.PIXELS_UNREADABLE,
    Reason.GEOMETRY_IMPLAUSIBLE, Reason.CONTRAST_INVERTED)
#: Defects that need several slices (a 2-D service gets another kind instead).
MULTI_SLICE_DEFECTS = frozenset({Reason.SERIES_INCOMPLETE})
#: Implausible pixel spacings (mm) written by the geometry defect: no service accepts them.
IMPLAUSIBLE_SPACING_MM = (0.001, 50.0)

#: Reference start of the simulated day; fixed so that a seed fully determines the data set.
DEFAULT_REFERENCE_TIME = datetime(2024, 3, 4, 0, 0, 0, tzinfo=UTC)
_ARRIVALS_STREAM = 0x0A_77_1C_A1  # SeedSequence word naming the arrival-time stream

#: Relative hourly arrival weights, hour 0..23 (normalised to mean 1): quiet nights (emergency
#: work only), a morning ramp, a late-morning peak of outpatient and screening work, a long
#: afternoon and an evening tail. Shaped after typical hospital radiology workload curves.
DAY_CURVE: tuple[float, ...] = (
    0.30, 0.25, 0.22, 0.20, 0.22, 0.28, 0.45, 0.85,
    1.45, 1.85, 1.95, 1.90, 1.60, 1.70, 1.75, 1.65,
    1.45, 1.20, 0.95, 0.80, 0.65, 0.55, 0.45, 0.37)

#: Share of each service among the studies some service reads: routine radiology, where chest
#: radiography and fluorography dominate, then chest CT, mammography, head CT, knee radiographs.
SERVICE_MIX: tuple[tuple[str, float], ...] = (
    ("chest-xray", 0.45), ("chest-ct", 0.12), ("mammography", 0.08), ("head-ct", 0.07),
    ("knee-xray", 0.06), ("lumbar-mri", 0.04), ("pelvis-xray", 0.04), ("wrist-xray", 0.04),
    ("ldct-screening", 0.03), ("abdomen-ct", 0.03), ("foot-xray", 0.02), ("brain-mri", 0.02))

#: (modality, share) of the city's devices. US devices image nothing an AI service reads.
DEVICE_MIX: tuple[tuple[str, float], ...] = (
    ("DX", 0.52), ("CR", 0.06), ("CT", 0.17), ("MR", 0.09), ("MG", 0.09), ("US", 0.07))
#: Devices able to produce a study of a catalog modality (CR and DX are the same kind of room).
_MODALITY_GROUPS: dict[str, frozenset[str]] = {
    "DX": frozenset({"DX", "CR"}), "CR": frozenset({"DX", "CR"}), "CT": frozenset({"CT"}),
    "MR": frozenset({"MR"}), "MG": frozenset({"MG"}), "US": frozenset({"US"})}

#: (routine, urgent, emergency) shares; overall about 85 / 10 / 5 % with the default mix.
PRIORITIES = ("routine", "urgent", "emergency")
DEFAULT_PRIORITY_MIX = (0.87, 0.09, 0.04)
PRIORITY_MIX_BY_SERVICE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("head-ct", (0.50, 0.20, 0.30)), ("pelvis-xray", (0.60, 0.15, 0.25)),
    ("wrist-xray", (0.62, 0.15, 0.23)), ("chest-ct", (0.80, 0.14, 0.06)),
    ("abdomen-ct", (0.70, 0.18, 0.12)), ("mammography", (0.99, 0.01, 0.0)),
    ("ldct-screening", (1.0, 0.0, 0.0)))

#: Patient age range (years) and share of women per service; others use the default.
DEFAULT_AGE = (18, 92)
DEFAULT_FEMALE_SHARE = 0.52
AGE_BY_SERVICE: tuple[tuple[str, tuple[int, int]], ...] = (
    ("mammography", (40, 75)), ("ldct-screening", (50, 80)), ("pelvis-xray", (55, 95)),
    ("wrist-xray", (8, 90)), ("foot-xray", (10, 80)), ("lumbar-mri", (25, 80)),
    ("brain-mri", (18, 65)))
FEMALE_SHARE_BY_SERVICE: tuple[tuple[str, float], ...] = (
    ("mammography", 1.0), ("pelvis-xray", 0.68), ("brain-mri", 0.70), ("wrist-xray", 0.6))


@dataclass(frozen=True)
class OtherExam:
    """A study no AI service reads; a tiny generic image is enough for it."""

    name: str
    modality: str
    body_part: str
    description: str
    slices: int = 1


#: Studies the city also produces that no catalog service reads (some are near misses: a foot
#: radiograph that is not lateral, a head MRI without FLAIR).
OTHER_EXAMS: tuple[OtherExam, ...] = (
    OtherExam("dx_elbow", "DX", "ELBOW", "ELBOW AP"),
    OtherExam("dx_shoulder", "DX", "SHOULDER", "SHOULDER AP"),
    OtherExam("dx_foot_ap", "DX", "FOOT", "FOOT AP"),
    OtherExam("cr_skull", "CR", "SKULL", "SKULL PA"),
    OtherExam("us_abdomen", "US", "ABDOMEN", "US ABDOMEN"),
    OtherExam("ct_knee", "CT", "KNEE", "CT KNEE", slices=16),
    OtherExam("mr_head_t1", "MR", "HEAD", "AX T1 SE", slices=16),
    OtherExam("mr_knee", "MR", "KNEE", "MR KNEE PD", slices=16),
)


@dataclass(frozen=True)
class CityModel:
    """The city's shape: hospitals, devices and what they image, and who the patients are.

    The layout (which hospital owns which device) is drawn from ``layout_seed`` alone, so every
    data seed runs in the same city.
    """

    hospitals: int = 150
    devices: int = 1200
    device_mix: tuple[tuple[str, float], ...] = DEVICE_MIX
    #: Share of the extra DX/CR devices that are chest-only fluorography units.
    fluorography_share: float = 0.3
    service_mix: tuple[tuple[str, float], ...] = SERVICE_MIX
    day_curve: tuple[float, ...] = DAY_CURVE
    default_priority_mix: tuple[float, float, float] = DEFAULT_PRIORITY_MIX
    priority_mix_by_service: tuple[tuple[str, tuple[float, float, float]], ...] = (
        PRIORITY_MIX_BY_SERVICE)
    age_by_service: tuple[tuple[str, tuple[int, int]], ...] = AGE_BY_SERVICE
    female_share_by_service: tuple[tuple[str, float], ...] = FEMALE_SHARE_BY_SERVICE
    other_exams: tuple[OtherExam, ...] = OTHER_EXAMS
    #: Seconds from acquisition to announcement (uniform range): the device-to-PACS hop.
    acquisition_lag_s: tuple[float, float] = (1.0, 5.0)
    layout_seed: int = 2026


@dataclass(frozen=True)
class Load:
    """How fast the city announces studies: ``rate_per_s`` or ``times_real`` x the real city.

    ``compress_day_s`` plays the 24 h day curve in that many seconds (a whole day of arrival
    shape in a few minutes of demo); None keeps real time. ``start_hour`` is where on the
    curve the run starts.
    """

    rate_per_s: float | None = None
    times_real: float | None = None
    compress_day_s: float | None = None
    start_hour: float = 0.0

    @property
    def rate(self) -> float:
        """Mean announcements per second."""
        if (self.rate_per_s is None) == (self.times_real is None):
            raise ValueError("give exactly one of rate_per_s and times_real")
        rate = self.rate_per_s if self.rate_per_s is not None else (
            float(self.times_real or 0.0) * REAL_RATE_PER_S)
        if not rate > 0:
            raise ValueError(f"the arrival rate must be > 0, got {rate}")
        return float(rate)


def rate_for(times_real: float) -> float:
    """Studies per second at ``times_real`` x the real city's 80,000 studies a week."""
    return times_real * REAL_RATE_PER_S


def arrival_offsets(n: int, load: Load, *, seed: int,
                    day_curve: Sequence[float] = DAY_CURVE) -> np.ndarray:
    """Announce offsets (seconds from the start of the run) of studies ``0..n-1``.

    A Poisson process whose rate follows the day curve (``load.rate`` times the hour's weight,
    weights normalised to mean 1), drawn by time rescaling: unit-rate exponential gaps mapped
    through the inverse of the integrated rate. The first ``k`` offsets do not depend on ``n``.
    """
    weights = np.asarray(day_curve, dtype=np.float64)
    if weights.shape != (24,) or not np.all(weights > 0):
        raise ValueError("day_curve needs 24 positive hourly weights")
    if load.compress_day_s is not None and load.compress_day_s <= 0:
        raise ValueError("compress_day_s must be > 0")
    weights = weights / weights.mean()
    rate = load.rate
    day_s = float(load.compress_day_s or 86_400.0)
    bin_s = day_s / 24.0
    per_bin = rate * weights * bin_s  # expected arrivals in each hour of the (compressed) day
    cum = np.concatenate(([0.0], np.cumsum(per_bin)))
    per_day = float(cum[-1])
    start = float(load.start_hour) % 24.0
    h0 = int(start)
    start_mass = cum[h0] + per_bin[h0] * (start - h0)
    gaps = np.random.default_rng(np.random.SeedSequence([seed, _ARRIVALS_STREAM])) \
        .standard_exponential(n)
    target = start_mass + np.cumsum(gaps)
    days = np.floor(target / per_day)
    rem = target - days * per_day
    hour = np.clip(np.searchsorted(cum, rem, side="right") - 1, 0, 23)
    within = (rem - cum[hour]) / (rate * weights[hour])
    absolute = days * day_s + hour * bin_s + within
    return np.asarray(absolute - start * bin_s, dtype=np.float64)


# ------------------------------------------------------------------------------- the city


@dataclass(frozen=True)
class Device:
    """One imaging device (a DX room, a CT scanner): its hospital, modality and what it images."""

    id: str
    hospital_id: str
    modality: str
    #: Catalog service ids whose studies it produces.
    services: tuple[str, ...]
    #: Names of the :class:`OtherExam` studies it produces.
    other_exams: tuple[str, ...]


@dataclass(frozen=True)
class City:
    hospitals: tuple[str, ...]
    devices: tuple[Device, ...]

    def devices_for_service(self, service_id: str) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if service_id in d.services)

    def devices_for_exam(self, exam: str) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if exam in d.other_exams)


def _allocate(total: int, shares: Sequence[float], minimum: int = 1) -> list[int]:
    """Integer counts proportional to ``shares`` (largest remainder), each at least ``minimum``."""
    raw = np.asarray(shares, dtype=np.float64)
    raw = raw / raw.sum() * max(0, total - minimum * len(raw))
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - minimum * len(raw)
                                                         - int(counts.sum())]:
        counts[i] += 1
    return [int(c) + minimum for c in counts]


@cache
def build_city(model: CityModel = CityModel()) -> City:
    """Hospitals and devices: every hospital has a general DX room; the other devices go to
    hospitals in proportion to their size (CT, MR and mammography even more to large ones)."""
    modalities = [m for m, _ in model.device_mix]
    if model.hospitals < 1 or model.devices < model.hospitals + len(modalities):
        raise ValueError("need >= 1 hospital and >= hospitals + one device per modality")
    rng = np.random.default_rng(model.layout_seed)
    hospitals = tuple(f"H{i:03d}" for i in range(1, model.hospitals + 1))
    size = rng.lognormal(0.0, 0.8, size=len(hospitals))
    counts = _allocate(model.devices - model.hospitals, [s for _, s in model.device_mix])
    dx_index = modalities.index("DX") if "DX" in modalities else None
    owners: dict[str, list[tuple[str, bool]]] = {h: [] for h in hospitals}
    for h in hospitals:  # the general DX room every hospital has
        owners[h].append(("DX" if dx_index is not None else modalities[0], True))
    for modality, count in zip(modalities, counts, strict=True):
        power = 1.0 if modality in ("DX", "CR", "US") else 1.6
        p = size**power / (size**power).sum()
        for h in rng.choice(len(hospitals), size=count, p=p):
            general = modality not in ("DX", "CR") or rng.random() >= model.fluorography_share
            owners[hospitals[h]].append((modality, general))

    specs = catalog()
    devices = []
    for h in hospitals:
        seen: dict[str, int] = {}
        for modality, general in owners[h]:
            seen[modality] = seen.get(modality, 0) + 1
            group = _MODALITY_GROUPS.get(modality, frozenset({modality}))
            if general:
                services = tuple(s.id for s in specs if s.modalities & group)
                others = tuple(e.name for e in model.other_exams if e.modality in group)
            else:  # chest-only fluorography unit
                services = tuple(s.id for s in specs if s.modalities & group
                                 and "CHEST" in s.body_parts)
                others = ()
            devices.append(Device(f"{h}-{modality}{seen[modality]:02d}", h, modality,
                                  services, others))
    return City(hospitals, tuple(devices))


# ------------------------------------------------------------------------------ the truth


@dataclass(frozen=True)
class CityTruth:
    """What the simulator planted in one study: the answer key of the integration test."""

    study_uid: str
    hospital_id: str
    device_id: str
    #: The catalog service that should read it, or "none" for a not-applicable study.
    service: str
    #: Modality and BodyPartExamined as written in the DICOM files.
    modality: str
    body_part: str
    priority: str
    #: Technical defect reason code (streams.contract.reasons.Reason value), or None.
    defect: str | None
    #: Finding code -> planted; empty when the image shows no service's anatomy (not applicable,
    #: body_part_mismatch).
    labels: dict[str, bool]
    measurements: dict[str, float]
    announce_at_s: float
    patient_age_years: int
    patient_sex: str
    #: body_part_mismatch: the body part the announcement must carry (what the RIS ordered,
    #: not what the images show); see :func:`apply_announcement_overrides`.
    body_part_override: str | None
    series_dir: str
    series_uid: str = ""
    study_description: str = ""
    series_description: str = ""
    #: Files written (fewer than the phantom's slices for series_incomplete).
    instance_count: int = 0
    acquired_at: str = ""
    #: Synthetic PHI canary (must never reach the bus).
    patient_id: str = ""
    defect_detail: dict[str, Any] = field(default_factory=dict)
    #: The phantom's own description of what it planted (sizes, positions).
    planted: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The series' DICOM files, in InstanceNumber order."""
        return sorted(Path(self.series_dir).glob("*.dcm"), key=lambda p: int(p.stem))


def expected_outcomes(truth: CityTruth) -> dict[str, str]:
    """The pipeline outcome each service should report for a study, from what was planted
    (deliberately not from streams.rules.routing, so routing bugs show up as mismatches)."""
    if truth.service == NOT_APPLICABLE_SERVICE:
        return {NOT_APPLICABLE_SERVICE: NOT_APPLICABLE}
    if truth.defect:
        return {truth.service: f"{TECHNICAL_DEFECT}:{truth.defect}"}
    return {truth.service: OK}


def apply_announcement_overrides(event: dict[str, Any], truth: CityTruth) -> dict[str, Any]:
    """Put what the hospital's RIS says (not the DICOM header) into a StudyAnnounced body:
    the ordered body part for a body_part_mismatch study. Returns ``event``, changed in place."""
    if truth.body_part_override:
        event["body_part"] = truth.body_part_override
        for series in event.get("series", ()):
            series["body_part"] = truth.body_part_override
    return event


def load_city_truth(out_dir: Path) -> list[CityTruth]:
    """Read back ``city_truth.jsonl`` written by :func:`generate_city`."""
    lines = (out_dir / CITY_TRUTH_FILE).read_bytes().splitlines()
    return [CityTruth(**orjson.loads(line)) for line in lines if line.strip()]


# --------------------------------------------------------------------------- the studies


def _uid(seed: int, index: int, kind: str) -> str:
    return str(generate_uid(entropy_srcs=["radstream-city", str(seed), str(index), kind]))


def _pick(rng: np.random.Generator, names: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def other_exam_phantom(rng: np.random.Generator, exam: OtherExam) -> Phantom:
    """A tiny generic image or volume (64 px): a soft-tissue ellipse in air, with noise."""
    u, v = grid((64, 64), rng, jitter=0.05)
    body = ellipse(u, v, 0.0, 0.0, float(rng.uniform(0.25, 0.35)), float(rng.uniform(0.3, 0.4)))
    volume = np.repeat(body[None], exam.slices, axis=0)
    window: tuple[float, float] | None = None
    if exam.modality == "CT":
        pixels = to_stored(-1000.0 + 1040.0 * volume, slope=1.0, intercept=0.0, dtype=np.int16,
                           noise=8.0, rng=rng)
        spacing, thickness, window = 0.8, 3.0, (40.0, 400.0)
    else:
        pixels = to_stored(40.0 + 1500.0 * volume, slope=1.0, intercept=0.0, dtype=np.uint16,
                           noise=20.0, rng=rng)
        spacing, thickness = (0.9, 4.0) if exam.modality == "MR" else (0.5, 1.0)
    return Phantom(pixels=pixels, modality=exam.modality, body_part=exam.body_part,
                   series_description=exam.description, pixel_spacing=(spacing, spacing),
                   slice_spacing=thickness, window=window, truth={"exam": exam.name})


def _mismatch_candidates(spec: ServiceSpec) -> list[str]:
    """Services whose phantom can stand in for the wrong body part on ``spec``'s device: same
    kind of device (modalities), body parts ``spec`` does not read."""
    return [s.id for s in catalog()
            if s.id in _available() and s.modalities == spec.modalities
            and not (s.body_parts & spec.body_parts)]


@cache
def _available() -> frozenset[str]:
    return frozenset(available_services())


#: Fallback wrong body part when no other phantom of the modality exists (generic image).
_FALLBACK_MISMATCH: dict[str, OtherExam] = {
    "DX": OtherExam("mismatch_dx", "DX", "ELBOW", "ELBOW AP"),
    "CR": OtherExam("mismatch_cr", "CR", "ELBOW", "ELBOW AP"),
    "CT": OtherExam("mismatch_ct", "CT", "KNEE", "CT KNEE", slices=40),
    "MR": OtherExam("mismatch_mr", "MR", "KNEE", "MR KNEE PD", slices=40),
}


def _defect_kinds(spec: ServiceSpec) -> list[Reason]:
    kinds = list(DEFECT_KINDS)
    if spec.checks.max_slices <= 1:
        kinds = [k for k in kinds if k not in MULTI_SLICE_DEFECTS]
    if not _mismatch_candidates(spec) and _fallback_exam(spec) is None:
        kinds.remove(Reason.BODY_PART_MISMATCH)
    return kinds


def _fallback_exam(spec: ServiceSpec) -> OtherExam | None:
    return next((_FALLBACK_MISMATCH[m] for m in sorted(spec.modalities)
                 if m in _FALLBACK_MISMATCH), None)


def _invert(pixels: np.ndarray) -> np.ndarray:
    """Stored values mirrored within their own range (max + min - x), dtype kept."""
    wide = pixels.astype(np.int32)
    return (int(wide.max()) + int(wide.min()) - wide).astype(pixels.dtype)


@dataclass
class _Planted:
    phantom: Phantom
    defect: Reason | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    hook: Callable[[Slice], Slice | None] | None = None
    body_part_override: str | None = None
    labels_kept: bool = True


def _plant_defect(rng: np.random.Generator, kind: Reason, spec: ServiceSpec, phantom: Phantom,
                  device_modality: str) -> _Planted:
    """Damage ``phantom`` (or its files, through a slice hook) the way ``kind`` says."""
    n = phantom.pixels.shape[0]
    if kind == Reason.BODY_PART_MISMATCH:
        candidates = _mismatch_candidates(spec)
        if candidates:
            other = candidates[int(rng.integers(len(candidates)))]
            foreign = phantom_module(other).render(rng, frozenset())
            detail: dict[str, Any] = {"rendered": other}
        else:
            exam = _fallback_exam(spec)
            if exam is None:
                raise ValueError(f"no stand-in body part for {spec.id}")
            foreign = other_exam_phantom(rng, exam)
            detail = {"rendered": exam.name}
        # The device writes what it imaged; the order (description, body part) was the service's.
        foreign = replace(foreign, modality=device_modality,
                          series_description=phantom.series_description)
        detail["dicom_body_part"] = foreign.body_part
        return _Planted(foreign, kind, detail, body_part_override=phantom.body_part,
                        labels_kept=False)
    if kind == Reason.SERIES_INCOMPLETE:
        min_slices = spec.checks.min_slices
        if rng.random() < 0.5 and n >= 8:
            k = int(rng.integers(1, 4))
            first = int(rng.integers(n // 4, 3 * n // 4 - k + 1))
            missing = set(range(first, first + k))
            return _Planted(phantom, kind, {"variant": "gap", "missing_instances":
                                            sorted(m + 1 for m in missing)},
                            hook=lambda s: None if s.index in missing else s)
        keep = int(rng.integers(max(2, min_slices // 3), max(3, min_slices)))
        keep = min(keep, n - 1, max(1, min_slices - 1))
        return _Planted(phantom, kind, {"variant": "too_few", "kept": keep},
                        hook=lambda s: s if s.index < keep else None)
    if kind == Reason.PIXELS_UNREADABLE:
        def truncate(s: Slice) -> Slice:
            # Half the bytes, still an even length the element header states correctly.
            s.pixel_data = s.pixel_data[: (len(s.pixel_data) // 4) * 2]
            return s
        return _Planted(phantom, kind, {"variant": "pixel_data_half_length"}, hook=truncate)
    if kind == Reason.GEOMETRY_IMPLAUSIBLE:
        if n > 1 and rng.random() < 0.5:
            def same_z(s: Slice) -> Slice:
                s.z = 0.0
                return s
            return _Planted(phantom, kind, {"variant": "all_slices_same_z"}, hook=same_z)
        spacing = IMPLAUSIBLE_SPACING_MM[int(rng.integers(2))]
        return _Planted(replace(phantom, pixel_spacing=(spacing, spacing)), kind,
                        {"variant": "pixel_spacing", "pixel_spacing_mm": spacing})
    if kind == Reason.CONTRAST_INVERTED:
        return _Planted(replace(phantom, pixels=_invert(phantom.pixels)), kind,
                        {"variant": "stored_values_inverted"})
    raise ValueError(f"not a planted defect: {kind}")


def _patient(rng: np.random.Generator, model: CityModel, service_id: str) -> tuple[int, str]:
    lo, hi = dict(model.age_by_service).get(service_id, DEFAULT_AGE)
    age = int(rng.integers(lo, hi + 1))
    female = dict(model.female_share_by_service).get(service_id, DEFAULT_FEMALE_SHARE)
    return age, "F" if rng.random() < female else "M"


def _priority(rng: np.random.Generator, model: CityModel, service_id: str) -> str:
    mix = dict(model.priority_mix_by_service).get(service_id, model.default_priority_mix)
    return _pick(rng, PRIORITIES, mix)


def _positives(rng: np.random.Generator, module: ModuleType,
               prevalence: Mapping[str, float]) -> frozenset[str]:
    """Each finding independently at its prevalence (the trainer's draw, in FINDINGS order):
    ``prevalence``'s value where it names the finding, else the phantom module's."""
    return frozenset(f for f in module.FINDINGS
                     if rng.random() < prevalence.get(f, module.PREVALENCE[f]))


#: Stands in for the phantom module of the "none" service (never rendered from).
_NO_MODULE = ModuleType("no_phantom_module")


def _choose(rng: np.random.Generator, devices: Sequence[Device]) -> Device:
    return devices[int(rng.integers(len(devices)))]


def _render(rng: np.random.Generator, plan: StudyPlan, module: ModuleType,
            prevalence: Mapping[str, float]) -> _Planted:
    """The planned study's image as its device writes it, with its planned defect."""
    if plan.exam is not None:
        return _Planted(replace(other_exam_phantom(rng, plan.exam),
                                modality=plan.device.modality), labels_kept=False)
    phantom = replace(module.render(rng, _positives(rng, module, prevalence)),
                      modality=plan.device.modality)
    if plan.defect is None:
        return _Planted(phantom)
    return _plant_defect(rng, plan.defect, service(plan.service), phantom, plan.device.modality)


@dataclass(frozen=True)
class StudyPlan:
    """Who, where and what of one study, drawn before anything is rendered."""

    index: int
    service: str
    device: Device
    priority: str
    patient_age_years: int
    patient_sex: str
    defect: Reason | None = None
    #: The exam of a not-applicable study (service "none").
    exam: OtherExam | None = None


class CityPlanner:
    """Draws each study's plan: service or other exam, device, priority, patient, defect.

    The first draws of study ``index``'s random stream; :func:`generate_city` renders with the
    rest of the same stream, so planning alone (fast: no pixels) gives the same answers.
    """

    def __init__(self, *, model: CityModel = CityModel(), defect_rate: float = 0.05,
                 not_applicable_rate: float = 0.05, services: Iterable[str] | None = None) -> None:
        if not 0.0 <= defect_rate <= 1.0 or not 0.0 <= not_applicable_rate <= 1.0:
            raise ValueError("0 <= defect_rate <= 1 and 0 <= not_applicable_rate <= 1")
        self.model, self.defect_rate = model, defect_rate
        self.not_applicable_rate = not_applicable_rate
        self.services = resolve_services(services)
        mix = dict(model.service_mix)
        self.weights = [mix.get(s, 0.0) for s in self.services]
        if not self.services or sum(self.weights) <= 0:
            raise ValueError(f"no service with a phantom module and a mix share among "
                             f"{self.services}")
        city = build_city(model)
        self.by_service = {s: city.devices_for_service(s) for s in self.services}
        for sid, devices in self.by_service.items():
            if not devices:
                raise ValueError(f"the city has no device for service {sid!r}")
        self.by_exam = {e.name: city.devices_for_exam(e.name) for e in model.other_exams}
        self.exams = [e for e in model.other_exams if self.by_exam[e.name]]
        self.defect_kinds = {s: _defect_kinds(service(s)) for s in self.services}

    def plan(self, index: int, rng: np.random.Generator) -> StudyPlan:
        if self.exams and rng.random() < self.not_applicable_rate:
            exam = self.exams[int(rng.integers(len(self.exams)))]
            device = _choose(rng, self.by_exam[exam.name])
            age, sex = _patient(rng, self.model, NOT_APPLICABLE_SERVICE)
            return StudyPlan(index, NOT_APPLICABLE_SERVICE, device,
                             _priority(rng, self.model, NOT_APPLICABLE_SERVICE), age, sex,
                             exam=exam)
        service_id = _pick(rng, self.services, self.weights)
        device = _choose(rng, self.by_service[service_id])
        priority = _priority(rng, self.model, service_id)
        age, sex = _patient(rng, self.model, service_id)
        defect = None
        if rng.random() < self.defect_rate:
            kinds = self.defect_kinds[service_id]
            defect = kinds[int(rng.integers(len(kinds)))]
        return StudyPlan(index, service_id, device, priority, age, sex, defect=defect)


def study_rng(seed: int, index: int) -> np.random.Generator:
    """Study ``index``'s own random stream: the same study whatever ``n`` is."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def plan_city(n: int, *, seed: int, **planner_args: Any) -> list[StudyPlan]:
    """The plans :func:`generate_city` would follow for studies ``0..n-1`` (nothing written)."""
    planner = CityPlanner(**planner_args)
    return [planner.plan(i, study_rng(seed, i)) for i in range(n)]


def resolve_services(services: Iterable[str] | None) -> tuple[str, ...]:
    """The services to simulate: those named (each must have a phantom module), else all that
    have one."""
    if services is None:
        return available_services()
    chosen = tuple(services)
    for sid in chosen:
        service(sid)  # KeyError for an unknown id
        phantom_module(sid)  # PhantomModuleMissing, naming the module
    return chosen


def _check_prevalence(prevalence: Mapping[str, float], modules: Iterable[ModuleType]) -> None:
    known = {f for m in modules for f in m.FINDINGS}
    for code, rate in prevalence.items():
        if code not in known:
            raise ValueError(f"prevalence names {code!r}, not a finding of the simulated "
                             f"services ({', '.join(sorted(known))})")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"prevalence of {code!r} must be in [0, 1], got {rate}")


def _fault_device(phantom: Phantom, fault: DeviceFault | str) -> Phantom:
    """``phantom`` as a device with ``fault`` writes it; the labels stay what was planted. A
    wrong window is computed on stored values and written in rescaled ones; a blurred image
    keeps the device's window preset."""
    faulty = apply_fault(fault, phantom.pixels)
    window = phantom.window
    if faulty.window is not None:
        center, width = faulty.window
        window = (center * phantom.slope + phantom.intercept, width * abs(phantom.slope))
    return replace(phantom, pixels=faulty.pixels, window=window)


def generate_city(
    out_dir: Path,
    n: int,
    *,
    seed: int,
    model: CityModel = CityModel(),
    load: Load | None = None,
    defect_rate: float = 0.05,
    not_applicable_rate: float = 0.05,
    services: Iterable[str] | None = None,
    prevalence: Mapping[str, float] | None = None,
    device_faults: Mapping[str, DeviceFault | str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    reference_time: datetime = DEFAULT_REFERENCE_TIME,
) -> list[CityTruth]:
    """Write ``n`` studies of the city under ``out_dir`` (DICOM + ``city_truth.jsonl``).

    ``load`` (default: the real city's rate) sets ``announce_at_s``; each study's acquisition
    time is ``reference_time + announce_at_s`` minus the device-to-PACS lag (pass
    ``datetime.now(UTC)`` for live demos). ``services`` restricts the studies to those
    services (None: every service with a phantom module); not-applicable studies are drawn
    from ``model.other_exams`` whatever ``services`` says.

    ``prevalence`` (finding code -> probability) replaces the phantom modules' own prevalence
    of the findings it names, e.g. ``{"lung_nodule": 0.5}`` for a balanced AUC test.
    ``device_faults`` (device id -> :class:`~services.synth.faults.DeviceFault`) degrades the
    images of those devices only (the drift demonstration); faults draw no random numbers, so
    every other file and the whole answer key stay as without them.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    planner = CityPlanner(model=model, defect_rate=defect_rate,
                          not_applicable_rate=not_applicable_rate, services=services)
    modules = {s: phantom_module(s) for s in planner.services}
    prevalence = dict(prevalence or {})
    _check_prevalence(prevalence, modules.values())
    faults = {device: DeviceFault(f) for device, f in (device_faults or {}).items()}
    known_devices = {d.id for d in build_city(model).devices}
    if unknown := sorted(set(faults) - known_devices):
        raise ValueError(f"device_faults names devices the city does not have: {unknown}")
    offsets = arrival_offsets(n, load or Load(times_real=1.0), seed=seed, day_curve=model.day_curve)

    out_dir.mkdir(parents=True, exist_ok=True)
    truths: list[CityTruth] = []
    for index in range(n):
        rng = study_rng(seed, index)
        plan = planner.plan(index, rng)
        device, age, sex = plan.device, plan.patient_age_years, plan.patient_sex
        planted = _render(rng, plan, modules.get(plan.service, _NO_MODULE), prevalence)
        if device.id in faults:
            planted.phantom = _fault_device(planted.phantom, faults[device.id])

        acquired_at = reference_time + timedelta(
            seconds=float(offsets[index]) - float(rng.uniform(*model.acquisition_lag_s)))
        birth = acquired_at - timedelta(days=365.25 * age + float(rng.uniform(1, 360)))
        study_uid, series_uid = _uid(seed, index, "study"), _uid(seed, index, "series")
        patient_id = f"SYNTH-{seed}-{index:06d}"
        ph = planted.phantom
        header = SeriesHeader(
            study_uid=study_uid, series_uid=series_uid,
            patient_name=f"SYNTH^CITIZEN{index:05d}", patient_id=patient_id,
            birth_date=birth.strftime("%Y%m%d"), accession=f"CTY{seed % 10000:04d}{index:07d}",
            institution=f"Synthetic City Hospital {device.hospital_id}", station=device.id,
            acquired_at=acquired_at, sex=sex, age_years=age)
        files = write_series(out_dir, device.hospital_id, ph, header, on_slice=planted.hook)
        truths.append(CityTruth(
            study_uid=study_uid, hospital_id=device.hospital_id, device_id=device.id,
            service=plan.service, modality=ph.modality, body_part=ph.body_part,
            priority=plan.priority, defect=str(planted.defect) if planted.defect else None,
            labels=dict(ph.labels) if planted.labels_kept else {},
            measurements=dict(ph.measurements) if planted.labels_kept else {},
            announce_at_s=round(float(offsets[index]), 6), patient_age_years=age,
            patient_sex=sex, body_part_override=planted.body_part_override,
            series_dir=str(series_path(out_dir, device.hospital_id, study_uid,
                                       series_uid).resolve()),
            series_uid=series_uid, study_description=ph.series_description,
            series_description=ph.series_description, instance_count=len(files),
            acquired_at=acquired_at.isoformat(), patient_id=patient_id,
            defect_detail=planted.detail,
            planted=_jsonable(ph.truth) if planted.labels_kept else {}))
        if on_progress is not None:
            on_progress(index + 1, n)

    with (out_dir / CITY_TRUTH_FILE).open("wb") as fh:
        for truth in truths:
            fh.write(orjson.dumps(asdict(truth), option=orjson.OPT_APPEND_NEWLINE
                                  | orjson.OPT_SERIALIZE_NUMPY))
    return truths


def generate_service_studies(out_dir: Path, n: int, *, seed: int, service: str = "chest-xray",
                             **city_args: Any) -> list[CityTruth]:
    """:func:`generate_city` with studies of ``service`` only, none technically defective and
    none for no service: what a test or a benchmark needs when every study must end in an
    ``ok`` Finding of that service. ``city_args`` are :func:`generate_city`'s other options
    (``model``, ``prevalence``, ``device_faults``, ...)."""
    return generate_city(out_dir, n, seed=seed, services=(service,), defect_rate=0.0,
                         not_applicable_rate=0.0, **city_args)


def _jsonable(value: Any) -> Any:
    """Phantom truth dicts may hold numpy scalars or tuples; make them plain JSON values."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY
                                     | orjson.OPT_NON_STR_KEYS))


def summarize(truths: Sequence[CityTruth]) -> dict[str, Any]:
    """Counts per service, defect kind and priority (for the CLI and the demo's banner)."""
    def count(values: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in values:
            out[v] = out.get(v, 0) + 1
        return dict(sorted(out.items()))
    return {
        "studies": len(truths),
        "services": count(t.service for t in truths),
        "defects": count(t.defect for t in truths if t.defect),
        "priorities": count(t.priority for t in truths),
        "files": sum(t.instance_count for t in truths),
    }


