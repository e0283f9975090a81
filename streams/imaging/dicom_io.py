"""The worker's only DICOM file I/O: open a study's files safely and decode their pixels.

Why so strict: URIs arrive from hospitals over the bus, so a file must never come from outside
the configured roots, nor from outside its own hospital's folder ``<root>/<hospital_id>/``.
Every file is opened through directory descriptors, one path component at a time, without
following a single symlink, so a folder swapped for a link while a series is read cannot lead
out. Every way a file can be bad maps to one stable :class:`~streams.contract.reasons.Reason`,
so the study ends as a technical defect or a dead letter with a cause analysts can count, never
as a crashed worker; and parsing is bounded in bytes, elements and time before anything is
decoded.

Details (the ``detail`` of a rejection, read by analysts) never name a hospital's folders or
files, which can hold patient names or MRNs: a file is "the announced file" or "instance k".
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from streams.contract.reasons import InputRejected, Reason

#: Largest DICOM file a worker will read (and largest inflated dataset); checked before parsing.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Largest decoded pixel array (Rows x Columns x Samples x Frames x BitsAllocated/8), checked
#: from the header before decoding: a small file can declare a huge image.
DEFAULT_MAX_PIXEL_BYTES = 128 * 1024 * 1024
#: Most data elements (sequence items included) one file may hold. An enhanced CT of 1,000
#: frames has about 30,000; each parsed element costs pydicom about 300 bytes and 4 us, so a
#: file of millions of 8-byte elements would otherwise cost gigabytes and tens of seconds.
DEFAULT_MAX_ELEMENTS = 100_000
#: Longest parse of one file's header and data elements (seconds; a CT slice takes about 1 ms).
DEFAULT_MAX_PARSE_S = 5.0
#: Uncompressed transfer syntaxes: the pixels are the bytes (deflated ones once inflated, with a
#: bounded inflate).
NATIVE_TRANSFER_SYNTAXES = frozenset({
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian})
#: Compressed still-image syntaxes most PACS store, each with the pydicom decoding plugin that
#: decodes it: pylibjpeg (libjpeg for the JPEG family and JPEG-LS, OpenJPEG for JPEG 2000) and
#: pydicom's own RLE decoder. Named, not left to pydicom's fallback through every plugin
#: installed: GDCM's aborts the whole process on a corrupt JPEG or JPEG-LS frame. Each frame's
#: codestream dimensions are checked against the header before it is decoded.
DECODING_PLUGINS: dict[str, str] = {
    **dict.fromkeys((JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
                     JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000),
                    "pylibjpeg"),
    RLELossless: "pydicom",
}
COMPRESSED_TRANSFER_SYNTAXES = frozenset(DECODING_PLUGINS)
#: Transfer syntaxes the worker reads. Anything else (MPEG/HEVC video, JPEG XL, HTJ2K, JPIP,
#: unknown UIDs) is rejected as transfer_syntax_unsupported before the dataset is parsed.
ALLOWED_TRANSFER_SYNTAXES = NATIVE_TRANSFER_SYNTAXES | COMPRESSED_TRANSFER_SYNTAXES
#: Bytes read for a header first: the header of an image is a few kilobytes; a longer one is
#: read again up to the file cap.
HEADER_PREFIX_BYTES = 64 * 1024
#: Longest raw value of a header element the worker converts (PixelSpacing, WindowCenter, ...):
#: a standard one is under 100 bytes, while a multi-valued string of megabytes would cost
#: gigabytes as Python objects.
MAX_USED_VALUE_BYTES = 1024
#: Media Storage Directory (DICOMDIR): an index of a medium, never an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: How an announced file is named in details, whatever its path.
ANNOUNCED = "the announced file"

_PIXEL_DATA = 0x7FE00010
_USED_TAGS = ("Modality", "BodyPartExamined", "SeriesInstanceUID", "SOPClassUID",
              "InstanceNumber", "PixelSpacing", "ImagePositionPatient", "SliceThickness",
              "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
              "PhotometricInterpretation", "Rows", "Columns", "SamplesPerPixel",
              "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation",
              "ImagerPixelSpacing", "PresentationLUTShape")
_OPEN_FLAGS = (os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))

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


@dataclass(frozen=True)
class InstanceHeader:
    """What a header alone says about a file: enough to choose a series' instances and check
    their sizes before any pixel is decoded."""

    sop_class_uid: str
    #: The dataset has Pixel Data (SR, presentation states, DICOMDIR and the like have none).
    has_pixels: bool
    #: Rows x Columns x Samples x Frames x BitsAllocated/8, None when the header lacks one.
    pixel_bytes: int | None
    #: (frames, rows, columns), None when the header lacks one.
    shape: tuple[int, int, int] | None
    geometry: Geometry

    @property
    def is_image(self) -> bool:
        return self.has_pixels and self.sop_class_uid != DICOMDIR_SOP_CLASS


@dataclass(frozen=True)
class ParseLimits:
    """Per-file bounds: bytes read (and inflated), decoded pixel bytes, elements, parse time."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES
    max_elements: int = DEFAULT_MAX_ELEMENTS
    max_parse_s: float = DEFAULT_MAX_PARSE_S


# --- Opening files under a root, one component at a time, never through a link -------------

@functools.lru_cache(maxsize=16)
def _root_forms(roots: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each configured root as (real path, the path a URI may spell it with: absolute as
    configured, or real). Roots are settings, not input: their own links are followed once."""
    forms = []
    for root in roots:
        real = os.path.realpath(root)
        forms.append((real, real))
        spelled = os.path.abspath(root)
        if spelled != real:
            forms.append((real, spelled))
    return tuple(forms)


def _os_rejection(exc: OSError, what: str) -> InputRejected:
    """An OSError met while opening or reading a study file, as a precise reason."""
    if exc.errno == errno.ELOOP:
        return InputRejected(Reason.FILE_OUTSIDE_ROOT, f"{what} is a symbolic link")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return InputRejected(Reason.FILE_MISSING, f"{what} does not exist "
                                                  f"({errno.errorcode.get(exc.errno, '')})")
    code = errno.errorcode.get(exc.errno or 0, "error")
    return InputRejected(Reason.FILE_UNREADABLE, f"{what} cannot be read ({code})")


def _open_nofollow(name: str, dir_fd: int | None, what: str) -> int:
    try:
        return os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_rejection(exc, what) from exc


def _uri_path(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        scheme = parts.scheme if parts.scheme.isalnum() and len(parts.scheme) <= 16 else "?"
        raise InputRejected(Reason.URI_UNSUPPORTED,
                            f"only file:// URIs are supported, not {scheme}:")
    raw = unquote(parts.path)
    if not raw.startswith("/") or "\x00" in raw:
        raise InputRejected(Reason.URI_UNSUPPORTED, "the URI has no usable absolute path")
    return raw


def _below_a_root(norm: str, roots: Sequence[Path]) -> tuple[str, list[str]] | None:
    for real, spelled in _root_forms(tuple(str(root) for root in roots)):
        prefix = spelled.rstrip("/") + "/"
        if norm.startswith(prefix):
            return real, [p for p in norm[len(prefix):].split("/") if p]
    return None


def _under_root(raw: str, roots: Sequence[Path],
                hospital_id: str | None) -> tuple[str, list[str]]:
    """(real root, path components below it) of a URI path, judged lexically: ``..`` climbs
    out here, and the walk that follows opens no link, so what it opens is what was judged."""
    norm = "/" + os.path.normpath(raw).lstrip("/")
    found = _below_a_root(norm, roots)
    if found is None:
        raise InputRejected(Reason.FILE_OUTSIDE_ROOT, "the URI's path is outside the allowed roots")
    real, parts = found
    # Each hospital's studies live in <root>/<hospital_id>/ and nowhere else.
    if hospital_id is not None and (len(parts) < 2 or parts[0] != hospital_id
                                    or hospital_id in (".", "..")):
        raise InputRejected(Reason.FILE_OUTSIDE_ROOT,
                            f"the URI's path is outside hospital {hospital_id}'s folder "
                            "under the allowed roots")
    if not parts:
        raise InputRejected(Reason.FILE_MISSING, "the URI names a root, not a file")
    return real, parts


class SeriesFolder:
    """The folder of an announced file, held open: every file read from it is opened relative
    to this descriptor without following links, so replacing the folder (or any folder above
    it) by a symlink while the series is read changes nothing."""

    def __init__(self, fd: int, announced: str) -> None:
        self.fd = fd
        #: Name of the announced file in the folder (never put in a detail).
        self.announced = announced

    @contextmanager
    def open(self, name: str, what: str) -> Iterator[int]:
        """A regular file of the folder, opened without following a link."""
        fd = _open_nofollow(name, self.fd, what)
        try:
            try:
                info = os.fstat(fd)
            except OSError as exc:
                raise _os_rejection(exc, what) from exc
            if not stat.S_ISREG(info.st_mode):
                raise InputRejected(Reason.FILE_MISSING, f"{what} is not a regular file")
            yield fd
        finally:
            os.close(fd)

    def names(self, limit: int) -> list[str]:
        """Visible entries of the folder, sorted, at most ``limit`` (else a rejection)."""
        try:
            names = sorted(n for n in os.listdir(self.fd) if not n.startswith("."))
        except OSError as exc:
            raise _os_rejection(exc, "the series folder") from exc
        if len(names) > limit:
            raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                                f"series folder holds {len(names)} files > {limit}")
        return names

    def close(self) -> None:
        os.close(self.fd)


@contextmanager
def open_series_folder(uri: str, roots: Sequence[Path], *,
                       hospital_id: str | None = None) -> Iterator[SeriesFolder]:
    """The folder of the file ``uri`` names, opened by walking down from its root.

    Raises:
        InputRejected: URI_UNSUPPORTED, FILE_OUTSIDE_ROOT (outside the roots or the hospital's
            folder, or through a symlink), FILE_MISSING, FILE_UNREADABLE.
    """
    real, parts = _under_root(_uri_path(uri), roots, hospital_id)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_rejection(exc, "the root folder") from exc
    try:
        for depth, part in enumerate(parts[:-1], 1):
            what = f"folder {depth} below the root"
            child = _open_nofollow(part, fd, what)
            os.close(fd)
            fd = child
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InputRejected(Reason.FILE_MISSING, f"{what} is not a folder")
    except BaseException:
        os.close(fd)
        raise
    folder = SeriesFolder(fd, parts[-1])
    try:
        yield folder
    finally:
        folder.close()


def resolve_uri(uri: str, roots: Sequence[Path], *, hospital_id: str | None = None) -> Path:
    """The regular file ``uri`` names, checked as the worker reads it (see open_series_folder):
    for tools and tests that then read it by path."""
    with open_series_folder(uri, roots, hospital_id=hospital_id) as folder, \
            folder.open(folder.announced, ANNOUNCED):
        pass
    real, parts = _under_root(_uri_path(uri), roots, hospital_id)
    return Path(real, *parts)


# --- Bounded parsing ----------------------------------------------------------------------

class _TrackedStream:
    """A read-only in-memory file that notes when a read asks for more bytes than are left, and
    bounds how many elements a parse may read and for how long.

    pydicom reads each value with ``read(declared_length)`` and silently keeps a short result,
    so a truncated file or an absurd element length would otherwise parse as a shorter dataset.
    Parsing from memory also means a declared length of 4 GiB allocates nothing: a read returns
    at most what the file has, and the file is already bounded by ``max_bytes``. The buffer is
    used in place (``io.BytesIO`` would copy a bytearray). pydicom reads every element and item
    header, nested ones included, with one ``read(8)``: those reads are counted.
    """

    def __init__(self, data: bytes | bytearray, limits: ParseLimits, deadline: float,
                 what: str, elements: int = 0) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self.overrun = False
        self.elements = elements
        self._limits = limits
        self._deadline = deadline
        self._what = what

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size == 8:
            self.elements += 1
            if self.elements > self._limits.max_elements:
                raise InputRejected(Reason.DICOM_TOO_MANY_ELEMENTS,
                                    f"{self._what} holds more than "
                                    f"{self._limits.max_elements} data elements")
            if not self.elements & 1023 and time.thread_time() > self._deadline:
                raise InputRejected(Reason.DICOM_PARSE_TIMEOUT,
                                    f"{self._what}: parsing took more than "
                                    f"{self._limits.max_parse_s:g} s")
        end = len(self._view) if size is None or size < 0 else min(len(self._view),
                                                                      self._pos + size)
        chunk = bytes(self._view[self._pos:end]) if end > self._pos else b""
        self._pos = max(self._pos, end)
        # A zero-byte answer to the 8-byte element header read is the normal end of a dataset.
        if size is not None and size > 0 and len(chunk) < size and (chunk or size != 8):
            self.overrun = True
        return chunk


@dataclass(frozen=True)
class _Bytes:
    """A file's bytes, or its first bytes when ``whole`` is False."""

    data: bytes
    whole: bool


def _pread(fd: int, size: int, expected: int) -> bytes:
    """Up to ``size`` bytes from the start of an open file of ``expected`` bytes, whatever its
    offset. One call sized by the file, not by ``size``: Python allocates the whole request up
    front, and a 64 MiB buffer for a 2 MiB file would count against the preparation's memory."""
    chunk = os.pread(fd, min(size, expected + 1), 0)
    if len(chunk) <= expected or len(chunk) >= size:
        return chunk
    parts, got = [chunk], len(chunk)  # the file grew meanwhile: the rest in bounded steps
    while got < size:
        more = os.pread(fd, min(size - got, 1 << 20), got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_fd(fd: int, max_bytes: int, what: str, *, prefix: int | None = None) -> _Bytes:
    """The bytes of an open regular file: all of them (refusing more than ``max_bytes``), or
    only the first ``prefix`` (a header read: the size of the rest does not matter)."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputRejected(Reason.FILE_MISSING, f"{what} is not a regular file")
        if prefix is not None:
            data = _pread(fd, min(prefix, max_bytes) + 1, info.st_size)
            whole = len(data) <= min(prefix, max_bytes)
            return _Bytes(data if whole else data[:-1], whole)
        if info.st_size > max_bytes:
            raise InputRejected(Reason.FILE_TOO_LARGE,
                                f"{what} is {info.st_size} bytes > {max_bytes}")
        data = _pread(fd, max_bytes + 1, info.st_size)
    except OSError as exc:
        raise _os_rejection(exc, what) from exc
    if len(data) > max_bytes:  # grew after fstat
        raise InputRejected(Reason.FILE_TOO_LARGE, f"{what} is more than {max_bytes} bytes")
    return _Bytes(data, whole=True)


def _inflate_bounded(deflated: bytes, limit: int, what: str, *,
                     partial: bool = False) -> tuple[bytearray, bool]:
    """Inflate a Deflated Explicit VR Little Endian dataset, never past ``limit`` bytes:
    (bytes, whether they are the whole dataset).

    pydicom inflates the whole stream in one call, so a few kilobytes can become gigabytes
    (a deflate bomb); here the output is capped and the rest is never produced. ``partial``:
    the input may be a prefix, and the output a prefix too (a header read).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()  # grown in place, 1 MiB at a time: one buffer, never a doubling copy
    pending = deflated
    try:
        while len(out) <= limit:
            out += inflater.decompress(pending, min(1 << 20, limit + 1 - len(out)))
            pending = inflater.unconsumed_tail
            if inflater.eof or not pending:
                break
    except zlib.error as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{what}: bad deflate stream") from exc
    if partial:
        whole = inflater.eof and len(out) <= limit
        del out[limit:]
        return out, whole
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputRejected(Reason.FILE_TOO_LARGE,
                            f"{what}: deflated dataset inflates beyond {limit} bytes")
    if not inflater.eof:
        raise InputRejected(Reason.DICOM_TRUNCATED, f"{what}: deflate stream ends early")
    return out, True


def _is_not_meta(tag: int, vr: str | None, length: int) -> bool:
    return tag >> 16 != 0x0002


@dataclass
class _Parsed:
    dataset: FileDataset
    #: Whether the parse stopped at Pixel Data (header reads only).
    at_pixels: bool
    #: Whether the bytes parsed were the whole dataset.
    whole: bool
    overrun: bool


def _parse(raw: _Bytes, what: str, limits: ParseLimits, *, header_only: bool,
           inflate_limit: int | None = None) -> _Parsed:
    """Parse a Part 10 file from memory after checking its transfer syntax (no pixel decoding).
    ``header_only``: stop before Pixel Data, judge no transfer syntax, and raise _Cut when the
    bytes given end inside the header; a deflated header is inflated to ``inflate_limit``."""
    # CPU time of this thread, not wall time: the cost is the file's, and a busy machine must not
    # refuse a legitimate file (the bytes are in memory, so parsing never waits on I/O).
    deadline = time.thread_time() + limits.max_parse_s
    stream = _TrackedStream(raw.data, limits, deadline, what)
    try:
        preamble = read_preamble(cast(BinaryIO, stream), False)
    except InvalidDicomError as exc:
        raise InputRejected(Reason.NOT_DICOM, f"{what} is not a DICOM Part 10 file") from exc
    try:
        meta = FileMetaDataset(read_dataset(cast(BinaryIO, stream), False, True,
                                            stop_when=_is_not_meta))
        syntax = meta.get("TransferSyntaxUID")
    except (InputRejected, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{what}: file meta: {type(exc).__name__}") from exc
    if stream.overrun:
        raise InputRejected(Reason.DICOM_TRUNCATED, f"{what}: file meta ends early")
    if syntax is None:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{what} has no TransferSyntaxUID")
    syntax = str(syntax).strip("\x00 ")
    deflated = syntax == DeflatedExplicitVRLittleEndian
    if not header_only and syntax not in ALLOWED_TRANSFER_SYNTAXES:
        name = UID(syntax).name if UID(syntax).is_valid else "invalid UID"
        raise InputRejected(Reason.TRANSFER_SYNTAX_UNSUPPORTED,
                            f"{what}: transfer syntax {syntax[:64]} ({name}) is not accepted")
    implicit = syntax == ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian  # retired, still written by old modalities
    whole = raw.whole
    if deflated:
        inflated, whole = _inflate_bounded(raw.data[stream.tell():],
                                           inflate_limit or limits.max_bytes, what,
                                           partial=header_only)
        whole = whole and raw.whole
        stream = _TrackedStream(inflated, limits, deadline, what, stream.elements)
    at_pixels = False

    def stop(tag: int, vr: str | None, length: int) -> bool:
        nonlocal at_pixels
        at_pixels = tag == _PIXEL_DATA
        return at_pixels

    try:
        dataset = read_dataset(cast(BinaryIO, stream), implicit, little,
                               stop_when=stop if header_only else None)
    except (InputRejected, MemoryError):
        raise
    except Exception as exc:
        if header_only and not whole:
            raise _Cut() from exc
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{what}: {type(exc).__name__} while parsing") from exc
    if stream.overrun and not header_only:
        raise InputRejected(Reason.DICOM_TRUNCATED,
                            f"{what}: ends before the element lengths it declares")
    # The filename a pydicom message may quote is the label, never the path.
    return _Parsed(FileDataset(what, dataset, preamble=preamble, file_meta=meta,
                               is_implicit_VR=implicit, is_little_endian=little),
                   at_pixels, whole, stream.overrun)


class _Cut(Exception):
    """A header read's prefix ended inside the header: read more."""


def _check_used_lengths(ds: Dataset, what: str) -> None:
    for keyword in _USED_TAGS:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            continue
        raw = ds.get_item(tag)
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if length is None and isinstance(value, (bytes, str)):
            length = len(value)
        if length is not None and length > MAX_USED_VALUE_BYTES:
            raise InputRejected(Reason.DICOM_UNREADABLE,
                                f"{what}: {keyword} is {length} bytes long")


def _header_int(ds: Dataset, keyword: str, default: int | None, what: str) -> int:
    """A small non-negative integer from the image pixel module, or a precise rejection."""
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise InputRejected(Reason.PIXELS_UNREADABLE, f"{what} has no {keyword}")
        value = default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, f"{what}: {keyword} is not a number") from exc
    if number < 0:
        raise InputRejected(Reason.PIXELS_UNREADABLE, f"{what}: {keyword} is negative")
    return number


def pixel_bytes(ds: Dataset, what: str | Path = "the file") -> int:
    """Bytes the decoded pixel array would take, from the header alone (nothing decoded)."""
    label = what if isinstance(what, str) else "the file"
    rows = _header_int(ds, "Rows", None, label)
    columns = _header_int(ds, "Columns", None, label)
    samples = _header_int(ds, "SamplesPerPixel", 1, label)
    frames = _header_int(ds, "NumberOfFrames", 1, label)
    bits = _header_int(ds, "BitsAllocated", None, label)
    return rows * columns * max(samples, 1) * max(frames, 1) * max(-(-bits // 8), 1)


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
    # Projection radiographs often carry only the detector's spacing (ImagerPixelSpacing).
    spacing = _float_list(ds.get("PixelSpacing")) or _float_list(ds.get("ImagerPixelSpacing"))
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


@dataclass(frozen=True)
class _Header:
    pixel_bytes: int
    photometric: str
    slope: float
    intercept: float
    window_center: float | None
    window_width: float | None
    geometry: Geometry


def _photometric(ds: Dataset) -> str:
    """The photometric interpretation as displayed: a Presentation LUT Shape of INVERSE on a
    MONOCHROME2 image shows its lowest stored value white, as MONOCHROME1 does (on a
    MONOCHROME1 image INVERSE is the pairing the DX module requires, not a second flip)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    inverse = str(ds.get("PresentationLUTShape", "") or "").strip().upper() == "INVERSE"
    return "MONOCHROME1" if inverse and photometric.strip().upper() == "MONOCHROME2" \
        else photometric


def _header(ds: Dataset, what: str) -> _Header:
    """Every header value the worker uses, converted up front: pydicom converts lazily, so a
    damaged element (a corrupt VR, say) raises on first access, and must raise here."""
    try:
        _check_used_lengths(ds, what)
        if "PixelData" not in ds:
            raise InputRejected(Reason.PIXELS_UNREADABLE, f"{what} has no PixelData")
        needed = pixel_bytes(ds, what)
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        return _Header(needed, _photometric(ds), slope, intercept,
                       _first_float(ds.get("WindowCenter")), _first_float(ds.get("WindowWidth")),
                       _geometry(ds))
    except (InputRejected, MemoryError):
        raise
    except Exception as exc:  # NotImplementedError, ValueError, TypeError, ... from pydicom
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{what}: bad header element ({type(exc).__name__})") from exc


def _lenient(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # a header read only chooses files; decoding judges them
        return None


def _summary(parsed: _Parsed, what: str) -> InstanceHeader:
    ds = parsed.dataset
    _check_used_lengths(ds, what)
    rows, cols = _lenient(lambda: int(ds.Rows)), _lenient(lambda: int(ds.Columns))
    frames = _lenient(lambda: int(ds.get("NumberOfFrames", 1) or 1))
    shape = (frames, rows, cols) if None not in (rows, cols, frames) else None
    meta_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    return InstanceHeader(
        sop_class_uid=str(ds.get("SOPClassUID", "") or meta_class).strip("\x00 "),
        has_pixels=parsed.at_pixels or "PixelData" in ds,
        pixel_bytes=_lenient(lambda: pixel_bytes(ds, what)),
        shape=shape,
        geometry=_lenient(lambda: _geometry(ds)) or Geometry(
            modality=str(_lenient(lambda: ds.get("Modality", "")) or "").strip().upper(),
            series_uid=str(_lenient(lambda: ds.get("SeriesInstanceUID", "")) or "")))


def read_header_fd(fd: int, what: str, limits: ParseLimits = ParseLimits()) -> InstanceHeader:
    """The header of an open file, parsed up to Pixel Data: from its first kilobytes, or from
    more (up to the file cap) when the header is longer. The transfer syntax is not judged.

    Raises:
        InputRejected: NOT_DICOM, DICOM_TRUNCATED, DICOM_UNREADABLE, DICOM_TOO_MANY_ELEMENTS,
            DICOM_PARSE_TIMEOUT, FILE_UNREADABLE.
    """
    return _summary(_parsed_header(fd, what, limits), what)


def read_header_dataset_fd(fd: int, what: str,
                           limits: ParseLimits = ParseLimits()) -> FileDataset:
    """The parsed header itself, read as :func:`read_header_fd` reads it (same bounds, same
    reasons): for the hospital-side publisher (services/publisher/scan.py), which reads tags
    the worker does not."""
    return _parsed_header(fd, what, limits).dataset


def _parsed_header(fd: int, what: str, limits: ParseLimits) -> _Parsed:
    raw = _read_fd(fd, limits.max_bytes, what, prefix=HEADER_PREFIX_BYTES)
    parsed: _Parsed | None = None
    try:
        parsed = _parse(raw, what, limits, header_only=True,
                        inflate_limit=min(limits.max_bytes, 4 * HEADER_PREFIX_BYTES))
    except _Cut:
        pass
    except InputRejected as exc:
        if raw.whole or exc.reason in (Reason.DICOM_TOO_MANY_ELEMENTS,
                                       Reason.DICOM_PARSE_TIMEOUT, Reason.NOT_DICOM):
            raise
    if parsed is None or (not parsed.at_pixels and not parsed.whole):
        raw = _read_fd(fd, limits.max_bytes, what, prefix=limits.max_bytes)
        try:
            parsed = _parse(raw, what, limits, header_only=True)
        except _Cut as exc:
            raise InputRejected(Reason.DICOM_TRUNCATED,
                                f"{what}: ends inside its header") from exc
    if parsed.overrun and not parsed.at_pixels:
        raise InputRejected(Reason.DICOM_TRUNCATED,
                            f"{what}: ends before the element lengths it declares")
    return parsed


# --- Decoding ------------------------------------------------------------------------------

def _plain_pixels(ds: Dataset) -> np.ndarray | None:
    """The common case decoded directly: one sample of 8 or 16 bits, uncompressed little
    endian (deflated ones once inflated), exactly Rows x Columns x Frames values.

    pydicom's general decoder costs about a quarter of a CT slice's read; anything else (colour,
    odd bit depths, a PixelData of the wrong length) goes to it and its error messages. Returns
    None when the fast path does not apply.
    """
    bits, samples = ds.get("BitsAllocated"), ds.get("SamplesPerPixel", 1)
    raw = ds.get("PixelData")
    if bits not in (8, 16) or samples != 1 or not isinstance(raw, bytes) \
            or _syntax(ds) not in NATIVE_TRANSFER_SYNTAXES or _syntax(ds) == ExplicitVRBigEndian:
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


def _syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") if meta is not None else "").strip("\x00 ")


def _decoded_values(ds: Dataset) -> int:
    return int(ds.Rows) * int(ds.Columns) * max(int(ds.get("SamplesPerPixel", 1) or 1), 1) \
        * max(int(ds.get("NumberOfFrames", 1) or 1), 1)


#: JPEG start-of-frame markers (every process but DHT/JPG/DAC, which share the range) and
#: JPEG-LS's SOF55: each is followed by length, precision, height, width, components.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
#: Bytes of a frame searched for its dimensions: headers come first and are small.
_CODESTREAM_HEAD = 64 * 1024
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def codestream_geometry(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) a JPEG, JPEG-LS or JPEG 2000 frame declares in its own
    header, or None when it declares none the worker can find. A codestream may claim far
    more pixels than the DICOM header the pixel budget was checked against, and a decoder
    allocates what the codestream says. (RLE has no such header: pydicom decodes it into the
    DICOM header's geometry.)"""
    head = frame[:_CODESTREAM_HEAD]
    # JPEG 2000: SOC + SIZ, at the start or, in a JP2 file some vendors store, after its boxes.
    siz = 0 if head.startswith(_J2K_SOC_SIZ) else (
        head.find(_J2K_SOC_SIZ) if head.startswith(_JP2_SIGNATURE) else -1)
    if siz >= 0 and len(head) >= siz + 42:
        x, y, x0, y0 = (int.from_bytes(head[siz + o:siz + o + 4], "big") for o in (8, 12, 16, 20))
        return max(y - y0, 0), max(x - x0, 0), int.from_bytes(head[siz + 40:siz + 42], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _JPEG_SOF and pos + 10 <= len(head):
            rows = int.from_bytes(head[pos + 5:pos + 7], "big")
            cols = int.from_bytes(head[pos + 7:pos + 9], "big")
            return rows, cols, head[pos + 9]
        pos += 2 + int.from_bytes(head[pos + 2:pos + 4], "big")
    return None


def _check_encapsulated(ds: Dataset, what: str) -> None:
    """Compressed Pixel Data is encapsulated (undefined length, one fragment list); a file
    whose syntax says compressed over plain bytes contradicts itself: a broken sender."""
    if not ds["PixelData"].is_undefined_length:
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{what}: Pixel Data is not encapsulated as its transfer syntax "
                            "requires")


def _check_codestreams(ds: Dataset, what: str) -> None:
    """Every compressed frame declares the header's geometry before a decoder sees it (a JPEG
    whose height is 0 defers it to a DNL marker; a frame without a findable header is left to
    the decoder and the size check after it). A frame that contradicts its header is a broken
    or hostile sender, not an image to redo: a dead letter."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = max(int(ds.get("SamplesPerPixel", 1) or 1), 1)
    frames = max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    for k, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames), 1):
        found = codestream_geometry(frame)
        if found is None:
            continue
        f_rows, f_cols, f_samples = found
        if f_rows not in (0, rows) or f_cols != cols or f_samples != samples:
            raise InputRejected(Reason.DICOM_UNREADABLE,
                                f"{what}: frame {k} declares {f_rows} x {f_cols} x {f_samples}, "
                                f"header {rows} x {cols} x {samples}")


def read_image_fd(fd: int, what: str, limits: ParseLimits = ParseLimits()) -> DicomImage:
    """Read one open DICOM file and decode its pixels, mapping each failure to a Reason.

    Order matters: size cap, then transfer syntax allow-list and a bounded parse, then the
    pixel budget from the header, and only then pixel decoding.
    """
    raw = _read_fd(fd, limits.max_bytes, what)
    ds = _parse(raw, what, limits, header_only=False).dataset
    del raw
    header = _header(ds, what)
    if header.pixel_bytes > limits.max_pixel_bytes:
        raise InputRejected(
            Reason.IMAGE_TOO_LARGE,
            f"{what}: header declares {header.pixel_bytes} pixel bytes > "
            f"{limits.max_pixel_bytes}")
    try:
        pixels = _plain_pixels(ds)
        if pixels is None:
            if _syntax(ds) in COMPRESSED_TRANSFER_SYNTAXES:
                _check_encapsulated(ds, what)
                if _syntax(ds) != RLELossless:
                    _check_codestreams(ds, what)
                ds.pixel_array_options(decoding_plugin=DECODING_PLUGINS[_syntax(ds)])
            pixels = ds.pixel_array
    except (InputRejected, MemoryError):
        raise
    except Exception as exc:  # missing handlers, wrong lengths, corrupt compressed streams
        # pydicom puts the decoder's own words on the last line of its message.
        said = (str(exc).strip().splitlines() or [""])[-1].strip()
        detail = f"{what}: {type(exc).__name__}: {said[:120]}"
        raise InputRejected(Reason.PIXELS_UNREADABLE, detail) from exc
    if not pixels.dtype.isnative:  # big endian: preprocessing expects native order
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    expected = _decoded_values(ds)
    if pixels.size != expected:  # a decoder that ignored the header's geometry
        raise InputRejected(Reason.DICOM_UNREADABLE,
                            f"{what}: pixels decode to {pixels.size} values, header "
                            f"declares {expected}")
    return DicomImage(pixels=pixels, photometric=header.photometric, slope=header.slope,
                      intercept=header.intercept, window_center=header.window_center,
                      window_width=header.window_width, geometry=header.geometry)


def read_image(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
               max_elements: int = DEFAULT_MAX_ELEMENTS,
               max_parse_s: float = DEFAULT_MAX_PARSE_S, what: str = "the file") -> DicomImage:
    """Read the file at ``path`` (not followed if it is a link) and decode its pixels: for
    tools, tests and training, which name files themselves. The worker reads series
    (streams/imaging/series.py)."""
    fd = _open_nofollow(str(path), None, what)
    try:
        return read_image_fd(fd, what, ParseLimits(max_bytes, max_pixel_bytes, max_elements,
                                                   max_parse_s))
    finally:
        os.close(fd)


def read_image_from_uri(uri: str, roots: Sequence[Path], *, max_bytes: int = DEFAULT_MAX_BYTES,
                        max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
                        hospital_id: str | None = None) -> DicomImage:
    """Open the file ``uri`` names under ``roots`` (see open_series_folder) and read it."""
    with open_series_folder(uri, roots, hospital_id=hospital_id) as folder, \
            folder.open(folder.announced, ANNOUNCED) as fd:
        return read_image_fd(fd, ANNOUNCED, ParseLimits(max_bytes, max_pixel_bytes))
