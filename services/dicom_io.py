"""The worker's only DICOM file I/O: resolve a study URI safely and decode its pixels.

Why so strict: URIs arrive from hospitals over the bus, so a path must never escape the
configured roots (``..`` or symlinks), and every way a file can be bad maps to one stable
:class:`~streams.reasons.Reason` so the study ends as a technical defect or dead letter with a
cause analysts can count, never as a crashed worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from streams.reasons import InputRejected, Reason

#: Largest DICOM file a worker will read; bigger ones are rejected before any parsing.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DicomImage:
    """Decoded stored pixels plus the tags preprocessing needs to normalise them."""

    pixels: np.ndarray
    photometric: str
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None


def resolve_uri(uri: str, roots: Sequence[Path]) -> Path:
    """Map a ``file://`` URI to an existing file inside one of ``roots``."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise InputRejected(Reason.URI_UNSUPPORTED, f"only file:// URIs are supported: {uri!r}")
    raw = unquote(parts.path)
    if not raw or "\x00" in raw:
        raise InputRejected(Reason.URI_UNSUPPORTED, f"URI has no usable path: {uri!r}")
    try:
        path = Path(raw).resolve()
        resolved_roots = [Path(root).resolve() for root in roots]
    except (OSError, RuntimeError) as exc:  # symlink loops, unreadable components
        raise InputRejected(Reason.FILE_MISSING, f"cannot resolve {raw!r}: {exc}") from exc
    if not any(path.is_relative_to(root) for root in resolved_roots):
        raise InputRejected(Reason.FILE_OUTSIDE_ROOT, f"{raw!r} is outside the allowed roots")
    if not path.is_file():
        raise InputRejected(Reason.FILE_MISSING, f"{raw!r} does not exist or is not a file")
    return path


def _first_float(value: Any) -> float | None:
    """Window tags may be multi-valued (several presets); the first is the default one."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_image(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> DicomImage:
    """Read one DICOM file and decode its pixels, mapping each failure to a Reason."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InputRejected(Reason.FILE_MISSING, f"{path} does not exist") from exc
    except OSError as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"cannot stat {path}: {exc}") from exc
    if size > max_bytes:
        raise InputRejected(Reason.FILE_TOO_LARGE, f"{path} is {size} bytes > {max_bytes}")

    try:
        ds = pydicom.dcmread(path, force=False)
    except InvalidDicomError as exc:
        raise InputRejected(Reason.NOT_DICOM, f"{path} is not a DICOM Part 10 file") from exc
    except Exception as exc:  # pydicom raises many types for damaged headers
        detail = f"{path}: {type(exc).__name__}: {exc}"
        raise InputRejected(Reason.DICOM_UNREADABLE, detail) from exc

    if "PixelData" not in ds:
        raise InputRejected(Reason.PIXELS_UNREADABLE, f"{path} has no PixelData")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # missing handlers, wrong lengths, corrupt compressed streams
        detail = f"{path}: {type(exc).__name__}: {exc}"
        raise InputRejected(Reason.PIXELS_UNREADABLE, detail) from exc

    try:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError) as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{path}: bad rescale tags: {exc}") from exc
    return DicomImage(
        pixels=pixels,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        slope=slope,
        intercept=intercept,
        window_center=_first_float(ds.get("WindowCenter")),
        window_width=_first_float(ds.get("WindowWidth")),
    )


def read_image_from_uri(uri: str, roots: Sequence[Path]) -> DicomImage:
    """Resolve ``uri`` under ``roots`` and read it: the worker's one call per study."""
    return read_image(resolve_uri(uri, roots))
