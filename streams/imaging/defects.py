"""Technical-defect checks run before inference (pure logic, no I/O).

A study that fails one becomes a technical_defect Finding with the reason, never a model guess:
the programme reports about 5 % of studies as defective, so this is a common path, and a study
called defective wrongly is one the radiologist gets no AI help on. So every check here fires
only on evidence that holds across acquisition styles (collimated or masked films, MONOCHROME1
and 2, FOR PROCESSING and FOR PRESENTATION images, any bit depth, other vendors' tags) and
abstains, letting the study reach the model, where the evidence is weak or contradicts itself.

What each check needs to fire (docs/services.md prints it per service, from ``FIRES_WHEN``):

- identity: the images' own Modality or BodyPartExamined names a known modality or body region
  the service does not read (synonyms such as THORAX for CHEST are the same region; an absent or
  unknown term is no evidence).
- geometry: a matrix side outside ``MATRIX_SIDE``, a pixel spacing outside the service's limits,
  more slices than it reads, slice positions that coincide or are spaced outside its limits.
- completeness: fewer slices than announced or than the service needs, or a gap between slice
  positions (instance numbers are judged only when the slices have no positions).
- inverted contrast: see :func:`contrast_votes`: at least one kind of evidence the service
  declares says "inverted" with a clear margin and none says "upright".

The checks read what the worker decoded (streams/imaging/series.py) and the limits the catalog
declares for the service (``[service.checks]`` in streams/contract/catalog.toml).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streams.contract.catalog import DefectChecks, Selection
from streams.contract.reasons import InputRejected, Reason

#: Smallest and largest plausible image matrix side, in pixels.
MATRIX_SIDE = (32, 8192)
#: A gap between slice positions more than this many times the typical spacing is a missing slice.
GAP_FACTOR = 1.6

#: The contrast check works on each sampled slice shrunk (block means) to at most this side.
GRID = 96
#: Slices of a series the contrast check samples (evenly, from its middle 80 %).
CONTRAST_SLICES = 3
#: A line (row or column) at the image edge whose 10th..90th percentile spread is below this
#: share of the image's range is a band of collimation, shutter mask, padding or empty air:
#: it is cut away before any evidence is read, whatever its brightness.
FLAT_LINE = 0.05
#: Each edge may lose at most this share of the image to such bands (or to a shutter).
MAX_BAND = 0.4
#: A shutter covers at least this share of its side, and the rms distance of its inner edge
#: from a straight line is at most ``SHUTTER_STRAIGHT`` of the image (or one pixel).
SHUTTER_COVER = 0.9
SHUTTER_STRAIGHT = 0.015
#: A pixel is flat when the standard deviation of its 3x3 neighbourhood is below this share of
#: the field's 1st..99th percentile range (air, a detector burned out, no MR signal).
FLAT_PIXEL = 0.03
#: Background candidates lie within this share of the range from the field's darkest (or
#: brightest) end.
EXTREME = 0.15
#: "burned_out_air" evidence reads only values within this share of the range from the field's
#: lowest or highest value: air that saturated the detector of a film processed for display.
CLIPPED = 0.01
#: "air" evidence: the flat extreme region connected to the field's edge covers at least this
#: share of the field, and ``AIR_RATIO`` times the area of the opposite extreme's.
AIR_MIN_AREA = 0.04
AIR_RATIO = 4.0
#: "midline" and "hips" evidence (PROFILES): the dense columns of the body differ from the
#: light ones, all the same way, by at least this share of the field's values (the share of
#: them lying between the two: a rank, whatever the mapping of values to brightness).
PROFILE_MARGIN = 0.12
#: "hounsfield" evidence (upright only): the background's median CT number is at most
#: ``HU_AIR`` (air, or padding below it) and at least ``HU_TISSUE[2]`` of the body is soft
#: tissue (``HU_TISSUE[0]``..``HU_TISSUE[1]``): CT numbers the right way round.
HU_AIR = -850.0
HU_TISSUE = (-200.0, 250.0, 0.08)
#: A kind of evidence speaks for the series when this share of the slices that gave it agree.
SLICE_AGREEMENT = 2 / 3

#: Why each check fires, for docs/services.md (services/ops/catalog_doc.py).
FIRES_WHEN: dict[str, str] = {
    "identity": "the images' own Modality or BodyPartExamined names a known modality or body "
                "region the service does not read (synonyms count as the same region; an "
                "absent or unknown term never fires)",
    "geometry": f"a matrix side outside {MATRIX_SIDE[0]}–{MATRIX_SIDE[1]} px, pixel spacing "
                "(PixelSpacing, else ImagerPixelSpacing) outside the limits below, more slices "
                "than the service reads, or slice positions that coincide or are spaced "
                "outside the limits",
    "completeness": "fewer slices than announced or than the service needs, or a gap of more "
                    f"than {GAP_FACTOR}x the typical spacing between slice positions "
                    "(instance numbers are judged only when slices have no positions)",
    "contrast": "one kind of evidence the service declares says the values are inverted "
                "against their photometric tag (MONOCHROME1, or Presentation LUT Shape "
                "INVERSE, read the other way round) and none says upright. Collimator "
                "shutters (a region at one level along an edge whose inner edge is a straight "
                "line, tilted or not: shown bright as on film, or masked black or white) and "
                "edge bands of near-constant value are left out before any evidence is read, "
                "so a bright border alone never fires",
}
#: What each kind of contrast evidence reads (``contrast_evidence`` in the catalog).
EVIDENCE_READS: dict[str, str] = {
    "air": f"the flat region at one end of the value range that touches the edge of the "
           f"exposed field (the air around the body) covers at least {AIR_MIN_AREA:.0%} of "
           f"the field and {AIR_RATIO:g}x the flat region at the other end: dark is upright, "
           f"bright is inverted",
    "burned_out_air": f"as air, but only values at the very end of the range "
                      f"(within {CLIPPED:.0%} of the field's lowest or highest value): a "
                      f"projection film's air saturates the detector, while bone or "
                      f"compressed dense tissue touching the field's edge does not",
    "midline": f"both sides of the body (the lung fields of a frontal chest, the soft tissue "
               f"beside femur and tibia on a frontal knee) are darker (upright) or both "
               f"brighter (inverted) than its central column by at least "
               f"{PROFILE_MARGIN:.0%} of the field's values (ranks)",
    "hips": f"both hip joints (femoral heads in their acetabula) are brighter (upright) or "
            f"darker (inverted) than the pelvic cavity between them by at least "
            f"{PROFILE_MARGIN:.0%} of the field's values (ranks)",
    "hounsfield": f"the background around the body at or below {HU_AIR:g} HU and at least "
                  f"{HU_TISSUE[2]:.0%} of the body at soft-tissue CT numbers prove upright "
                  f"values (it can only veto)",
}


class SliceGeometry(Protocol):
    @property
    def modality(self) -> str: ...
    @property
    def body_part(self) -> str: ...
    @property
    def instance_number(self) -> int | None: ...
    @property
    def pixel_spacing(self) -> tuple[float, float] | None: ...
    @property
    def position_z(self) -> float | None: ...


class DecodedSeries(Protocol):
    """What the worker decoded (streams/imaging/series.DicomSeries)."""

    @property
    def pixels(self) -> np.ndarray: ...
    @property
    def photometric(self) -> str: ...
    @property
    def slope(self) -> float: ...
    @property
    def intercept(self) -> float: ...
    @property
    def geometries(self) -> Sequence[SliceGeometry]: ...


def check_series(checks: DefectChecks, select: Selection, series: DecodedSeries,
                 announced: int) -> None:
    """Every technical-defect check, in the order the worker runs them (preparation.py)."""
    check_identity(select, series.geometries)
    check_geometry(checks, series.pixels.shape, series.geometries, announced)
    check_contrast(series.pixels, series.photometric, evidence=checks.contrast_evidence,
                   slope=series.slope, intercept=series.intercept)


# --- identity ------------------------------------------------------------------------------

#: Modalities of one family are interchangeable for the identity check (RG is the retired
#: code for radiographs); a modality in no family (OT, SC, ...) is no evidence.
MODALITY_FAMILIES: tuple[frozenset[str], ...] = (
    frozenset({"DX", "CR", "RG", "DR"}), frozenset({"CT"}), frozenset({"MR"}),
    frozenset({"MG"}), frozenset({"US"}), frozenset({"NM"}), frozenset({"PT"}),
    frozenset({"XA", "RF"}))
#: BodyPartExamined terms (spaces, "-" and "_" ignored) and the body regions they name. A term
#: naming several regions (ABDOMENPELVIS) matches a service reading any of them.
BODY_REGIONS: dict[str, frozenset[str]] = {
    **{t: frozenset({"CHEST"}) for t in ("CHEST", "THORAX", "LUNG", "LUNGS", "CHESTPA",
                                        "PACHEST", "TORAX")},
    **{t: frozenset({"HEAD"}) for t in ("HEAD", "BRAIN", "SKULL", "CRANIUM", "NEURO")},
    **{t: frozenset({"ABDOMEN"}) for t in ("ABDOMEN", "ABD", "KIDNEY", "KIDNEYS", "LIVER")},
    **{t: frozenset({"PELVIS"}) for t in ("PELVIS", "HIP", "HIPS", "HIPJOINT")},
    **{t: frozenset({"LSPINE"}) for t in ("LSPINE", "LUMBARSPINE", "LUMBAR", "SPINELUMBAR")},
    **{t: frozenset({"CSPINE"}) for t in ("CSPINE", "CERVICALSPINE", "NECK")},
    **{t: frozenset({"TSPINE"}) for t in ("TSPINE", "THORACICSPINE")},
    "SPINE": frozenset({"CSPINE", "TSPINE", "LSPINE"}),
    "WHOLESPINE": frozenset({"CSPINE", "TSPINE", "LSPINE"}),
    "ABDOMENPELVIS": frozenset({"ABDOMEN", "PELVIS"}),
    "ABDPELVIS": frozenset({"ABDOMEN", "PELVIS"}),
    "CHESTABDOMEN": frozenset({"CHEST", "ABDOMEN"}),
    "CHESTABDOMENPELVIS": frozenset({"CHEST", "ABDOMEN", "PELVIS"}),
    **{t: frozenset({"WRIST"}) for t in ("WRIST", "HAND", "FINGER", "CARPUS")},
    **{t: frozenset({"FOOT"}) for t in ("FOOT", "FEET", "TOE", "CALCANEUS")},
    **{t: frozenset({t}) for t in ("KNEE", "BREAST", "ELBOW", "SHOULDER", "ANKLE", "FOREARM",
                                   "HUMERUS", "FEMUR", "LEG", "ARM", "CLAVICLE", "HEART")},
    "MAMMA": frozenset({"BREAST"}),
}


def _regions(term: str) -> frozenset[str] | None:
    key = "".join(ch for ch in term.upper() if ch.isalnum())
    return BODY_REGIONS.get(key)


def _family(modality: str) -> frozenset[str] | None:
    return next((f for f in MODALITY_FAMILIES if modality.strip().upper() in f), None)


def check_identity(select: Selection, geometries: Sequence[SliceGeometry]) -> None:
    """The images' own Modality/BodyPartExamined must not name one the service does not read.

    Only a contradiction fires: an absent tag, or a term this module does not know (a vendor's
    own wording), is not evidence of anything; the announcement already matched."""
    wanted_modalities = set().union(*(_family(m) or {m} for m in select.modalities))
    wanted_regions = set().union(*(_regions(b) or {b} for b in select.body_parts))
    for g in geometries:
        family = _family(g.modality) if g.modality else None
        if family is not None and not family & wanted_modalities:
            raise InputRejected(Reason.BODY_PART_MISMATCH,
                                f"images are {g.modality}, service reads "
                                f"{sorted(select.modalities)}")
        regions = _regions(g.body_part) if g.body_part else None
        if regions is not None and not regions & wanted_regions:
            raise InputRejected(Reason.BODY_PART_MISMATCH,
                                f"images show {g.body_part}, service reads "
                                f"{sorted(select.body_parts)}")


# --- geometry and completeness -------------------------------------------------------------

def check_geometry(checks: DefectChecks, shape: tuple[int, ...],
                   geometries: Sequence[SliceGeometry], announced: int) -> None:
    """Matrix, spacing and completeness of a (slices, rows, cols) series."""
    slices, rows, cols = shape  # (slices, rows, cols): read_series always stacks slices
    lo, hi = MATRIX_SIDE
    if not (lo <= rows <= hi and lo <= cols <= hi):
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE, f"matrix {rows}x{cols}")
    spacing = next((g.pixel_spacing for g in geometries if g.pixel_spacing), None)
    s_lo, s_hi = checks.pixel_spacing_mm
    if spacing is not None and not all(s_lo <= s <= s_hi for s in spacing):
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"pixel spacing {spacing} mm outside [{s_lo}, {s_hi}]")
    if slices > checks.max_slices:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"{slices} slices > {checks.max_slices} for this service")
    if slices < announced:
        raise InputRejected(Reason.SERIES_INCOMPLETE,
                            f"{announced} instances announced, {slices} found")
    if slices < checks.min_slices:
        raise InputRejected(Reason.SERIES_INCOMPLETE,
                            f"{slices} slices < {checks.min_slices} this service needs")
    if slices < 2:
        return
    zs = [g.position_z for g in geometries]
    if all(z is not None for z in zs):
        # Positions are the physical evidence: numbering may skip (a deleted or re-sent
        # instance, another series' numbers) while the slices are complete.
        _check_positions([float(z or 0.0) for z in zs], checks)
        return
    numbers = [g.instance_number for g in geometries]
    if all(n is not None for n in numbers):
        ints = sorted(int(n or 0) for n in numbers)
        if ints[-1] - ints[0] + 1 != len(set(ints)) or len(set(ints)) != len(ints):
            raise InputRejected(Reason.SERIES_INCOMPLETE,
                                f"instance numbers {ints[0]}..{ints[-1]} for {len(ints)} slices")


def _check_positions(zs: list[float], checks: DefectChecks) -> None:
    steps = np.diff(np.sort(np.asarray(zs, dtype=np.float64)))
    if float(steps.min()) < 1e-3:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE, "two slices at the same position")
    typical = float(np.median(steps))
    z_lo, z_hi = checks.slice_spacing_mm
    if not z_lo <= typical <= z_hi:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"slice spacing {typical:.3g} mm outside [{z_lo}, {z_hi}]")
    if float(steps.max()) > GAP_FACTOR * typical:
        raise InputRejected(Reason.SERIES_INCOMPLETE,
                            f"gap of {float(steps.max()):.3g} mm between slices "
                            f"(typical {typical:.3g} mm)")


# --- inverted contrast ---------------------------------------------------------------------

@dataclass(frozen=True)
class Votes:
    """What each kind of evidence says about one series: "upright", "inverted" or absent
    (no evidence), plus the figure it read, for the detail and for tuning."""

    votes: dict[str, str]
    figures: dict[str, float]

    @property
    def inverted(self) -> bool:
        said = set(self.votes.values())
        return "inverted" in said and "upright" not in said


def _shrink(image: np.ndarray) -> np.ndarray:
    """Block means down to at most GRID a side (float32)."""
    h, w = image.shape
    f = max(1, -(-max(h, w) // GRID))
    hh, ww = (h // f) * f, (w // f) * f
    if f == 1:
        return image.astype(np.float32)
    return (image[:hh, :ww].astype(np.float32)
            .reshape(hh // f, f, ww // f, f).mean(axis=(1, 3), dtype=np.float32))


def _flat_run(spreads: np.ndarray, limit: float, most: int) -> int:
    """How many leading lines have a spread below ``limit`` (at most ``most``)."""
    run = 0
    while run < min(most, spreads.size) and spreads[run] < limit:
        run += 1
    return run


def exposed_field(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``image`` without its edge bands of near-constant value:
    collimation (bright, as a film shows it, or masked black or white), shutters, CT padding
    and rows of empty air. A band says nothing about polarity by itself (a shutter may be drawn
    either way); what of it is a shutter is found by :func:`_shutters`."""
    h, w = image.shape
    lo, hi = np.percentile(image, (0.5, 99.5))
    limit = FLAT_LINE * max(float(hi - lo), 1e-6)
    top, bottom, left, right = 0, h, 0, w
    for _ in range(2):  # rows, columns, then again: a corner belongs to two bands
        part = image[top:bottom, left:right]
        if part.shape[0] < 8 or part.shape[1] < 8:
            break
        p10, p90 = np.percentile(part, (10, 90), axis=1)
        rows = p90 - p10
        most = int(MAX_BAND * h)
        top += _flat_run(rows, limit, most)
        bottom -= _flat_run(rows[::-1], limit, most)
        part = image[top:bottom, left:right]
        if part.shape[0] < 8:
            break
        p10, p90 = np.percentile(part, (10, 90), axis=0)
        cols = p90 - p10
        most = int(MAX_BAND * w)
        left += _flat_run(cols, limit, most)
        right -= _flat_run(cols[::-1], limit, most)
    return top, max(bottom, top), left, max(right, left)


def _shutters(image: np.ndarray, span: float) -> np.ndarray:
    """The pixels of collimator shutters: from each side of the image, the region at the level
    of its outermost line whose inner edge is a straight line (level or tilted) across the
    side. Such a region says nothing about polarity (a shutter may be shown bright, as film
    shows unexposed area, or masked black or white). Air at an edge meets the body along a
    curve and stays; so does a mask drawn in the air's own value where air adjoins it."""
    tol = FLAT_LINE * span
    found = np.zeros(image.shape, dtype=bool)
    for k in range(4):  # each side turned to the top
        turned = np.rot90(image, k)
        h, w = turned.shape
        level = float(np.median(turned[0]))
        near = np.abs(turned - level) < tol
        if float(near[0].mean()) < SHUTTER_COVER:
            continue
        seeds = np.zeros_like(near)
        seeds[0] = True
        region = _edge_connected(near, seeds)
        depth = np.argmin(region, axis=0).astype(np.float64)  # first row outside, per column
        depth[region.all(axis=0)] = h
        middle = slice(int(0.15 * w), int(0.85 * w))
        cols = np.arange(w, dtype=np.float64)[middle]
        d = depth[middle]
        if d.size < 8 or float((d > 0).mean()) < SHUTTER_COVER:
            continue
        slope, intercept = np.polyfit(cols, d, 1)
        residual = float(np.sqrt(np.mean((d - (slope * cols + intercept)) ** 2)))
        line = slope * np.arange(w) + intercept
        if residual > max(SHUTTER_STRAIGHT * h, 1.0) or float(line.max()) > MAX_BAND * h:
            continue
        # the band up to its straight edge only: what lies beyond it (air around a CT
        # table's ends, say) is connected to it but is not shutter
        rows = np.arange(h)[:, np.newaxis]
        found |= np.rot90(region & (rows < np.minimum(depth, line + 1.0)), -k)
    return found


def _local_std(field: np.ndarray) -> np.ndarray:
    padded = np.pad(field, 1, mode="edge")
    h, w = field.shape
    windows = [padded[i:i + h, j:j + w] for i in range(3) for j in range(3)]
    mean = sum(windows) / 9.0
    sq = sum(x * x for x in windows) / 9.0
    return np.sqrt(np.maximum(sq - mean * mean, 0.0))


def _spread_along_rows(reach: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every run of ``mask`` pixels along a row that holds a pixel of ``reach``."""
    h, w = mask.shape
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    runs = np.cumsum(starts, axis=1) + (np.arange(h) * (w + 1))[:, np.newaxis]
    hit = np.zeros(h * (w + 1) + 1, dtype=bool)
    hit[runs[reach & mask]] = True
    return mask & hit[runs]


def _edge_connected(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` connected (4-neighbours) to a pixel of ``mask & seeds``: whole
    runs along rows, then along columns, until nothing more is reached (a few rounds, where a
    pixel-by-pixel flood would take one per pixel of the longest path)."""
    reach = mask & seeds
    while True:
        grown = _spread_along_rows(reach, mask)
        grown = _spread_along_rows(grown.T, mask.T).T
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def _air_vote(image: np.ndarray, flat: np.ndarray, allowed: np.ndarray,
              box: tuple[int, int, int, int], lo: float, span: float,
              clipped: bool = False) -> tuple[str | None, float, np.ndarray]:
    """("upright" | "inverted" | None, signed area figure, background mask of the field)."""
    top, bottom, left, right = box
    # Air touches the image's edge, the field's edge or a shutter; a ring of 3 pixels, since
    # the pixels right beside a band are not flat (their neighbourhood holds the band).
    seeds = ~allowed
    seeds[[0, -1], :] = seeds[:, [0, -1]] = True
    seeds[[top, bottom - 1], left:right] = seeds[top:bottom, [left, right - 1]] = True
    for _ in range(3):
        seeds = seeds | np.roll(seeds, 1, 0) | np.roll(seeds, -1, 0) \
            | np.roll(seeds, 1, 1) | np.roll(seeds, -1, 1)
    usable = flat & allowed
    if clipped:  # only values at the very end of the range: a detector burned out by air
        field = image[top:bottom, left:right]
        low = float(field.min()) + CLIPPED * span
        high = float(field.max()) - CLIPPED * span
    else:
        low, high = lo + EXTREME * span, lo + (1.0 - EXTREME) * span
    dark = _edge_connected(usable & (image <= low), seeds)
    bright = _edge_connected(usable & (image >= high), seeds)
    area = max(float(allowed.sum()), 1.0)
    a_dark, a_bright = float(dark.sum()) / area, float(bright.sum()) / area
    vote = None
    if a_dark >= AIR_MIN_AREA and a_dark >= AIR_RATIO * a_bright:
        vote = "upright"
    elif a_bright >= AIR_MIN_AREA and a_bright >= AIR_RATIO * a_dark:
        vote = "inverted"
    return vote, a_bright - a_dark, (dark | bright)[top:bottom, left:right]


@dataclass(frozen=True)
class Profile:
    """Where, across the body's width (0 = one side, 1 = the other) and down its height, dense
    anatomy (bright upright) and lighter anatomy (dark upright) lie on a frontal film."""

    rows: tuple[float, float]
    dense: tuple[tuple[float, float], ...]
    light: tuple[tuple[float, float], ...]


#: The anatomical profiles the contrast check may read (kinds of evidence of the same name).
PROFILES: dict[str, Profile] = {
    # mediastinum and spine between the lung fields; femur and tibia between soft tissue
    "midline": Profile((0.2, 0.65), ((0.44, 0.56),), ((0.18, 0.36), (0.64, 0.82))),
    # femoral heads in their acetabula either side of the pelvic cavity
    "hips": Profile((0.45, 0.66), ((0.12, 0.32), (0.68, 0.88)), ((0.44, 0.56),)),
}


def _profile_vote(profile: Profile, field: np.ndarray,
                  background: np.ndarray) -> tuple[str | None, float]:
    """The dense columns against the light ones, placed within the body (the field less its
    background), so a small patient in a wide field is read where the body is: upright when
    every dense column is brighter than every light one by the margin, inverted when every one
    is darker by it."""
    body_cols = np.flatnonzero((~background).mean(axis=0) > 0.5)
    body_rows = np.flatnonzero((~background).mean(axis=1) > 0.3)
    if body_cols.size < 16 or body_rows.size < 16:
        return None, 0.0
    c0, c1 = int(body_cols[0]), int(body_cols[-1]) + 1
    r0, r1 = int(body_rows[0]), int(body_rows[-1]) + 1
    height, width = r1 - r0, c1 - c0
    top, bottom = profile.rows
    band = field[r0 + int(top * height): r0 + int(bottom * height), c0:c1]
    if band.shape[0] < 2:
        return None, 0.0
    columns = np.median(band, axis=0)

    def mean(a: float, b: float) -> float:
        return float(columns[int(a * width): max(int(b * width), int(a * width) + 1)].mean())

    # On the scale of the field's own distribution (the share of it below a value), which no
    # monotonic mapping of the values changes: log or linear exposure, any tone curve.
    ordered = np.sort(field, axis=None)

    def rank(value: float) -> float:
        return float(np.searchsorted(ordered, value)) / ordered.size

    dense = [rank(mean(a, b)) for a, b in profile.dense]
    light = [rank(mean(a, b)) for a, b in profile.light]
    up = min(dense) - max(light)
    down = min(light) - max(dense)
    if up >= PROFILE_MARGIN:
        return "upright", -up
    if down >= PROFILE_MARGIN:
        return "inverted", down
    return None, max(up, down) * (1 if down > up else -1)


def _hounsfield_vote(stored: np.ndarray, background: np.ndarray, slope: float,
                     intercept: float) -> tuple[str | None, float]:
    """Upright when the background around the body is air (or padding below it) in CT numbers
    and the body holds soft tissue: inverted values put neither where it belongs."""
    if not background.any() or background.all():
        return None, 0.0
    hu = stored * np.float32(slope) + np.float32(intercept)
    outside = float(np.median(hu[background]))
    body = hu[~background]
    tissue = float(((body >= HU_TISSUE[0]) & (body <= HU_TISSUE[1])).mean())
    ok = outside <= HU_AIR and tissue >= HU_TISSUE[2]
    return ("upright" if ok else None), outside


def displays_inverted(photometric: str) -> bool:
    """Whether the lowest stored value is shown white: MONOCHROME1 (the reader reports a
    MONOCHROME2 image with Presentation LUT Shape INVERSE as MONOCHROME1: dicom_io.py)."""
    return photometric.strip().upper() == "MONOCHROME1"


def _sample(stored: np.ndarray) -> Iterable[np.ndarray]:
    stack = stored if stored.ndim == 3 else stored[np.newaxis]
    n = stack.shape[0]
    if n <= CONTRAST_SLICES:
        return list(stack)
    picks = np.linspace(0.1 * (n - 1), 0.9 * (n - 1), CONTRAST_SLICES).round().astype(int)
    return [stack[i] for i in sorted(set(picks.tolist()))]


def contrast_votes(stored: np.ndarray, photometric: str = "MONOCHROME2", *,
                   evidence: Sequence[str] = ("air",), slope: float = 1.0,
                   intercept: float = 0.0) -> Votes:
    """What each kind of ``evidence`` says about the polarity of the stored values.

    Every slice sampled is shrunk, turned so that dark is what the photometric tag displays as
    dark, cut to its exposed field (:func:`exposed_field`), and read:

    - "air": every device images the body surrounded by air, which is the darkest thing on
      every modality here, and air is flat (a burned-out detector, -1000 HU, no MR signal).
      The flat region at one end of the range that touches the field's edge is that air.
    - "midline": the central column of the body (mediastinum and spine; femur and tibia) is
      brighter than both sides of it (lung fields; soft tissue).
    - "hips": both hip joints are brighter than the pelvic cavity between them.
    - "hounsfield" (CT): air around the body and soft tissue in it at their CT numbers; only
      confirms upright.

    A kind of evidence speaks for the series when most slices that gave it agree.
    """
    flip = displays_inverted(photometric)
    per_slice: dict[str, list[str]] = {e: [] for e in evidence}
    figures: dict[str, list[float]] = {e: [] for e in evidence}
    samples = list(_sample(stored))
    for raw in samples:
        image = _shrink(raw)
        if flip:
            image = -image
        box = exposed_field(image)
        top, bottom, left, right = box
        field = image[top:bottom, left:right]
        if field.shape[0] < 16 or field.shape[1] < 16 or field.size < 0.15 * image.size:
            continue  # nearly all band: nothing left to read
        lo, hi = np.percentile(field, (1.0, 99.0))
        span = float(hi - lo)
        if span <= 0:
            continue
        flat = _local_std(image) < FLAT_PIXEL * span
        allowed = ~_shutters(image, span)
        air, air_figure, background = _air_vote(image, flat, allowed, box, float(lo), span)
        if "burned_out_air" in evidence:
            burned, burned_figure, _ = _air_vote(image, flat, allowed, box, float(lo), span,
                                                 clipped=True)
        for kind in evidence:
            vote: str | None
            if kind == "air":
                vote, figure = air, air_figure
            elif kind == "burned_out_air":
                vote, figure = burned, burned_figure
            elif kind in PROFILES:
                vote, figure = _profile_vote(PROFILES[kind], field, background)
            else:
                stored_field = -field if flip else field
                vote, figure = _hounsfield_vote(stored_field, background, slope, intercept)
            figures[kind].append(figure)
            if vote:
                per_slice[kind].append(vote)
    votes: dict[str, str] = {}
    for kind, said in per_slice.items():
        if not said or len(said) < 0.5 * len(samples):
            continue
        for side in ("upright", "inverted"):
            if said.count(side) >= SLICE_AGREEMENT * len(said):
                votes[kind] = side
    return Votes(votes, {k: float(np.median(v)) for k, v in figures.items() if v})


def check_contrast(stored: np.ndarray, photometric: str = "MONOCHROME2", *,
                   evidence: Sequence[str] = ("air",), slope: float = 1.0,
                   intercept: float = 0.0) -> None:
    """CONTRAST_INVERTED when the evidence says the stored values are inverted against their
    photometric tag and nothing says otherwise (:func:`contrast_votes`); else the study goes on.

    Measured on the stored values, not the windowed model input: a window chosen for the true
    values can clip an inverted image flat, hiding the inversion."""
    result = contrast_votes(stored, photometric, evidence=evidence, slope=slope,
                            intercept=intercept)
    if result.inverted:
        said = ", ".join(f"{k} {v}" for k, v in sorted(result.votes.items()))
        raise InputRejected(Reason.CONTRAST_INVERTED,
                            f"values inverted against {photometric.strip() or 'MONOCHROME2'} "
                            f"({said})")
