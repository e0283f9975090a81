"""Technical-defect checks run before inference (pure logic, no I/O).

A study that fails one becomes a technical_defect Finding with the reason, never a model guess:
the programme reports about 5 % of studies as defective, so this is a common path. The checks
read what the worker decoded (streams/imaging/series.py) and the limits the catalog declares for
the service (``[service.checks]`` in streams/contract/catalog.toml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from streams.contract.catalog import DefectChecks, Selection
from streams.contract.reasons import InputRejected, Reason

#: Smallest and largest plausible image matrix side, in pixels.
MATRIX_SIDE = (32, 8192)
#: A gap between slice positions more than this many times the typical spacing is a missing slice.
GAP_FACTOR = 1.6
#: Share of rows/columns that form the border ring in the contrast check.
BORDER = 0.06
#: The border may be at most this much brighter than the centre (on the series' 1st..99th
#: percentile scale). Every phantom service measures below -0.3 upright and above +0.3 inverted.
CONTRAST_MARGIN = 0.1


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


def check_identity(select: Selection, geometries: Sequence[SliceGeometry]) -> None:
    """The images' own Modality/BodyPartExamined must be ones the service reads (a tag that is
    absent is not evidence of anything: the announcement already matched)."""
    for g in geometries:
        if g.modality and g.modality not in select.modalities:
            raise InputRejected(Reason.BODY_PART_MISMATCH,
                                f"images are {g.modality}, service reads "
                                f"{sorted(select.modalities)}")
        if g.body_part and g.body_part not in select.body_parts:
            raise InputRejected(Reason.BODY_PART_MISMATCH,
                                f"images show {g.body_part}, service reads "
                                f"{sorted(select.body_parts)}")


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
    numbers = [g.instance_number for g in geometries]
    if all(n is not None for n in numbers):
        ints = sorted(int(n or 0) for n in numbers)
        if ints[-1] - ints[0] + 1 != len(set(ints)) or len(set(ints)) != len(ints):
            raise InputRejected(Reason.SERIES_INCOMPLETE,
                                f"instance numbers {ints[0]}..{ints[-1]} for {len(ints)} slices")
    zs = [g.position_z for g in geometries]
    if all(z is not None for z in zs):
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


def border_excess(stored: np.ndarray, photometric: str = "MONOCHROME2") -> float:
    """How much brighter the border ring is than the centre, on a [0, 1] scale spanning the
    series' 1st..99th percentile (over up to 8 of its slices).

    Every device images anatomy surrounded by air, which is the darkest value (MONOCHROME2) on
    every modality here, so a clearly positive excess means values inverted against their
    photometric tag. Measured on the stored values, not the windowed model input: a window
    chosen for the true values can clip an inverted image flat, hiding the inversion.

    The rescaling to [0, 1] is linear, so it is applied to the two means rather than to every
    pixel; means and percentiles are taken over every 2nd and 4th pixel each way (the same
    figures, to well under the margin, at a fraction of the work: this runs on every study).
    """
    stack = stored if stored.ndim == 3 else stored[np.newaxis]
    sample = stack[:: max(1, stack.shape[0] // 8)]
    lo, hi = np.percentile(sample[:, ::4, ::4].mean(axis=0, dtype=np.float32), (1.0, 99.0))
    h, w = sample.shape[1:]
    bh, bw = max(1, int(h * BORDER)), max(1, int(w * BORDER))
    ring = (sample[:, :bh, ::2], sample[:, -bh:, ::2], sample[:, ::2, :bw], sample[:, ::2, -bw:])
    ring_mean = (sum(float(part.sum(dtype=np.float64)) for part in ring)
                 / sum(part.size for part in ring))
    centre_mean = float(sample[:, h // 4: h - h // 4: 2, w // 4: w - w // 4: 2]
                        .mean(dtype=np.float64))
    excess = (ring_mean - centre_mean) / max(float(hi - lo), 1e-6)
    return -excess if photometric.strip().upper() == "MONOCHROME1" else excess


def check_contrast(stored: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    excess = border_excess(stored, photometric)
    if excess > CONTRAST_MARGIN:
        raise InputRejected(Reason.CONTRAST_INVERTED,
                            f"border {excess:.2f} brighter than the centre: inverted values")
