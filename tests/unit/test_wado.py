"""WADO-RS reading (streams/imaging/wado.py): the archive allow-list and the multipart parser as
pure logic, and the fetch's bounds and reasons against a small real HTTP server on loopback
(the archive's misbehaviours an Orthanc will not produce: slow drips, 503s, redirects, encoded or
malformed answers). The fetch from a real Orthanc is tests/integration/test_wado.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.synth.city import generate_service_studies
from streams.contract.catalog import service
from streams.contract.reasons import InputRejected, Reason
from streams.imaging import wado
from streams.imaging.preparation import ReadLimits, load_and_preprocess
from streams.imaging.wado import (
    ArchiveAccess,
    ArchiveBase,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    multipart_boundary,
    read_archive_series,
    target,
)
from streams.triton.circuit import CircuitBreaker

BASE = "http://127.0.0.1:8042/dicom-web"
ST, SE = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
SERIES = f"{BASE}/studies/{ST}/series/{SE}"


def _reason(call: Callable[[], object]) -> Reason:
    with pytest.raises(InputRejected) as err:
        call()
    return err.value.reason


# --- The allow-list ------------------------------------------------------------------------

def test_a_series_of_a_configured_archive_is_fetched_from_the_url_rebuilt_from_its_parts() -> None:
    bases = (ArchiveBase.parse("http://PACS.example:80/"), ArchiveBase.parse(BASE + "/"))
    got = target(SERIES + "/", bases)
    assert (got.study_uid, got.series_uid) == (ST, SE)
    assert got.url == SERIES
    assert target(f"http://pacs.example/studies/{ST}/series/{SE}", bases).url == \
        f"http://pacs.example:80/studies/{ST}/series/{SE}"


@pytest.mark.parametrize("uri", [
    f"http://10.0.0.7:8042/dicom-web/studies/{ST}/series/{SE}",        # another host
    f"http://127.0.0.1:8043/dicom-web/studies/{ST}/series/{SE}",       # another port
    f"https://127.0.0.1:8042/dicom-web/studies/{ST}/series/{SE}",      # another scheme
    f"http://127.0.0.1/dicom-web/studies/{ST}/series/{SE}",            # default port 80
    f"http://127.0.0.1:8042/other/studies/{ST}/series/{SE}",           # outside the base path
    f"http://127.0.0.1:8042/dicom-web-x/studies/{ST}/series/{SE}",
    f"http://user:pw@127.0.0.1:8042/dicom-web/studies/{ST}/series/{SE}",
    f"http://evil.example#@127.0.0.1:8042/dicom-web/studies/{ST}/series/{SE}",
    f"http://127.0.0.1:8042@evil.example/dicom-web/studies/{ST}/series/{SE}",
    f"{SERIES}?redirect=http://169.254.169.254/",
    f"{SERIES}#frag",
    f"{SERIES}/instances/1.2.3",                                        # not a series
    f"{BASE}/studies/{ST}/series/../../../system",
    f"{BASE}/studies/{ST}/series/1.2%2E3",
    f"{BASE}/studies/{ST}/series/1.2.x",
    f"{BASE}/studies/{ST}/series/" + "1." * 40 + "1",                   # UID over 64 chars
    "http://127.0.0.1:99999/dicom-web/studies/1/series/2",              # bad port
    "ftp://127.0.0.1:8042/dicom-web/studies/1/series/2",
])
def test_anything_else_is_refused_before_any_request(uri: str) -> None:
    bases = (ArchiveBase.parse(BASE),)
    assert _reason(lambda: target(uri, bases)) is Reason.ARCHIVE_NOT_ALLOWED


def test_no_archive_is_allowed_unless_configured() -> None:
    assert _reason(lambda: read_archive_series(SERIES, 1, ArchiveAccess(), max_slices=1)) \
        is Reason.ARCHIVE_NOT_ALLOWED


@pytest.mark.parametrize("bad", ["127.0.0.1:8042", "file:///tmp", "http://u:p@h/", "http://h/?q"])
def test_a_malformed_base_url_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError):
        ArchiveAccess((bad,))


# --- multipart/related ---------------------------------------------------------------------

def body(parts: list[bytes], boundary: bytes = b"b0und", *, close: bool = True,
         headers: bytes = b"Content-Type: application/dicom\r\n") -> bytes:
    out = b"preamble\r\n"
    for part in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n" + part + b"\r\n"
    return out + (b"--" + boundary + b"--\r\nepilogue" if close else b"")


def parse(data: bytes, chunk: int, *, max_part_bytes: int = 1 << 20,
          max_parts: int = 10) -> list[bytes]:
    reader = MultipartReader(b"b0und", max_part_bytes=max_part_bytes, max_parts=max_parts)
    parts: list[bytes] = []
    for i in range(0, len(data), chunk):
        for event in reader.feed(data[i:i + chunk]):
            if isinstance(event, PartStart):
                parts.append(b"")
            elif isinstance(event, PartData):
                parts[-1] += event.data
            else:
                assert isinstance(event, PartEnd) and event.size == len(parts[-1])
    reader.finish()
    return parts


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_parts_come_out_whole_however_the_answer_is_cut(chunk: int) -> None:
    # Payloads holding CRLF, dashes and near-boundaries: only CRLF--boundary delimits.
    parts = [b"DICM" + bytes(range(256)) * 3, b"", b"\r\n--b0un\r\n--b0unx", b"x" * 5000]
    assert parse(body(parts), chunk) == parts


def test_the_boundary_comes_from_the_content_type() -> None:
    assert multipart_boundary(
        'multipart/related; type="application/dicom"; boundary="a:b c"') == b"a:b c"
    assert multipart_boundary("Multipart/Related; boundary=xyz") == b"xyz"
    for bad in [None, "application/dicom", "multipart/related; type=application/json; boundary=x",
                "multipart/related; type=application/dicom", "multipart/mixed; boundary=x",
                "multipart/related; boundary=" + "x" * 71]:
        with pytest.raises(InputRejected) as err:
            multipart_boundary(bad)
        assert err.value.reason is Reason.ARCHIVE_RESPONSE_INVALID


@pytest.mark.parametrize("data", [
    body([b"abc"], close=False),                                  # no closing boundary
    body([b"abc"])[:-20],                                         # cut inside the closing one
    b"no boundary at all" * 10,
    body([b"abc"], headers=b"Content-Type: application/json\r\n"),
    body([b"abc"], headers=b"Content-Type application/dicom\r\n"),
    body([b"abc"], headers=b"X: " + b"y" * 20000 + b"\r\n"),
    b"--b0und junk\r\n\r\nabc\r\n--b0und--",
])
def test_a_malformed_answer_is_archive_response_invalid(data: bytes) -> None:
    assert _reason(lambda: parse(data, 5)) is Reason.ARCHIVE_RESPONSE_INVALID


def test_parts_are_bounded_in_size_and_number_before_their_bytes_are_kept() -> None:
    assert _reason(lambda: parse(body([b"x" * 101]), 7, max_part_bytes=100)) \
        is Reason.FILE_TOO_LARGE
    declared = body([b"x"], headers=b"Content-Type: application/dicom\r\n"
                                    b"Content-Length: 9999999999\r\n")
    assert _reason(lambda: parse(declared, 1 << 20, max_part_bytes=100)) is Reason.FILE_TOO_LARGE
    assert _reason(lambda: parse(body([b"a"] * 4), 3, max_parts=3)) \
        is Reason.ARCHIVE_RESPONSE_INVALID
    assert parse(body([b"x" * 100]), 7, max_part_bytes=100) == [b"x" * 100]


def test_the_preamble_is_bounded() -> None:
    data = b"x" * (wado.MAX_PREAMBLE_BYTES + 10) + body([b"a"])
    assert _reason(lambda: parse(data, 4096)) is Reason.ARCHIVE_RESPONSE_INVALID


# --- The fetch, against a small real server -------------------------------------------------

class Archive:
    """A loopback HTTP server whose answer each test sets; it counts requests."""

    def __init__(self) -> None:
        self.handler: Callable[[BaseHTTPRequestHandler], None] = lambda h: h.send_error(500)
        self.requests = 0
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                archive.requests += 1
                archive.handler(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def series(self) -> str:
        return f"{self.base}/studies/{ST}/series/{SE}"

    def answer(self, data: bytes, *, status: int = 200, boundary: str = "b0und",
               extra: dict[str, str] | None = None) -> None:
        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type",
                          f'multipart/related; type="application/dicom"; boundary={boundary}')
            for k, v in (extra or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        self.handler = handle


@pytest.fixture
def archive() -> Iterator[Archive]:
    a = Archive()
    yield a
    a.server.shutdown()
    a.server.server_close()


@pytest.fixture
def ct_files(tmp_path: Path) -> list[Path]:
    truths = generate_service_studies(tmp_path / "ct", 1, seed=5, service="chest-ct")
    return sorted(truths[0].files)


def access(archive: Archive, **kw: object) -> ArchiveAccess:
    # A fresh breaker class per test: the module keeps one breaker per archive and process.
    class Breaker(CircuitBreaker):
        pass
    return ArchiveAccess((archive.base,), breaker=Breaker, **kw)  # type: ignore[arg-type]


def test_a_series_is_read_from_its_instances_as_a_folder_would_be(
        archive: Archive, ct_files: list[Path]) -> None:
    archive.answer(body([f.read_bytes() for f in ct_files]))
    series = read_archive_series(archive.series, len(ct_files), access(archive), max_slices=512,
                                 modality="CT")
    assert series.pixels.shape[0] == len(ct_files)
    positions = [float(g.position_z or 0) for g in series.geometries]
    assert positions == sorted(positions)  # slice order from the headers, not arrival order
    assert not list(Path(wado.tempfile.gettempdir()).glob("radstream-wado-*"))


def test_the_read_limits_hold_for_fetched_instances(archive: Archive,
                                                    ct_files: list[Path]) -> None:
    archive.answer(body([f.read_bytes() for f in ct_files]))
    one = ct_files[0].stat().st_size
    assert _reason(lambda: read_archive_series(archive.series, len(ct_files), access(archive),
                                               max_slices=512, max_bytes=one - 1)) \
        is Reason.FILE_TOO_LARGE
    assert _reason(lambda: read_archive_series(archive.series, len(ct_files), access(archive),
                                               max_slices=512, max_pixel_bytes=1000)) \
        is Reason.IMAGE_TOO_LARGE
    assert _reason(lambda: read_archive_series(
        archive.series, len(ct_files), access(archive, max_series_bytes=one * 3),
        max_slices=512)) is Reason.FILE_TOO_LARGE


@pytest.mark.parametrize(("status", "reason"), [
    (404, Reason.SERIES_NOT_FOUND), (302, Reason.ARCHIVE_RESPONSE_INVALID),
    (401, Reason.ARCHIVE_RESPONSE_INVALID)])
def test_a_status_is_its_reason_without_retries(archive: Archive, status: int,
                                                reason: Reason) -> None:
    archive.answer(b"", status=status, extra={"Location": "http://169.254.169.254/"})
    assert _reason(lambda: read_archive_series(archive.series, 1, access(archive),
                                               max_slices=1)) is reason
    assert archive.requests == 1


def test_an_empty_series_is_not_found(archive: Archive) -> None:
    archive.answer(body([]))
    assert _reason(lambda: read_archive_series(archive.series, 1, access(archive),
                                               max_slices=1)) is Reason.SERIES_NOT_FOUND


def test_an_encoded_answer_is_refused(archive: Archive) -> None:
    archive.answer(b"\x1f\x8b" + b"\x00" * 100, extra={"Content-Encoding": "gzip"})
    assert _reason(lambda: read_archive_series(archive.series, 1, access(archive),
                                               max_slices=1)) is Reason.ARCHIVE_RESPONSE_INVALID


def test_an_unavailable_archive_is_retried_then_its_circuit_opens(archive: Archive) -> None:
    archive.answer(b"busy", status=503)
    limits = access(archive, attempts=3)
    assert _reason(lambda: read_archive_series(archive.series, 1, limits, max_slices=1)) \
        is Reason.ARCHIVE_UNAVAILABLE
    assert archive.requests == 3  # three failures open the circuit (CircuitBreaker's default)
    assert _reason(lambda: read_archive_series(archive.series, 1, limits, max_slices=1)) \
        is Reason.ARCHIVE_UNAVAILABLE
    assert archive.requests == 3  # failed at once, the archive left alone


def test_a_retry_that_succeeds_reads_the_series(archive: Archive, ct_files: list[Path]) -> None:
    good = body([ct_files[0].read_bytes()])
    calls: list[int] = []

    def flaky(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            h.send_error(502)
            return
        h.send_response(200)
        h.send_header("Content-Type", "multipart/related; type=application/dicom; boundary=b0und")
        h.end_headers()
        h.wfile.write(good)
    archive.handler = flaky
    series = read_archive_series(archive.series, 1, access(archive), max_slices=512)
    assert series.pixels.shape[0] == 1 and len(calls) == 2


def test_a_dripping_archive_meets_the_time_budget(archive: Archive) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "multipart/related; type=application/dicom; boundary=b0und")
        h.end_headers()
        h.wfile.write(b"--b0und\r\nContent-Type: application/dicom\r\n\r\n")
        try:
            for _ in range(100):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass
    archive.handler = drip
    t0 = time.monotonic()
    assert _reason(lambda: read_archive_series(archive.series, 1,
                                               access(archive, timeout_s=1.0), max_slices=1)) \
        is Reason.ARCHIVE_TIMEOUT
    assert time.monotonic() - t0 < 2.5


def test_a_silent_archive_meets_the_time_budget(archive: Archive) -> None:
    archive.handler = lambda h: time.sleep(3)
    t0 = time.monotonic()
    assert _reason(lambda: read_archive_series(archive.series, 1,
                                               access(archive, timeout_s=1.0), max_slices=1)) \
        is Reason.ARCHIVE_TIMEOUT
    assert time.monotonic() - t0 < 2.0


def test_details_name_no_host_or_uid(archive: Archive) -> None:
    secret = f"2.25.{uuid.uuid4().int}"
    with pytest.raises(InputRejected) as err:
        read_archive_series(f"http://pacs.hospital.example/studies/{secret}/series/{secret}", 1,
                            access(archive), max_slices=1)
    assert secret not in err.value.detail and "hospital" not in err.value.detail


def test_the_worker_reads_archive_uris_from_the_archive_and_file_uris_as_before(
        archive: Archive, tmp_path: Path) -> None:
    """load_and_preprocess, the worker's path: an http URI goes to the archive (only when its
    base is configured), a file URI to the file reader, unchanged."""
    truth = generate_service_studies(tmp_path / "H001", 1, seed=11)[0]
    archive.answer(body([truth.files[0].read_bytes()]))
    study = {"study_uid": "2.25.1", "hospital_id": "H001", "device_id": "H001-D01",
             "modality": "DX", "body_part": "CHEST", "priority": "routine",
             "acquired_at": "2024-03-01T11:00:00Z", "published_at": "2024-03-01T11:00:00Z",
             "patient_ref": "ab" * 16,
             "series": [{"series_uid": "2.25.2", "modality": "DX", "body_part": "CHEST",
                         "instance_count": 1, "uri": archive.series}]}
    spec = service("chest-xray")
    closed = ReadLimits((tmp_path,), 64 << 20, 128 << 20)
    assert _reason(lambda: load_and_preprocess(spec, study, closed)) \
        is Reason.ARCHIVE_NOT_ALLOWED
    assert archive.requests == 0
    opened = ReadLimits((tmp_path,), 64 << 20, 128 << 20, archive=access(archive))
    from_archive = load_and_preprocess(spec, study, opened)[0]
    assert archive.requests == 1
    study["series"][0]["uri"] = truth.files[0].as_uri()  # type: ignore[index]
    from_file = load_and_preprocess(spec, study, opened)[0]
    assert archive.requests == 1
    assert (from_archive == from_file).all()
