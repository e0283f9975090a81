"""A generated corpus of hostile inputs: broken DICOM files and broken StudyAnnounced events.

Why: hospitals, their integrations and attackers can put anything on the bus or in a shared
folder. Each case names the one reason code the worker must answer with, so the unit tests, the
fuzzers and the end-to-end test (tests/integration/test_hostile_input.py) check the same list.
Everything is derived from a valid phantom study written here; nothing is downloaded. Files stay
small on disk even when they declare gigabytes (a sparse file, a deflate bomb, a header that
declares a huge image).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pydicom
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, JPEG2000Lossless

from services.synth.phantoms.base import Phantom
from services.synth.phantoms.chest_xray import PIXEL_SPACING_MM
from services.synth.series_writer import SeriesHeader, write_instance
from streams.contract import topics
from streams.contract.reasons import Reason
from streams.imaging.preprocess import robust_window

#: The hospital the corpus's announcements name: its files belong under ``<root>/HOSTILE/``.
HOSPITAL_ID = "HOSTILE"
#: Pixel Data (7FE0,0010) tag as it appears in a little-endian stream.
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
#: Patient Name (0010,0010) tag, little endian.
_PATIENT_NAME_TAG = b"\x10\x00\x10\x00"


@dataclass(frozen=True)
class HostileFile:
    """A file the worker may be pointed at, and the reason it must be rejected with."""

    name: str
    path: Path
    reason: Reason
    what: str


@dataclass(frozen=True)
class HostileEvent:
    """A raw record for radiology.studies.v1 and the reason the worker must give for it."""

    name: str
    key: str
    value: bytes
    reason: Reason | None  # None: must be processed normally (e.g. an identical re-announce)
    what: str
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def phantom_dicom(path: Path, *, uid_suffix: str = "1", size: tuple[int, int] = (64, 80),
                  patient_name: str = "SYNTH^HOSTILE", patient_id: str = "SYNTH-HOSTILE",
                  birth_date: str = "19700101", accession: str = "ACCHOSTILE") -> Path:
    """A small valid chest X-ray file (12-bit noise, written by the city's series writer): the
    template every broken file starts from."""
    rng = np.random.default_rng(int(uid_suffix) if uid_suffix.isdigit() else 0)
    pixels = rng.integers(0, 4096, size).astype(np.uint16)
    base = "1.2.826.0.1.3680043.8.498.777"
    phantom = Phantom(pixels=pixels[None], modality="DX", body_part="CHEST",
                      series_description="CHEST PA",
                      pixel_spacing=(PIXEL_SPACING_MM, PIXEL_SPACING_MM),
                      window=robust_window(pixels.astype(np.float32)))
    header = SeriesHeader(study_uid=f"{base}.1.{uid_suffix}", series_uid=f"{base}.2.{uid_suffix}",
                          patient_name=patient_name, patient_id=patient_id,
                          birth_date=birth_date, accession=accession,
                          institution="Synthetic City Hospital H999", station="H999-D01",
                          acquired_at=datetime(2024, 3, 1, 11, 0, tzinfo=UTC))
    return write_instance(path, phantom, header)


def _meta_end(data: bytes) -> int:
    """Offset of the first dataset byte after the file meta group (its group length says)."""
    (group_length,) = struct.unpack_from("<I", data, 132 + 8)
    return 132 + 12 + int(group_length)


def _with_meta(template: Path, transfer_syntax: str, dataset: bytes) -> bytes:
    """Part 10 bytes: the template's preamble and meta with another transfer syntax."""
    ds = pydicom.dcmread(template, stop_before_pixels=True)
    meta = ds.file_meta
    meta.TransferSyntaxUID = UID(transfer_syntax)
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + buffer.getvalue() + dataset


def _explicit_element(tag: tuple[int, int], vr: str, value: bytes) -> bytes:
    group, element = tag
    if vr in ("OB", "OW", "UN", "SQ", "UT", "UC", "UR", "OF", "OD", "OL", "OV"):
        return struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _deflate_bomb(template: Path, inflated_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to ``inflated_bytes``:
    a Pixel Data element of zeros, compressed as a stream so it is never held in memory."""
    head = _explicit_element((0x0028, 0x0010), "US", struct.pack("<H", 8192))
    head += _explicit_element((0x0028, 0x0011), "US", struct.pack("<H", 8192))
    zeros = inflated_bytes - len(head) - 12
    head += struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, zeros)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(head)]
    chunk = bytes(1 << 20)
    left = zeros
    while left > 0:
        parts.append(deflater.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(deflater.flush())
    return _with_meta(template, DeflatedExplicitVRLittleEndian, b"".join(parts))


def tiny_elements(template: Path, dataset_bytes: int, *, deflate: bool = False) -> bytes:
    """A valid file whose dataset is ``dataset_bytes`` long, nearly all of it empty private
    elements of 8 bytes each (distinct tags: millions of them), then the template's own
    elements: cheap to write, costly to parse without an element cap."""
    tail = _dataset_of(template)
    count = max(0, (dataset_bytes - len(tail)) // 8)
    tags = np.arange(count, dtype=np.uint32)
    records = np.zeros(count, dtype=[("group", "<u2"), ("element", "<u2"), ("vr", "S2"),
                                     ("length", "<u2")])
    records["group"] = 0x0009 + 2 * (tags // 0xFFF0)  # odd groups: private, any content
    records["element"] = 0x0010 + tags % 0xFFF0
    records["vr"] = b"LO"
    dataset = records.tobytes() + tail
    if not deflate:
        return _with_meta(template, "1.2.840.10008.1.2.1", dataset)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return _with_meta(template, DeflatedExplicitVRLittleEndian,
                      deflater.compress(dataset) + deflater.flush())


def _dataset_of(template: Path) -> bytes:
    data = template.read_bytes()
    return data[_meta_end(data):]


def deflated_copy(template: Path, out: Path) -> Path:
    """A valid deflated copy of ``template``: deflate itself is accepted, bombs are not."""
    ds = pydicom.dcmread(template)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out


#: What an export folder may hold beside a series' slices, by file name: none of it is an image
#: of the series, and the worker must skip each (streams/imaging/series.py).
EXPORT_EXTRAS = ("README.TXT", "DICOMDIR", "SR000001", "PR000001", "SC000001")


def _non_image(path: Path, sop_class: str, modality: str, series_uid: str, study_uid: str, *,
               jpeg: bool = False) -> Path:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = UID(sop_class), pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study_uid, series_uid, modality
    ds.PatientName = "SYNTH^EXPORT"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit if jpeg \
        else pydicom.uid.ExplicitVRLittleEndian
    if jpeg:  # a screen capture: JPEG the worker does not decode, in a series of its own
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 8, 8, 3, 8
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, 0
        ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_FULL_422", 0
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8not really a jpeg\xff\xd9"])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def export_extras(folder: Path, study_uid: str = "1.2.826.0.1.3680043.8.498.777.1.1") -> None:
    """Write :data:`EXPORT_EXTRAS` into ``folder``, as a PACS viewer's export puts them beside
    the slices: a README, a DICOMDIR, a structured report, a presentation state and a JPEG
    secondary capture (modality OT), each in a series of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.TXT").write_text("Exported by a PACS viewer.\n")
    ds = pydicom.Dataset()
    ds.FileSetID = "EXPORT"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(folder / "DICOMDIR", enforce_file_format=True)
    _non_image(folder / "SR000001", pydicom.uid.ComprehensiveSRStorage, "SR",
               f"{study_uid}.90", study_uid)
    _non_image(folder / "PR000001", pydicom.uid.GrayscaleSoftcopyPresentationStateStorage,
               "PR", f"{study_uid}.91", study_uid)
    _non_image(folder / "SC000001", pydicom.uid.SecondaryCaptureImageStorage, "OT",
               f"{study_uid}.92", study_uid, jpeg=True)


def _codestream_bomb(template: Path) -> bytes:
    """The template re-encapsulated as JPEG 2000 whose one frame is a codestream header (SOC,
    SIZ) claiming 65535 x 65535 pixels: a decoder would allocate what the codestream says, so
    the worker must refuse it before decoding."""
    ds = pydicom.dcmread(template)
    siz = (b"\xff\x4f\xff\x51" + (41).to_bytes(2, "big") + bytes(2)
           + (65535).to_bytes(4, "big") * 2 + bytes(8) + (65535).to_bytes(4, "big") * 2
           + bytes(8) + (1).to_bytes(2, "big") + bytes([15, 1, 1]))
    ds.PixelData = pydicom.encaps.encapsulate([siz + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write_hostile_files(root: Path, outside: Path, *,
                        max_file_bytes: int = 64 * 1024 * 1024) -> list[HostileFile]:
    """Write every hostile file case under ``root`` (plus escape targets under ``outside``).

    ``max_file_bytes`` is the worker's file cap: the oversize case is a sparse file just above
    it and the deflate bomb inflates to four times it.
    """
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    template = phantom_dicom(root / "template.dcm")
    good = template.read_bytes()
    pixel_at = good.rindex(_PIXEL_DATA_TAG)
    cases: list[HostileFile] = []

    def add(name: str, reason: Reason, what: str, data: bytes | None = None) -> Path:
        path = root / f"{name}.dcm"
        if data is not None:
            path.write_bytes(data)
        cases.append(HostileFile(name, path, reason, what))
        return path

    add("not-dicom", Reason.NOT_DICOM, "text, no DICM prefix", b"this is not DICOM\n" * 64)
    add("empty", Reason.NOT_DICOM, "zero bytes", b"")
    add("preamble-only", Reason.NOT_DICOM, "128 bytes of preamble, no prefix", bytes(128))
    add("truncated-meta", Reason.DICOM_TRUNCATED, "cut inside the file meta group", good[:150])
    name_at = good.index(_PATIENT_NAME_TAG, _meta_end(good))
    add("truncated-header", Reason.DICOM_TRUNCATED, "cut inside an element header",
        good[: name_at + 5])
    add("truncated-pixels", Reason.DICOM_TRUNCATED, "cut halfway through Pixel Data",
        good[: pixel_at + 12 + (len(good) - pixel_at - 12) // 2])
    absurd = bytearray(good)
    struct.pack_into("<I", absurd, pixel_at + 8, 0x7FFFFFF0)
    add("absurd-length", Reason.DICOM_TRUNCATED, "Pixel Data declares 2 GiB in a 10 KiB file",
        bytes(absurd))

    huge = pydicom.dcmread(template)
    huge.Rows = huge.Columns = 65535
    huge.NumberOfFrames = 1000
    huge.PixelData = b"\0\0" * 8
    huge.save_as(root / "huge-image.dcm", enforce_file_format=True)
    add("huge-image", Reason.IMAGE_TOO_LARGE,
        "65535 x 65535 x 1000 frames x 16 bits declared by a few-KiB file")

    add("deflate-bomb", Reason.FILE_TOO_LARGE,
        "Deflated Explicit VR LE: ~100 KiB inflating to 4x the file cap",
        _deflate_bomb(template, 4 * max_file_bytes))
    add("tiny-elements", Reason.DICOM_TOO_MANY_ELEMENTS,
        "a file at the cap of nearly all 8-byte empty elements (millions at the default cap)",
        tiny_elements(template, max_file_bytes - 4096))
    add("tiny-elements-deflated", Reason.DICOM_TOO_MANY_ELEMENTS,
        "the same elements deflated: a small file inflating to just under the cap",
        tiny_elements(template, max_file_bytes - 4096, deflate=True))
    add("jpeg2000-not-encapsulated", Reason.DICOM_UNREADABLE,
        "JPEG 2000 Lossless declared over uncompressed Pixel Data",
        _with_meta(template, JPEG2000Lossless, good[_meta_end(good):]))
    add("codestream-bomb", Reason.DICOM_UNREADABLE,
        "a JPEG 2000 frame declaring 65535 x 65535 under a header within the pixel budget",
        _codestream_bomb(template))
    add("video-syntax", Reason.TRANSFER_SYNTAX_UNSUPPORTED,
        "MPEG-4 AVC/H.264 video, not a still image the worker decodes",
        _with_meta(template, "1.2.840.10008.1.2.4.102", good[_meta_end(good):]))
    add("unknown-syntax", Reason.TRANSFER_SYNTAX_UNSUPPORTED, "a transfer syntax UID nobody knows",
        _with_meta(template, "1.2.3.4.5.6.7.8.9", good[_meta_end(good):]))

    sparse = add("oversize", Reason.FILE_TOO_LARGE, "sparse file one byte over the cap")
    with sparse.open("wb") as fh:
        fh.write(good)
        fh.truncate(max_file_bytes + 1)

    escaped = phantom_dicom(outside / "outside.dcm", uid_suffix="2")
    link = root / "symlink-escape.dcm"
    link.unlink(missing_ok=True)
    link.symlink_to(escaped)
    cases.append(HostileFile("symlink-escape", link, Reason.FILE_OUTSIDE_ROOT,
                             "symlink inside the root to a file outside it"))
    fifo = root / "fifo.dcm"
    if not fifo.exists():
        os.mkfifo(fifo)
    cases.append(HostileFile("fifo", fifo, Reason.FILE_MISSING, "a FIFO: reading would block"))
    return cases


def hostile_uris(root: Path, outside: Path) -> list[tuple[str, str, Reason]]:
    """URIs that are bad whatever file they name: (name, uri, reason). ``root`` is the configured
    root; the escapes climb out of it with ``..`` to the file under ``outside``."""
    target = outside / "outside.dcm"
    up = len(root.parts) - 1
    climb, encoded = (str(root) + step * up + str(target) for step in ("/..", "/%2e%2e"))
    return [
        ("dotdot-escape", f"file://{climb}", Reason.FILE_OUTSIDE_ROOT),
        ("encoded-dotdot-escape", f"file://{encoded}", Reason.FILE_OUTSIDE_ROOT),
        ("etc-passwd", "file:///etc/passwd", Reason.FILE_OUTSIDE_ROOT),
        ("missing", f"file://{root}/no-such-file.dcm", Reason.FILE_MISSING),
        # An archive URI is read only from a configured archive (RADSTREAM_ARCHIVE_URLS).
        ("dicomweb-unconfigured", "https://pacs.example/dicom-web/studies/1/series/2",
         Reason.ARCHIVE_NOT_ALLOWED),
    ]


def announcement(study_uid: str, uri: str, *, published_at: str, hospital_id: str = HOSPITAL_ID,
                 series: int = 1) -> dict[str, Any]:
    """A schema-valid StudyAnnounced body that routes to chest-xray and points at ``uri``."""
    return {
        "study_uid": study_uid, "hospital_id": hospital_id, "device_id": "H999-D01",
        "modality": "DX", "body_part": "CHEST", "priority": "routine",
        "acquired_at": published_at, "published_at": published_at, "patient_ref": "ab" * 16,
        "series": [{"series_uid": f"{study_uid}.{i + 1}", "modality": "DX", "body_part": "CHEST",
                    "instance_count": 1, "uri": uri} for i in range(series)],
        "schema_version": "1",
    }


def hostile_events(new_uid: Callable[[], str], good_uri: str, *, published_at: str,
                   later: str, max_event_bytes: int = 1024 * 1024) -> list[HostileEvent]:
    """Broken events, in publishing order. ``good_uri`` names a valid file; ``later`` is a
    second published_at for the identical re-announcement."""
    events: list[HostileEvent] = []

    def raw(name: str, reason: Reason, what: str, value: bytes) -> None:
        events.append(HostileEvent(name, new_uid(), value, reason, what))

    def body(name: str, reason: Reason | None, what: str, change: Callable[[dict[str, Any]], Any],
             headers: list[tuple[str, bytes]] | None = None) -> dict[str, Any]:
        uid = new_uid()
        study = announcement(uid, good_uri, published_at=published_at)
        change(study)
        events.append(HostileEvent(name, uid, orjson.dumps(study), reason, what, headers or []))
        return study

    raw("not-json", Reason.INVALID_JSON, "a broken object", b'{"study_uid": ')
    raw("empty-body", Reason.INVALID_JSON, "zero bytes", b"")
    raw("binary", Reason.INVALID_JSON, "invalid UTF-8", b"\xff\xfe\x00\x81garbage")
    raw("deep-nesting", Reason.INVALID_JSON, "100 000 nested arrays", b"[" * 100_000)
    raw("json-array", Reason.SCHEMA_VIOLATION, "valid JSON, not an object", b"[1, 2, 3]")
    body("missing-field", Reason.SCHEMA_VIOLATION, "no patient_ref",
         lambda s: s.pop("patient_ref"))
    body("wrong-type", Reason.SCHEMA_VIOLATION, "instance_count is a string",
         lambda s: s["series"][0].__setitem__("instance_count", "one"))
    body("bad-enum", Reason.SCHEMA_VIOLATION, "unknown priority",
         lambda s: s.__setitem__("priority", "whenever"))
    body("unknown-field", Reason.SCHEMA_VIOLATION, "a top-level field the contract lacks",
         lambda s: s.__setitem__("patient_ref_plain", "x"))
    body("series-flood", Reason.SCHEMA_VIOLATION, "1001 series (maxItems is 1000)",
         lambda s: s.__setitem__("series", s["series"] * 1001))
    body("instance-flood", Reason.SCHEMA_VIOLATION, "instance_count above its maximum",
         lambda s: s["series"][0].__setitem__("instance_count", 10**9))
    body("version-2", Reason.UNSUPPORTED_VERSION, 'schema_version "2"',
         lambda s: s.__setitem__("schema_version", "2"))
    body("ce-type-v2", Reason.UNSUPPORTED_VERSION, "ce_type header of a v2 announcement",
         lambda s: None, [("ce_type", b"radiology.study.announced.v2")])
    body("ce-type-foreign", Reason.SCHEMA_VIOLATION, "ce_type header of another event",
         lambda s: None, [("ce_type", topics.FINDINGS.event_type.encode())])
    body("oversized", Reason.PAYLOAD_TOO_LARGE, "valid JSON just over the event size cap",
         lambda s: s.__setitem__("extensions", {"pad": "x" * max_event_bytes}))

    first = body("duplicate-first", None, "first announcement of a study: processed",
                 lambda s: None)
    conflicting = {**first, "priority": "emergency", "device_id": "H999-D02"}
    events.append(HostileEvent("duplicate-conflict", first["study_uid"],
                               orjson.dumps(conflicting), Reason.DUPLICATE_CONFLICT,
                               "same study_uid, different body"))
    again = {**first, "published_at": later}
    events.append(HostileEvent("duplicate-identical", first["study_uid"], orjson.dumps(again),
                               None, "same body re-announced later: processed again"))
    return events
