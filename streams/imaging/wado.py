"""A study's series fetched from a city archive by DICOMweb WADO-RS, within the file reader's
bounds, then read exactly as a folder of files is (streams/imaging/series.py).

Why so strict: URIs arrive from hospitals over the bus, and a worker that fetched any URL it is
given would reach whatever its network reaches (server-side request forgery). So a URI is
accepted only when it names a series, ``<base>/studies/{study}/series/{series}``, under one of
the configured archive base URLs (RADSTREAM_ARCHIVE_URLS): same scheme, host and port, no user
information, query or fragment, UIDs of digits and dots only. The request goes to a URL rebuilt
from the configured base and the two UIDs, never to the announced string, and redirects are not
followed.

The answer (``multipart/related; type="application/dicom"``) is parsed as it arrives
(:class:`MultipartReader`, pure): each instance is written to a private temporary folder, never
held whole in memory, and refused past the per-file byte cap, the series past its own cap, the
whole fetch (retries included) past its time budget. The folder is then read by
:func:`~streams.imaging.series.read_series`, so the header-first choice of the series'
instances, the element cap, parse deadline, transfer-syntax allow-list and the pixel budget
(checked from the headers before any pixel is decoded) are those of a ``file://`` series.

An archive that does not answer (connection refused, 5xx, 429, a timeout) is retried with
jittered backoff behind a circuit breaker per archive and process, the one the Triton client
uses (streams/triton/circuit.py, given in by the worker: this package may not import that one);
while the circuit is open a study fails at once. Each failure has its reason: archive_not_allowed,
archive_unavailable, archive_timeout, archive_response_invalid, series_not_found (HTTP 404 or an
empty answer), file_too_large.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import urllib3

from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_PARSE_S,
    DEFAULT_MAX_PIXEL_BYTES,
)
from streams.imaging.series import (
    FOLDER_FILES_EXTRA,
    FOLDER_FILES_PER_SLICE,
    DicomSeries,
    read_series,
)

#: Longest fetch of one series, retries and backoff included (a 128 MiB CT series comes from a
#: local archive in about a second).
DEFAULT_TIMEOUT_S = 30.0
#: Requests for one series before the archive is called unavailable.
DEFAULT_ATTEMPTS = 3
#: Largest WADO-RS answer for one series: the pixel budget twice over leaves room for headers,
#: padding and the files of a series the worker will skip.
DEFAULT_MAX_SERIES_BYTES = 2 * DEFAULT_MAX_PIXEL_BYTES
#: What the worker asks for: Part 10 instances in Explicit VR Little Endian, a transfer syntax it
#: decodes itself (an archive holding compressed instances transcodes them).
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
#: Bytes read from the socket at a time.
CHUNK_BYTES = 256 * 1024
#: Largest header block of one part (Orthanc sends about 80 bytes).
MAX_PART_HEADER_BYTES = 16 * 1024
#: Bytes before the first boundary (a preamble is allowed, not a megabyte of one).
MAX_PREAMBLE_BYTES = 64 * 1024
#: Backoff between attempts: full jitter, uniform in [0, min(cap, base * 2**attempt)].
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: HTTP answers that mean "the archive is not keeping up", worth another attempt.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Breaker(Protocol):
    """What the fetch needs of a circuit breaker (streams.triton.circuit.CircuitBreaker)."""

    def wait_s(self, now: float) -> float: ...

    def record_success(self) -> None: ...

    def record_failure(self, now: float) -> None: ...


@dataclass(frozen=True)
class ArchiveBase:
    """One configured DICOMweb base URL, e.g. ``http://127.0.0.1:8042/dicom-web``."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> ArchiveBase:
        """Raises ValueError for anything but ``http(s)://host[:port][/path]``."""
        parts = urlsplit(url.strip())
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"archive base URL must be http(s)://host[:port][/path]: {url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"archive base URL has user, query or fragment: {url!r}")
        return cls(parts.scheme, parts.hostname.lower(),
                   parts.port or _DEFAULT_PORTS[parts.scheme], parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


@dataclass(frozen=True)
class SeriesTarget:
    """An allowed series URI, as the request will be made: the configured base and two UIDs."""

    base: ArchiveBase
    study_uid: str
    series_uid: str

    @property
    def url(self) -> str:
        return f"{self.base.url}/studies/{self.study_uid}/series/{self.series_uid}"


@dataclass(frozen=True)
class ArchiveAccess:
    """Which archives a worker may fetch from, and how much a fetch may cost (streams.settings).
    Pickles into the preparation processes; the breaker factory is a class or a function."""

    bases: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    attempts: int = DEFAULT_ATTEMPTS
    max_series_bytes: int = DEFAULT_MAX_SERIES_BYTES
    #: Makes one breaker per archive in each process; None: no circuit breaker.
    breaker: Callable[[], Breaker] | None = None
    parsed: tuple[ArchiveBase, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", tuple(ArchiveBase.parse(b) for b in self.bases if b))


def is_archive_uri(uri: str) -> bool:
    """Whether ``uri`` is for this module (http or https) rather than the file reader."""
    return uri[:8].lower().startswith(("http://", "https://"))


def target(uri: str, bases: tuple[ArchiveBase, ...]) -> SeriesTarget:
    """The series ``uri`` names under one of ``bases``. Pure.

    Raises:
        InputRejected: ARCHIVE_NOT_ALLOWED for anything else (details name no host or path).
    """
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InputRejected(Reason.ARCHIVE_NOT_ALLOWED, "the URI does not parse") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InputRejected(Reason.ARCHIVE_NOT_ALLOWED, "the URI is not http(s)://host/...")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise InputRejected(Reason.ARCHIVE_NOT_ALLOWED,
                            "the URI carries user information, a query or a fragment")
    host, port = parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]
    path = parts.path.rstrip("/")
    for base in bases:
        if (base.scheme, base.host, base.port) != (scheme, host, port):
            continue
        prefix = base.path + "/studies/"
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        if (len(rest) == 3 and rest[1] == "series" and all(
                len(u) <= 64 and _UID.fullmatch(u) for u in (rest[0], rest[2]))):
            return SeriesTarget(base, rest[0], rest[2])
        raise InputRejected(Reason.ARCHIVE_NOT_ALLOWED,
                            "the URI is not <archive>/studies/{uid}/series/{uid}")
    raise InputRejected(Reason.ARCHIVE_NOT_ALLOWED,
                        "the URI's host is not a configured archive (RADSTREAM_ARCHIVE_URLS)")


# --- multipart/related, parsed as it arrives (pure) ----------------------------------------

def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/related`` answer whose parts are ``application/dicom``.

    Raises:
        InputRejected: ARCHIVE_RESPONSE_INVALID.
    """
    message = Message()
    message["content-type"] = content_type or ""
    kind = message.get_param("type")
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/related" or not isinstance(boundary, str) \
            or (kind is not None and str(kind).lower() != "application/dicom"):
        shown = (content_type or "none")[:80]
        raise InputRejected(Reason.ARCHIVE_RESPONSE_INVALID,
                            f"answer is {shown!r}, not multipart/related of application/dicom")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise InputRejected(Reason.ARCHIVE_RESPONSE_INVALID, "multipart boundary is malformed")
    return boundary.encode("ascii")


@dataclass(frozen=True)
class PartStart:
    """A part begins; its headers, names lower-cased."""

    index: int
    headers: dict[str, str]


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    size: int


Event = PartStart | PartData | PartEnd


def _invalid(detail: str) -> InputRejected:
    return InputRejected(Reason.ARCHIVE_RESPONSE_INVALID, f"multipart answer: {detail}")


class MultipartReader:
    """RFC 2046 multipart body parser fed chunk by chunk; it holds at most a chunk and a
    delimiter, whatever the sizes of the parts. Each part must be ``application/dicom`` and at
    most ``max_part_bytes`` (FILE_TOO_LARGE, before its bytes are read when it declares a
    Content-Length); there may be at most ``max_parts``."""

    def __init__(self, boundary: bytes, *, max_part_bytes: int, max_parts: int) -> None:
        # The stream is read as if it began with CRLF, so every delimiter is CRLF--boundary.
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b"\r\n"
        self._state = "preamble"
        self._skipped = 0
        self._max_part_bytes = max_part_bytes
        self._max_parts = max_parts
        self.parts = 0
        self._size = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes. Raises InputRejected (see the class docstring)."""
        if self._state == "done":
            return []  # the epilogue is ignored
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> None:
        """The body has ended: it must have ended with the closing delimiter."""
        if self._state != "done":
            raise _invalid("ends before its closing boundary")

    def _step(self, events: list[Event]) -> bool:
        """Advance one state if the buffer allows; whether it did."""
        buf, delim = self._buffer, self._delimiter
        if self._state in ("preamble", "body"):
            at = buf.find(delim)
            if at < 0:
                keep = len(delim) - 1  # a delimiter may straddle this chunk and the next
                if len(buf) > keep:
                    self._take(buf[:-keep], events)
                    self._buffer = buf[-keep:]
                return False
            self._take(buf[:at], events)
            if self._state == "body":
                events.append(PartEnd(self._size))
            self._buffer = buf[at + len(delim):]
            self._state = "delimiter"
            return True
        if self._state == "delimiter":
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state, self._buffer = "done", b""
                return False
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > 256:
                    raise _invalid("boundary line does not end")
                return False
            if buf[:end].strip(b" \t"):
                raise _invalid("text after a boundary")
            self.parts += 1
            if self.parts > self._max_parts:
                raise InputRejected(Reason.ARCHIVE_RESPONSE_INVALID,
                                    f"the series answer has more than {self._max_parts} parts")
            self._buffer, self._state = buf[end + 2:], "headers"
            return True
        if self._state == "headers":
            if buf.startswith(b"\r\n"):
                block, rest = b"", buf[2:]
            else:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_PART_HEADER_BYTES:
                        raise _invalid(f"part {self.parts} has more than "
                                       f"{MAX_PART_HEADER_BYTES} bytes of headers")
                    return False
                block, rest = buf[:end], buf[end + 4:]
            events.append(PartStart(self.parts, self._headers(block)))
            self._buffer, self._state, self._size = rest, "body", 0
            return True
        return False

    def _headers(self, block: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in block.split(b"\r\n") if block else []:
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name.strip():
                raise _invalid(f"part {self.parts} has a malformed header line")
            headers[name.strip().lower()] = value.strip()
        message = Message()
        message["content-type"] = headers.get("content-type", "")
        if message.get_content_type() != "application/dicom":
            raise _invalid(f"part {self.parts} is not application/dicom")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_part_bytes:
            raise InputRejected(Reason.FILE_TOO_LARGE,
                                f"instance {self.parts} of the series declares {declared} "
                                f"bytes > {self._max_part_bytes}")
        return headers

    def _take(self, data: bytes, events: list[Event]) -> None:
        if not data:
            return
        if self._state == "preamble":
            self._skipped += len(data)
            if self._skipped > MAX_PREAMBLE_BYTES:
                raise _invalid("no boundary in its first bytes")
            return
        self._size += len(data)
        if self._size > self._max_part_bytes:
            raise InputRejected(Reason.FILE_TOO_LARGE,
                                f"instance {self.parts} of the series is more than "
                                f"{self._max_part_bytes} bytes")
        events.append(PartData(data))


# --- The fetch (I/O) ----------------------------------------------------------------------

# One connection pool and one breaker per archive in each process: preparation processes live
# as long as the worker, so connections are reused and the breaker remembers across studies.
_lock = threading.Lock()
_http: urllib3.PoolManager | None = None
_breakers: dict[ArchiveBase, Breaker] = {}


def _pool() -> urllib3.PoolManager:
    global _http
    with _lock:
        if _http is None:
            _http = urllib3.PoolManager(num_pools=8, maxsize=4, retries=False)
        return _http


def _breaker(access: ArchiveAccess, base: ArchiveBase) -> Breaker | None:
    if access.breaker is None:
        return None
    with _lock:
        if base not in _breakers:
            _breakers[base] = access.breaker()
        return _breakers[base]


class _Unavailable(Exception):
    """One attempt failed in a way another attempt may not."""


def backoff_s(attempt: int, rand: Callable[[], float] = random.random) -> float:
    return rand() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** attempt))


def fetch_series(tgt: SeriesTarget, folder: Path, access: ArchiveAccess, *,
                 max_part_bytes: int, max_parts: int) -> int:
    """Write the series' instances into ``folder`` (one file each); their count.

    Raises:
        InputRejected: ARCHIVE_UNAVAILABLE, ARCHIVE_TIMEOUT, ARCHIVE_RESPONSE_INVALID,
            SERIES_NOT_FOUND, FILE_TOO_LARGE.
    """
    deadline = time.monotonic() + access.timeout_s
    breaker = _breaker(access, tgt.base)
    last, tried = "no attempt", 0
    for attempt in range(max(1, access.attempts)):
        if attempt:
            pause = backoff_s(attempt - 1)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        if breaker is not None and breaker.wait_s(time.monotonic()) > 0:
            raise InputRejected(Reason.ARCHIVE_UNAVAILABLE,
                                "the archive's circuit is open: it failed repeatedly"
                                + (f" ({last})" if attempt else ""))
        tried += 1
        try:
            count = _attempt(tgt, folder, deadline, max_part_bytes=max_part_bytes,
                             max_parts=max_parts, max_series_bytes=access.max_series_bytes)
        except _Unavailable as exc:
            last = str(exc)
            if breaker is not None:
                breaker.record_failure(time.monotonic())
            for leftover in folder.iterdir():  # a partial answer is not kept
                leftover.unlink()
            continue
        except InputRejected as exc:
            if breaker is not None and exc.reason is Reason.ARCHIVE_TIMEOUT:
                breaker.record_failure(time.monotonic())
            elif breaker is not None:
                breaker.record_success()  # the archive answered; the answer was bad
            raise
        if breaker is not None:
            breaker.record_success()
        return count
    if time.monotonic() >= deadline - 0.05:
        raise InputRejected(Reason.ARCHIVE_TIMEOUT,
                            f"the series was not fetched within {access.timeout_s:g} s ({last})")
    raise InputRejected(Reason.ARCHIVE_UNAVAILABLE,
                        f"the archive did not answer in {tried} attempts ({last})")


def _attempt(tgt: SeriesTarget, folder: Path, deadline: float, *, max_part_bytes: int,
             max_parts: int, max_series_bytes: int) -> int:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise InputRejected(Reason.ARCHIVE_TIMEOUT, "no time left to fetch the series")
    try:
        response = _pool().request(
            "GET", tgt.url, headers={"Accept": ACCEPT, "Accept-Encoding": "identity"},
            preload_content=False, redirect=False, retries=False,
            timeout=urllib3.Timeout(connect=min(remaining, 5.0), read=remaining))
    except urllib3.exceptions.HTTPError as exc:
        raise _Unavailable(type(exc).__name__) from exc
    try:
        return _receive(response, folder, deadline, max_part_bytes=max_part_bytes,
                        max_parts=max_parts, max_series_bytes=max_series_bytes)
    finally:
        response.close()  # an answer cut short must not be reused: the socket goes
        response.release_conn()


def _receive(response: urllib3.BaseHTTPResponse, folder: Path, deadline: float, *,
             max_part_bytes: int, max_parts: int, max_series_bytes: int) -> int:
    status = response.status
    if status == 404:
        raise InputRejected(Reason.SERIES_NOT_FOUND, "the archive has no such series (HTTP 404)")
    if status in _RETRY_STATUSES:
        raise _Unavailable(f"HTTP {status}")
    if status != 200:
        raise InputRejected(Reason.ARCHIVE_RESPONSE_INVALID,
                            f"the archive answered HTTP {status}"
                            + (" (redirects are not followed)" if 300 <= status < 400 else ""))
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise InputRejected(Reason.ARCHIVE_RESPONSE_INVALID,
                            "the answer is content-encoded although identity was asked for")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_series_bytes:
        raise InputRejected(Reason.FILE_TOO_LARGE, f"the series answer declares {declared} "
                                                   f"bytes > {max_series_bytes}")
    reader = MultipartReader(multipart_boundary(response.headers.get("Content-Type")),
                             max_part_bytes=max_part_bytes, max_parts=max_parts)
    received = 0
    fd: int | None = None
    try:
        while True:
            if time.monotonic() > deadline:
                raise InputRejected(Reason.ARCHIVE_TIMEOUT,
                                    f"the series answer was still arriving after its "
                                    f"time budget ({received} bytes)")
            try:
                # read1: whatever one socket read gives, so the deadline is checked between
                # reads even when the archive sends a byte at a time.
                chunk = response.read1(CHUNK_BYTES, decode_content=False)
            except urllib3.exceptions.HTTPError as exc:
                if time.monotonic() > deadline or "timed out" in str(exc).lower():
                    raise InputRejected(Reason.ARCHIVE_TIMEOUT,
                                        "the archive stopped sending within the time "
                                        "budget") from exc
                raise _Unavailable(f"answer cut: {type(exc).__name__}") from exc
            if not chunk:
                break
            received += len(chunk)
            if received > max_series_bytes:
                raise InputRejected(Reason.FILE_TOO_LARGE,
                                    f"the series answer is more than {max_series_bytes} bytes")
            for event in reader.feed(chunk):
                if isinstance(event, PartStart):
                    fd = os.open(folder / f"{event.index:06d}.dcm",
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                elif isinstance(event, PartData):
                    assert fd is not None
                    os.write(fd, event.data)
                else:
                    assert fd is not None
                    os.close(fd)
                    fd = None
            if reader.done:
                break
    finally:
        if fd is not None:
            os.close(fd)
    reader.finish()
    return reader.parts


def read_archive_series(uri: str, instance_count: int, access: ArchiveAccess, *,
                        max_slices: int, max_bytes: int = DEFAULT_MAX_BYTES,
                        max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
                        max_elements: int = DEFAULT_MAX_ELEMENTS,
                        max_parse_s: float = DEFAULT_MAX_PARSE_S,
                        modality: str | None = None) -> DicomSeries:
    """The series a WADO-RS ``uri`` names, fetched (see the module docstring) and read as
    :func:`~streams.imaging.series.read_series` reads a folder, with the same limits. The
    series chosen in it is the URI's: the archive's own UIDs, which its headers carry (an
    announcement's ``series_uid`` may be a keyed one).

    Raises:
        InputRejected: ARCHIVE_NOT_ALLOWED before any request; the reasons of fetch_series;
            then those of read_series.
    """
    tgt = target(uri, access.parsed)
    if instance_count > max_slices:
        raise InputRejected(Reason.GEOMETRY_IMPLAUSIBLE,
                            f"{instance_count} instances announced > {max_slices} for this service")
    folder = Path(tempfile.mkdtemp(prefix="radstream-wado-"))
    try:
        count = fetch_series(tgt, folder, access, max_part_bytes=max_bytes,
                             max_parts=FOLDER_FILES_PER_SLICE * max_slices + FOLDER_FILES_EXTRA)
        if count == 0:
            raise InputRejected(Reason.SERIES_NOT_FOUND, "the archive answered no instance")
        first = min(folder.iterdir())
        return read_series(first.as_uri(), instance_count, (folder,), max_slices=max_slices,
                           max_bytes=max_bytes, max_pixel_bytes=max_pixel_bytes,
                           max_elements=max_elements, max_parse_s=max_parse_s,
                           series_uid=tgt.series_uid, modality=modality)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
