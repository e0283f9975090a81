"""A hospital folder is hostile input too: one bad header never stops a publishing run.

Files the publisher cannot read (a broken deflate stream, a deflate bomb, sequences nested
thousands deep, a flood of data elements, a cut header) are skipped and counted by reason, under
the worker's own parse bounds; a header with an impossible time zone or a date that leaves the
calendar in UTC is still announced, with the publication time as its acquisition time; and the
healthy studies of the same tree are announced as usual.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from services.publisher import cli
from services.publisher.cli import build_announcements
from services.publisher.scan import ScanStats, StudyGroup, read_header, scan_tree
from streams.contract.cloudevents import parse_rfc3339
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate
from streams.imaging.dicom_io import ParseLimits
from tests.unit.test_announce import KEY, write_instance

#: Inflated size of the deflate bomb: four times the worker's file cap.
BOMB_BYTES = 4 * ParseLimits().max_bytes


def _meta_end(data: bytes) -> int:
    """Offset of the first dataset byte after the file meta group (its group length says)."""
    (group_length,) = struct.unpack_from("<I", data, 132 + 8)
    return 132 + 12 + int(group_length)


def _template(folder: Path, name: str, uid: str, **tags: Any) -> Path:
    return write_instance(folder, study_uid=f"1.9.{uid}", series_uid=f"1.9.{uid}.1",
                          sop_uid=f"1.9.{uid}.1.1", folder=folder, name=name, **tags)


def _with_dataset(path: Path, dataset: bytes, *, deflated: bool = False) -> None:
    """Replace the dataset of ``path`` (its file meta kept, its syntax made deflated)."""
    data = path.read_bytes()
    meta = data[:_meta_end(data)]
    if deflated:
        explicit = b"1.2.840.10008.1.2.1\x00"
        assert explicit in meta
        meta = meta.replace(explicit, DeflatedExplicitVRLittleEndian.encode() + b"\x00", 1)
        # The deflated UID is one byte longer than the explicit one padded: fix the lengths.
        meta = _relength_syntax(meta)
    path.write_bytes(meta + dataset)


def _relength_syntax(meta: bytes) -> bytes:
    """Rewrite the TransferSyntaxUID element length and the group length after a swap."""
    tag = b"\x02\x00\x10\x00UI"
    at = meta.index(tag)
    value_start = at + 8
    end = meta.index(b"\x00", value_start) + 1
    value = meta[value_start:end]
    if len(value) % 2:
        value += b"\x00"
    rebuilt = meta[:at + 6] + struct.pack("<H", len(value)) + value + meta[end:]
    group = rebuilt[132 + 12:]
    return rebuilt[:132 + 8] + struct.pack("<I", len(group)) + group


def _dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[_meta_end(data):]


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"SQ", b"OB", b"UN"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _nested_sequences(depth: int) -> bytes:
    """A sequence of one item holding a sequence of one item ... ``depth`` deep (undefined
    lengths, closed by delimiters)."""
    open_ = (struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
             + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF))
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return open_ * depth + close * depth


@cache
def _bomb(inflated: int) -> bytes:
    """A raw deflate stream of a header element and a private OB value of ``inflated`` zeros."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, inflated))]
    chunk = bytes(1 << 20)
    for _ in range(inflated // len(chunk)):
        parts.append(deflater.compress(chunk))
    parts.append(deflater.flush())
    return b"".join(parts)


def write_hostile_headers(folder: Path) -> dict[str, str]:
    """Files whose header the publisher cannot use, each with the reason it must give; the
    names carry no PHI, so tests may look for them in the hospital's local log."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, str] = {}

    good = _template(folder, "broken-deflate.dcm", "1")
    _with_dataset(good, b"\xff" * 256, deflated=True)
    cases[good.name] = str(Reason.DICOM_UNREADABLE)

    bomb = _template(folder, "deflate-bomb.dcm", "2")
    _with_dataset(bomb, _bomb(BOMB_BYTES), deflated=True)
    cases[bomb.name] = str(Reason.FILE_TOO_LARGE)

    deep = _template(folder, "deep-nesting.dcm", "3")
    _with_dataset(deep, _nested_sequences(5000) + _dataset_bytes(deep))
    cases[deep.name] = str(Reason.DICOM_UNREADABLE)

    flood = _template(folder, "element-flood.dcm", "4")
    limit = ParseLimits().max_elements
    _with_dataset(flood, _explicit(0x0009, 0x1002, b"LO", b"") * (limit + 10)
                  + _dataset_bytes(flood))
    cases[flood.name] = str(Reason.DICOM_TOO_MANY_ELEMENTS)

    cut = _template(folder, "cut-header.dcm", "5")
    cut.write_bytes(cut.read_bytes()[:_meta_end(cut.read_bytes()) + 30])
    cases[cut.name] = str(Reason.DICOM_TRUNCATED)
    return cases


def test_each_unusable_header_is_skipped_with_its_reason(tmp_path: Path) -> None:
    cases = write_hostile_headers(tmp_path)
    got: dict[str, str] = {}
    for name in cases:
        with pytest.raises(InputRejected) as info:
            read_header(tmp_path / name)
        got[name] = str(info.value.reason)
        assert "1.9." not in info.value.detail and str(tmp_path) not in info.value.detail
    assert set(got) == set(cases)
    # The exact reason of a bomb depends on where the header parse stops; it is never read whole.
    assert {n: r for n, r in got.items() if n != "deflate-bomb.dcm"} == {
        n: r for n, r in cases.items() if n != "deflate-bomb.dcm"}


def test_a_deflate_bomb_is_never_inflated_past_the_workers_cap(tmp_path: Path) -> None:
    cases = write_hostile_headers(tmp_path)
    assert "deflate-bomb.dcm" in cases
    tracemalloc.start()
    try:
        with pytest.raises(InputRejected):
            read_header(tmp_path / "deflate-bomb.dcm")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the cap (an inflated prefix and its copy), not by what the bomb declares.
    assert peak < 3 * ParseLimits().max_bytes < BOMB_BYTES


def test_one_tree_with_bad_files_still_announces_its_healthy_studies(tmp_path: Path) -> None:
    source = tmp_path / "export"
    for i in range(2):
        write_instance(source, study_uid=f"1.4.{i}", series_uid=f"1.4.{i}.1",
                       sop_uid=f"1.4.{i}.1.1")
    cases = write_hostile_headers(source / "broken")
    lines: list[str] = []
    found = build_announcements(source, root=tmp_path / "root", hospital_id="H001",
                                priority="routine", key=KEY, log=lines.append)
    assert sorted(found.study_uids) == ["1.4.0", "1.4.1"]
    assert found.stats.bad == len(cases) and found.stats.dicom == 2
    assert sum(found.stats.reasons.values()) == len(cases)
    # One local log line per bad file: its place in the hospital's tree and the reason only.
    assert len(lines) == len(cases)
    for name, line in zip(sorted(cases), sorted(lines), strict=True):
        assert line.startswith(f"skipped broken/{name}: ")


@pytest.mark.parametrize(("tags", "what"), [
    ({"TimezoneOffsetFromUTC": "+9900"}, "offset beyond +14:00"),
    ({"TimezoneOffsetFromUTC": "-0075"}, "75 minutes"),
    ({"AcquisitionDateTime": "99991231235959-1200", "StudyDate": "99991231",
      "StudyTime": "235959", "TimezoneOffsetFromUTC": "-1200"}, "year 10000 in UTC"),
    ({"AcquisitionDateTime": "00010101000000+1400", "StudyDate": "00010101",
      "TimezoneOffsetFromUTC": "+1400"}, "year 0 in UTC"),
    ({"AcquisitionDateTime": "20241399", "StudyDate": "20241340"}, "month 13"),
    ({"PatientBirthDate": "99999999", "PatientAge": ""}, "birth date off the calendar"),
])
def test_an_impossible_time_falls_back_and_the_study_is_announced(
        tmp_path: Path, tags: dict[str, Any], what: str) -> None:
    write_instance(tmp_path / "export", study_uid="1.6.1", series_uid="1.6.1.1",
                   sop_uid="1.6.1.1.1", **tags)
    found = build_announcements(tmp_path / "export", root=tmp_path / "root",
                                hospital_id="H001", priority="routine", key=KEY,
                                log=lambda _line: None)
    [event] = found.events
    validate(EventKind.STUDY_ANNOUNCED, event)
    acquired = parse_rfc3339(event["acquired_at"])
    assert acquired.year in (2024, parse_rfc3339(event["published_at"]).year), what


def test_scan_counts_every_file(tmp_path: Path) -> None:
    cases = write_hostile_headers(tmp_path)
    write_instance(tmp_path, study_uid="1.5", series_uid="1.5.1", sop_uid="1.5.1.1")
    stats = ScanStats()
    assert len(list(scan_tree(tmp_path, stats))) == 1
    assert (stats.files, stats.dicom, stats.skipped) == (len(cases) + 1, 1, len(cases))


def test_a_study_that_cannot_be_announced_is_rejected_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a header holds that the announcement builder trips on, the run goes on."""
    source = tmp_path / "export"
    for i in range(3):
        write_instance(source, study_uid=f"1.7.{i}", series_uid=f"1.7.{i}.1",
                       sop_uid=f"1.7.{i}.1.1")
    real = cli.build_announcement

    def fragile(study: StudyGroup, **kwargs: Any) -> dict[str, Any]:
        if study.study_uid == "1.7.1":
            raise UnicodeEncodeError("utf-8", "ZELDA", 0, 1, "planted")
        return real(study, **kwargs)

    monkeypatch.setattr(cli, "build_announcement", fragile)
    lines: list[str] = []
    found = build_announcements(source, root=tmp_path / "root", hospital_id="H001",
                                priority="routine", key=KEY, log=lines.append)
    assert sorted(found.study_uids) == ["1.7.0", "1.7.2"] and found.rejected == 1
    assert lines == ["a study was rejected: its headers could not be announced "
                     "(UnicodeEncodeError)"]
