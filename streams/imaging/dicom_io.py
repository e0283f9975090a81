"""The worker's only DICOM file I/O: resolve a study URI safely and decode its pixels.

Why so strict: URIs arrive from hospitals over the bus, so a path must never escape the
configured roots (``..`` or symlinks), and every way a file can be bad maps to one stable
:class:`~streams.contract.reasons.Reason` so the study ends as a technical defect or dead
letter with a cause analysts can count, never as a crashed worker.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from streams.contract.reasons import InputRejected, Reason

#: Largest DICOM file a worker will read (and largest inflated dataset); checked before parsing.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Largest decoded pixel array (Rows x Columns x Samples x Frames x BitsAllocated/8), checked
#: from the header before decoding: a small file can declare a huge image.
DEFAULT_MAX_PIXEL_BYTES = 128 * 1024 * 1024
#: Transfer syntaxes the worker decodes itself (uncompressed; deflated with a bounded inflate).
#: Anything else (JPEG, JPEG 2000, RLE, big endian, unknown UIDs) is rejected before parsing.
ALLOWED_TRANSFER_SYNTAXES = frozenset({
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian})

# pydicom's value-validation warnings quote header values (names, birth dates); the worker
# never validates values it does not use, so those messages cannot reach its logs.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@dataclass(frozen=True)
class Geometry:
    """The identity and geometry tags the technical-defect checks read
    (streams/imaging/defects.py)."""

    modality: str = ""
    body_part: str = ""
    series_uid: str = ""
    instance_number: int | None = None
    #: (row, column) spacing in mm, None when the file has no PixelSpacing.
    pixel_spacing: tuple[float, float] | None = None
    #: Position of the slice along the patient axis (ImagePositionPatient z), in mm.
    position_z: float | None = None
    slice_thickness: float | None = None


@dataclass(frozen=True)
class DicomImage:
    """Decoded stored pixels plus the tags preprocessing needs to normalise them."""

    pixels: np.ndarray
    photometric: str
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None
    geometry: Geometry = Geometry()


@functools.lru_cache(maxsize=16)
def _resolved_roots(roots: tuple[str, ...]) -> tuple[Path, ...]:
    """The configured roots, resolved once per process (they are settings, not input)."""
    return tuple(Path(root).resolve() for root in roots)


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
        resolved_roots = _resolved_roots(tuple(str(root) for root in roots))
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


class _TrackedStream(io.BytesIO):
    """An in-memory file that notes when a read asks for more bytes than are left.

    pydicom reads each value with ``read(declared_length)`` and silently keeps a short result,
    so a truncated file or an absurd element length would otherwise parse as a shorter dataset.
    Parsing from memory also means a declared length of 4 GiB allocates nothing: ``BytesIO``
    returns at most what the file has, and the file is already bounded by ``max_bytes``.
    """

    overrun = False

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        # A zero-byte answer to the 8-byte element header read is the normal end of a dataset.
        if size is not None and size > 0 and len(chunk) < size and (chunk or size != 8):
            self.overrun = True
        return chunk


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing non-regular files, symlinks and anything over ``max_bytes``.

    O_NOFOLLOW closes the gap between :func:`resolve_uri` and the read (a file swapped for a
    symlink meanwhile); O_NONBLOCK keeps a FIFO from blocking the open.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise InputRejected(Reason.FILE_MISSING, f"{path} does not exist") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputRejected(Reason.FILE_OUTSIDE_ROOT, f"{path} is a symlink") from exc
        raise InputRejected(Reason.DICOM_UNREADABLE, f"cannot open {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputRejected(Reason.FILE_MISSING, f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise InputRejected(Reason.FILE_TOO_LARGE,
                                f"{path} is {info.st_size} bytes > {max_bytes}")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after fstat
        raise InputRejected(Reason.FILE_TOO_LARGE, f"{path} is more than {max_bytes} bytes")
    return data


def _inflate_bounded(deflated: bytes, limit: int, path: Path) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian dataset, never past ``limit`` bytes.

    pydicom inflates the whole stream in one call, so a few kilobytes can become gigabytes
    (a deflate bomb); here the output is capped and the rest is never produced.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(deflated, limit + 1)
    except zlib.error as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{path}: bad deflate stream: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputRejected(Reason.FILE_TOO_LARGE,
                            f"{path}: deflated dataset inflates beyond {limit} bytes")
    if not inflater.eof:
        raise InputRejected(Reason.DICOM_TRUNCATED, f"{path}: deflate stream ends early")
    return out


def _is_not_meta(tag: int, vr: str | None, length: int) -> bool:
    return tag >> 16 != 0x0002


def _parse(data: bytes, path: Path, max_bytes: int) -> FileDataset:
    """Parse a Part 10 file from memory after checking its transfer syntax (no pixel decoding)."""
    stream = _TrackedStream(data)
    try:
        preamble = read_preamble(stream, False)
    except InvalidDicomError as exc:
        raise InputRejected(Reason.NOT_DICOM, f"{path} is not a DICOM Part 10 file") from exc
    try:
        meta = FileMetaDataset(read_dataset(stream, False, True, stop_when=_is_not_meta))
        syntax = meta.get("TransferSyntaxUID")
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{path}: file meta: {type(exc).__name__}") from exc
    if stream.overrun:
        raise InputRejected(Reason.DICOM_TRUNCATED, f"{path}: file meta ends early")
    if syntax is None:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{path} has no TransferSyntaxUID")
    syntax = str(syntax).strip("\x00 ")
    if syntax not in ALLOWED_TRANSFER_SYNTAXES:
        name = UID(syntax).name if UID(syntax).is_valid else "invalid UID"
        raise InputRejected(Reason.TRANSFER_SYNTAX_UNSUPPORTED,
                            f"{path}: transfer syntax {syntax[:64]} ({name}) is not accepted")
    implicit = syntax == ImplicitVRLittleEndian
    if syntax == DeflatedExplicitVRLittleEndian:
        stream = _TrackedStream(_inflate_bounded(data[stream.tell():], max_bytes, path))
    try:
        dataset = read_dataset(stream, implicit, True)
    except Exception as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{path}: {type(exc).__name__} while parsing") from exc
    if stream.overrun:
        raise InputRejected(Reason.DICOM_TRUNCATED,
                            f"{path}: ends before the element lengths it declares")
    return FileDataset(str(path), dataset, preamble=preamble, file_meta=meta,
                       is_implicit_VR=implicit, is_little_endian=True)


def _header_int(ds: Dataset, keyword: str, default: int | None, path: Path) -> int:
    """A small non-negative integer from the image pixel module, or a precise rejection."""
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise InputRejected(Reason.PIXELS_UNREADABLE, f"{path} has no {keyword}")
        value = default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{path}: {keyword} is not a number") from exc
    if number < 0:
        raise InputRejected(Reason.PIXELS_UNREADABLE, f"{path}: {keyword} is negative")
    return number


def pixel_bytes(ds: Dataset, path: Path) -> int:
    """Bytes the decoded pixel array would take, from the header alone (nothing decoded)."""
    rows = _header_int(ds, "Rows", None, path)
    columns = _header_int(ds, "Columns", None, path)
    samples = _header_int(ds, "SamplesPerPixel", 1, path)
    frames = _header_int(ds, "NumberOfFrames", 1, path)
    bits = _header_int(ds, "BitsAllocated", None, path)
    return rows * columns * max(samples, 1) * max(frames, 1) * max(-(-bits // 8), 1)


@dataclass(frozen=True)
class _Header:
    pixel_bytes: int
    photometric: str
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None
    geometry: Geometry


def _float_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        items = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
            else [value]
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _geometry(ds: Dataset) -> Geometry:
    spacing = _float_list(ds.get("PixelSpacing"))
    position = _float_list(ds.get("ImagePositionPatient"))
    number = ds.get("InstanceNumber")
    return Geometry(
        modality=str(ds.get("Modality", "") or "").strip().upper(),
        body_part=str(ds.get("BodyPartExamined", "") or "").strip().upper(),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        instance_number=int(number) if number not in (None, "") else None,
        pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) >= 2 else None,
        position_z=position[2] if position and len(position) >= 3 else None,
        slice_thickness=_first_float(ds.get("SliceThickness")),
    )


def _header(ds: Dataset, path: Path) -> _Header:
    """Every header value the worker uses, converted up front: pydicom converts lazily, so a
    damaged element (a corrupt VR, say) raises on first access, and must raise here."""
    try:
        if "PixelData" not in ds:
            raise InputRejected(Reason.PIXELS_UNREADABLE, f"{path} has no PixelData")
        needed = pixel_bytes(ds, path)
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        return _Header(needed, str(ds.get("PhotometricInterpretation", "MONOCHROME2")), slope,
                       intercept, _first_float(ds.get("WindowCenter")),
                       _first_float(ds.get("WindowWidth")), _geometry(ds))
    except InputRejected:
        raise
    except Exception as exc:  # NotImplementedError, ValueError, TypeError, ... from pydicom
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{path}: bad header element ({type(exc).__name__})") from exc


def _plain_pixels(ds: Dataset) -> np.ndarray | None:
    """The common case decoded directly: one sample of 8 or 16 bits, uncompressed (every
    allowed transfer syntax is, once inflated), exactly Rows x Columns x Frames values.

    pydicom's general decoder costs about a quarter of a CT slice's read; anything else (colour,
    odd bit depths, a PixelData of the wrong length) goes to it and its error messages. Returns
    None when the fast path does not apply.
    """
    bits, samples = ds.get("BitsAllocated"), ds.get("SamplesPerPixel", 1)
    raw = ds.get("PixelData")
    if bits not in (8, 16) or samples != 1 or not isinstance(raw, bytes):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    if len(raw) not in (rows * cols * frames * dtype.itemsize,
                        rows * cols * frames * dtype.itemsize + 1):  # a pad byte to even length
        return None
    array = np.frombuffer(raw, dtype=dtype, count=rows * cols * frames)
    stored = int(ds.get("BitsStored", bits) or bits)
    if stored < bits:  # keep only the stored bits, sign-extended, as pydicom does
        shift = bits - stored
        array = (array << shift) >> shift if signed else array & ((1 << stored) - 1)
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def read_image(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> DicomImage:
    """Read one DICOM file and decode its pixels, mapping each failure to a Reason.

    Order matters: size cap, then transfer syntax allow-list and a bounded parse, then the
    pixel budget from the header, and only then pixel decoding.
    """
    data = _read_bounded(path, max_bytes)
    ds = _parse(data, path, max_bytes)
    del data
    header = _header(ds, path)
    if header.pixel_bytes > max_pixel_bytes:
        raise InputRejected(
            Reason.IMAGE_TOO_LARGE,
            f"{path}: header declares {header.pixel_bytes} pixel bytes > {max_pixel_bytes}")
    try:
        pixels = _plain_pixels(ds)
        if pixels is None:
            pixels = ds.pixel_array
    except Exception as exc:  # missing handlers, wrong lengths, corrupt compressed streams
        detail = f"{path}: {type(exc).__name__}: {str(exc)[:120]}"
        raise InputRejected(Reason.PIXELS_UNREADABLE, detail) from exc
    return DicomImage(pixels=pixels, photometric=header.photometric, slope=header.slope,
                      intercept=header.intercept, window_center=header.window_center,
                      window_width=header.window_width, geometry=header.geometry)


def read_image_from_uri(uri: str, roots: Sequence[Path], *, max_bytes: int = DEFAULT_MAX_BYTES,
                        max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> DicomImage:
    """Resolve ``uri`` under ``roots`` and read it: the worker's one call per study."""
    return read_image(resolve_uri(uri, roots), max_bytes=max_bytes,
                      max_pixel_bytes=max_pixel_bytes)
