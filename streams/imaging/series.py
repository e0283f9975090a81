"""Read one announced series (a single file, a multi-frame file or a folder of slices) into a
stack of stored pixels plus each slice's geometry. DICOM I/O only: the checks that judge the
result live in streams/imaging/defects.py.

A series URI names its first instance (services/publisher/announce.py); the other slices are the
files beside it that carry the same SeriesInstanceUID. Every file goes through
streams.imaging.dicom_io.read_image, so each keeps its size cap, transfer-syntax allow-list and
pixel budget, and the budget also holds for the series as a whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXEL_BYTES,
    Geometry,
    read_image,
    resolve_uri,
)


@dataclass(frozen=True)
class DicomSeries:
    """Stored pixels (slices, rows, cols) in slice order, with the first slice's rescale and
    window and every slice's geometry (same order)."""

    pixels: np.ndarray
    photometric: str
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None
    geometries: tuple[Geometry, ...]


def _slice_files(first: Path, limit: int) -> list[Path]:
    """Regular files in the first instance's folder, the first one included, at most
    ``limit``: more files than the service could ever read is a defect, not work to do."""
    names = sorted(e.name for e in os.scandir(first.parent)
                   if e.is_file(follow_symlinks=False) and not e.name.startswith("."))
    if len(names) > limit:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"series folder holds {len(names)} files > {limit}")
    return [first.parent / n for n in names]


def _order(geometries: Sequence[Geometry]) -> list[int]:
    """Slice order: by position along the patient axis when every slice has one, else by
    instance number, else as found."""
    idx = list(range(len(geometries)))
    if all(g.position_z is not None for g in geometries):
        return sorted(idx, key=lambda i: float(geometries[i].position_z or 0.0))
    if all(g.instance_number is not None for g in geometries):
        return sorted(idx, key=lambda i: int(geometries[i].instance_number or 0))
    return idx


def read_series(uri: str, instance_count: int, roots: Sequence[Path], *, max_slices: int,
                max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> DicomSeries:
    """Read the series whose first instance ``uri`` names.

    Raises:
        InputRejected: the file-level reasons of read_image, GEOMETRY_IMPLAUSIBLE for more
            slices than ``max_slices`` or slices of different sizes, IMAGE_TOO_LARGE when the
            series as a whole exceeds ``max_pixel_bytes``.
    """
    first = resolve_uri(uri, roots)
    if instance_count > max_slices:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"{instance_count} instances announced > {max_slices} for this service")
    head = read_image(first, max_bytes=max_bytes, max_pixel_bytes=max_pixel_bytes)
    images = [head]
    budget = max_pixel_bytes - head.pixels.nbytes
    if instance_count > 1 and head.pixels.ndim == 2:
        for path in _slice_files(first, max_slices + 1):
            if path.name == first.name:
                continue
            image = read_image(path, max_bytes=max_bytes, max_pixel_bytes=max(budget, 0))
            if image.geometry.series_uid != head.geometry.series_uid:
                continue  # another series sharing the folder is not ours to judge
            budget -= image.pixels.nbytes
            if budget < 0:
                raise InputRejected(Reason.IMAGE_TOO_LARGE,
                                    f"series exceeds the pixel budget of {max_pixel_bytes} bytes")
            images.append(image)
    if head.pixels.ndim == 3:  # one multi-frame file: frames are the slices
        stack = head.pixels
        geometries: tuple[Geometry, ...] = (head.geometry,) * stack.shape[0]
    else:
        shapes = {im.pixels.shape for im in images}
        if len(shapes) != 1 or head.pixels.ndim != 2:
            raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                                f"slices of different shapes {sorted(shapes)[:3]}")
        order = _order([im.geometry for im in images])
        stack = np.stack([images[i].pixels for i in order])
        geometries = tuple(images[i].geometry for i in order)
    return DicomSeries(pixels=stack, photometric=head.photometric, slope=head.slope,
                       intercept=head.intercept, window_center=head.window_center,
                       window_width=head.window_width, geometries=geometries)
