"""Read one announced series (a single file, a multi-frame file or a folder of slices) into a
stack of stored pixels plus each slice's geometry. DICOM I/O only: the checks that judge the
result live in streams/imaging/defects.py.

A series URI names an instance of the series (the publisher stages each series in a folder of
its own, services/publisher/stage.py), but a hospital's own export may hold other files beside
the slices: a DICOMDIR, a README, a structured report, a presentation state, a secondary capture,
another series. So the folder is read headers first (up to Pixel Data, bounded) and only the
instances of the announced series are decoded:

0. a one-instance series whose announced file is an image: that file (the common case, read
   in one parse; the folder is not listed);
1. the image instances whose SeriesInstanceUID is the announced ``series_uid``;
2. else (the publisher announces keyed UIDs, which no header carries) the series of the announced
   file, when that file is an image of the announced modality;
3. else the one image series of the announced modality, or the one image series there is.

Everything else is skipped and counted, never fatal; two candidate series and no way to choose
is ``series_ambiguous``, none ``series_not_found``. The announced file itself is what the event
points at: when it is broken, its own reason is the study's.

Every file is opened relative to the folder's descriptor without following links
(streams/imaging/dicom_io.py), keeps its byte cap, element cap, parse deadline, transfer-syntax
allow-list and pixel budget, and the budget also holds for the series as a whole, checked from
the headers before any pixel is decoded. Slices are decoded straight into one preallocated stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import (
    ANNOUNCED,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_PARSE_S,
    DEFAULT_MAX_PIXEL_BYTES,
    DicomImage,
    Geometry,
    InstanceHeader,
    ParseLimits,
    SeriesFolder,
    open_series_folder,
    read_header_fd,
    read_image_fd,
)

#: Files a series folder may hold, per slice the service reads, plus a few: room for another
#: series, a localizer, a DICOMDIR and notes beside the slices, while a folder of a million files
#: is refused before a single header is read.
FOLDER_FILES_PER_SLICE = 4
FOLDER_FILES_EXTRA = 64
#: Reasons of an announced file that is not DICOM at all or not readable as DICOM: when the
#: announcement names several instances, its series UID may still find them in the folder.
RESCUABLE = frozenset({Reason.NOT_DICOM, Reason.DICOM_TRUNCATED, Reason.DICOM_UNREADABLE})


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
    #: Files of the folder left out, by why: "not_dicom" (unreadable as DICOM), "not_image"
    #: (DICOMDIR, SR, presentation states...), "other_series".
    skipped: dict[str, int] = field(default_factory=dict)


def _order(geometries: Sequence[Geometry]) -> list[int]:
    """Slice order: by position along the patient axis when every slice has one, else by
    instance number, else as found."""
    idx = list(range(len(geometries)))
    if all(g.position_z is not None for g in geometries):
        return sorted(idx, key=lambda i: float(geometries[i].position_z or 0.0))
    if all(g.instance_number is not None for g in geometries):
        return sorted(idx, key=lambda i: int(geometries[i].instance_number or 0))
    return idx


def _header(folder: SeriesFolder, name: str, what: str, limits: ParseLimits) -> InstanceHeader:
    with folder.open(name, what) as fd:
        return read_header_fd(fd, what, limits)


def choose(announced: InstanceHeader | None, others: dict[str, InstanceHeader | None], *,
           announced_name: str, series_uid: str | None,
           modality: str | None) -> tuple[list[str], Counter[str]]:
    """The names of the announced series' image instances among a folder's headers (None: not
    readable as DICOM), and what was skipped, by why. Pure: see the module docstring."""
    headers: dict[str, InstanceHeader | None] = {**others, announced_name: announced}
    skipped: Counter[str] = Counter()
    images: dict[str, InstanceHeader] = {}
    for name, header in headers.items():
        if header is None:
            skipped["not_dicom"] += 1
        elif not header.is_image:
            skipped["not_image"] += 1
        else:
            images[name] = header
    groups: dict[str, list[str]] = {}
    for name in sorted(images):
        groups.setdefault(images[name].geometry.series_uid, []).append(name)
    wanted = (modality or "").strip().upper()
    if series_uid and series_uid in groups:
        uid = series_uid
    elif announced is not None and announced.is_image and (
            not wanted or announced.geometry.modality == wanted):
        uid = announced.geometry.series_uid
    else:
        of_modality = [u for u, names in groups.items()
                       if images[names[0]].geometry.modality == wanted]
        if len(of_modality) == 1:
            uid = of_modality[0]
        elif len(groups) == 1:
            uid = next(iter(groups))
        elif not groups:
            raise InputRejected(Reason.SERIES_NOT_FOUND,
                                f"no image instance among the {len(headers)} files of the "
                                "series folder")
        else:
            raise InputRejected(
                Reason.SERIES_AMBIGUOUS,
                f"{len(groups)} image series in the folder, none with the announced "
                f"SeriesInstanceUID, {len(of_modality)} of modality {wanted or '(none)'}")
    chosen = groups[uid]
    skipped["other_series"] += len(images) - len(chosen)
    return chosen, +skipped


def read_series(uri: str, instance_count: int, roots: Sequence[Path], *, max_slices: int,
                max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
                max_elements: int = DEFAULT_MAX_ELEMENTS,
                max_parse_s: float = DEFAULT_MAX_PARSE_S,
                series_uid: str | None = None, modality: str | None = None,
                hospital_id: str | None = None) -> DicomSeries:
    """Read the announced series whose instance ``uri`` names (see the module docstring).

    ``hospital_id``: the file must lie under ``<root>/<hospital_id>/``.

    Raises:
        InputRejected: the reasons of open_series_folder and of reading a file (the announced
            file's own, or an instance's of the series), SERIES_NOT_FOUND, SERIES_AMBIGUOUS,
            GEOMETRY_IMPLAUSIBLE for more slices than ``max_slices`` or slices of different
            sizes, IMAGE_TOO_LARGE when the series as a whole exceeds ``max_pixel_bytes``.
    """
    limits = ParseLimits(max_bytes, max_pixel_bytes, max_elements, max_parse_s)
    if instance_count > max_slices:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"{instance_count} instances announced > {max_slices} for this service")
    with open_series_folder(uri, roots, hospital_id=hospital_id) as folder:
        if instance_count <= 1:
            one = _single(folder, limits)
            if one is not None:
                return one
        broken: InputRejected | None = None
        announced: InstanceHeader | None = None
        try:
            announced = _header(folder, folder.announced, ANNOUNCED, limits)
        except InputRejected as exc:
            # A note named by a multi-instance announcement: the series UID may still find the
            # slices beside it; if it does not, the note's own reason stands.
            if instance_count <= 1 or not series_uid or exc.reason not in RESCUABLE:
                raise
            broken = exc
        # A one-instance series whose announced file is an image: that file is the series (the
        # URI names an instance of it); when it is broken, its own reason is the study's.
        single = announced is not None and instance_count <= 1 and announced.is_image
        others: dict[str, InstanceHeader | None] = {}
        if not single:
            limit = FOLDER_FILES_PER_SLICE * max_slices + FOLDER_FILES_EXTRA
            for i, name in enumerate(folder.names(limit), 1):
                if name == folder.announced:
                    continue
                try:
                    others[name] = _header(folder, name, f"file {i} of the folder", limits)
                except InputRejected as exc:
                    if exc.reason in (Reason.FILE_OUTSIDE_ROOT, Reason.FILE_UNREADABLE,
                                      Reason.DICOM_PARSE_TIMEOUT):
                        # A link in the folder is an attempt to read elsewhere, and an
                        # unreadable file or a parse that hangs is trouble, not a stray note.
                        raise
                    others[name] = None
        if broken is not None and not any(
                h is not None and h.is_image and h.geometry.series_uid == series_uid
                for h in others.values()):
            raise broken
        names, skipped = choose(announced, others, announced_name=folder.announced,
                                series_uid=series_uid, modality=modality)
        headers: dict[str, InstanceHeader | None] = {**others, folder.announced: announced}
        return _decode(folder, {n: h for n in names if (h := headers[n]) is not None},
                       limits, max_slices, skipped)


def _single(folder: SeriesFolder, limits: ParseLimits) -> DicomSeries | None:
    """The common case in one parse: a one-instance series whose announced file is an image
    (whatever its modality: the defect checks judge that). None when the file is not one or is
    broken: then its header is read first, and a broken file gets its reason there."""
    try:
        with folder.open(folder.announced, ANNOUNCED) as fd:
            image = read_image_fd(fd, ANNOUNCED, limits)
    except InputRejected:
        return None
    geometry = image.geometry
    stack = image.pixels if image.pixels.ndim == 3 else image.pixels[np.newaxis]
    return DicomSeries(pixels=stack, photometric=image.photometric, slope=image.slope,
                       intercept=image.intercept, window_center=image.window_center,
                       window_width=image.window_width,
                       geometries=(geometry,) * stack.shape[0])


def _decode(folder: SeriesFolder, headers: dict[str, InstanceHeader], limits: ParseLimits,
            max_slices: int, skipped: Counter[str]) -> DicomSeries:
    """Decode the chosen instances, in slice order, into one stack (checked before decoding:
    their count, their sizes and the series' pixel bytes)."""
    if len(headers) > max_slices:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"series has {len(headers)} instances > {max_slices}")
    declared = sum(h.pixel_bytes or 0 for h in headers.values())
    if declared > limits.max_pixel_bytes:
        raise InputRejected(Reason.IMAGE_TOO_LARGE, f"series declares {declared} pixel bytes > "
                                                    f"{limits.max_pixel_bytes}")
    unordered = list(headers)
    names = [unordered[i] for i in _order([h.geometry for h in headers.values()])]
    stack: np.ndarray | None = None
    first: DicomImage | None = None
    geometries: list[Geometry] = []
    budget = limits.max_pixel_bytes
    for position, name in enumerate(names):
        what = ANNOUNCED if name == folder.announced else \
            f"instance {position + 1} of {len(names)} of the series"
        with folder.open(name, what) as fd:
            image = read_image_fd(fd, what, ParseLimits(limits.max_bytes, max(budget, 0),
                                                        limits.max_elements, limits.max_parse_s))
        budget -= image.pixels.nbytes
        if image.geometry != headers[name].geometry:
            raise InputRejected(Reason.DICOM_UNREADABLE,
                                f"{what} changed while the series was read")
        if len(names) == 1:  # one file: a single image, or a multi-frame one whose frames
            stack = image.pixels if image.pixels.ndim == 3 else image.pixels[np.newaxis]
            geometries = [image.geometry] * stack.shape[0]
            first = image
            break
        if image.pixels.ndim != 2 or (stack is not None and image.pixels.shape != stack.shape[1:]):
            shape = image.pixels.shape if stack is None else (stack.shape[1:], image.pixels.shape)
            raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE, f"slices of different shapes {shape}")
        if stack is None:
            first = image
            stack = np.empty((len(names), *image.pixels.shape), dtype=image.pixels.dtype)
        elif not np.can_cast(image.pixels.dtype, stack.dtype, "safe"):
            stack = stack.astype(np.result_type(stack.dtype, image.pixels.dtype))
        stack[position] = image.pixels
        geometries.append(image.geometry)
        del image
    assert stack is not None and first is not None
    return DicomSeries(pixels=stack, photometric=first.photometric, slope=first.slope,
                       intercept=first.intercept, window_center=first.window_center,
                       window_width=first.window_width, geometries=tuple(geometries),
                       skipped=dict(skipped))
