"""Staging: each announced series lies under <root>/<hospital_id>/<keyed study>/<keyed series>/
with position names, hard-linked (copied when linking fails), idempotently, and where the
worker's own resolver accepts it for that hospital (the demo's announcements included)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.demo.city import announcements
from services.publisher import stage
from services.publisher.cli import build_announcements, stage_announcements
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import ScanStats, scan_tree
from services.synth.city import CityModel, Load, generate_city
from streams.imaging.dicom_io import resolve_uri
from tests.unit.test_announce import KEY, write_instance


def _series(source: Path, study: str, n: int) -> None:
    for number in range(n, 0, -1):
        write_instance(source, study_uid=study, series_uid=f"{study}.1",
                       sop_uid=f"{study}.1.{number}", number=number)


def _staged(root: Path, source: Path) -> tuple[dict[str, str], list[Path]]:
    found = stage_announcements(build_announcements(
        source, root=root, hospital_id="H001", priority="routine", key=KEY,
        log=lambda _line: None), root, log=lambda _line: None)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return found.study_uids, files


def test_staging_twice_changes_nothing(tmp_path: Path) -> None:
    source, root = tmp_path / "export", tmp_path / "root"
    _series(source, "1.3.1", 3)
    uids, files = _staged(root, source)
    inodes = [p.stat().st_ino for p in files]
    again, files_again = _staged(root, source)
    assert again == uids and files_again == files
    assert [p.stat().st_ino for p in files_again] == inodes
    [keyed] = uids.values()
    assert all(p.is_relative_to(root / "H001" / keyed) for p in files)
    names = sorted(p.name for p in files if p.suffix == ".dcm")
    assert names == ["00001.dcm", "00002.dcm", "00003.dcm"]


def test_a_series_that_changes_is_brought_up_to_date(tmp_path: Path) -> None:
    source, root = tmp_path / "export", tmp_path / "root"
    _series(source, "1.3.2", 3)
    _staged(root, source)
    # The last instance goes away at the hospital, then a new first one arrives.
    next(source.rglob("3.dcm")).unlink()
    write_instance(source, study_uid="1.3.2", series_uid="1.3.2.1", sop_uid="1.3.2.1.0",
                   number=0)
    _, files = _staged(root, source)
    dcm = [p for p in files if p.suffix == ".dcm"]
    assert [p.name for p in dcm] == ["00001.dcm", "00002.dcm", "00003.dcm"]
    first = next(p for p in source.rglob("*.dcm") if p.name == "0.dcm")
    assert os.path.samefile(dcm[0], first)
    # A series that shrinks loses its stale staged files.
    next(source.rglob("2.dcm")).unlink()
    _, files = _staged(root, source)
    assert [p.name for p in files if p.suffix == ".dcm"] == ["00001.dcm", "00002.dcm"]


def test_staging_copies_when_it_cannot_link(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source, root = tmp_path / "export", tmp_path / "root"
    _series(source, "1.3.3", 2)

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(stage.os, "link", no_links)
    _, files = _staged(root, source)
    dcm = [p for p in files if p.suffix == ".dcm"]
    assert len(dcm) == 2
    originals = sorted(source.rglob("*.dcm"), key=lambda p: int(p.stem))
    for copy, original in zip(dcm, originals, strict=True):
        assert not os.path.samefile(copy, original)
        assert copy.read_bytes() == original.read_bytes()
    # Copies already in place are kept as they are on the next run.
    before = [p.stat().st_ino for p in dcm]
    _staged(root, source)
    assert [p.stat().st_ino for p in dcm] == before


def test_a_tree_holding_its_staged_copies_is_not_announced_twice(tmp_path: Path) -> None:
    """Publishing <root>/<hospital>/ itself (the folder staging writes into) is safe."""
    root = tmp_path / "root"
    source = root / "H001"
    _series(source / "incoming", "1.3.4", 2)
    first, _ = _staged(root, source)
    stats = ScanStats()
    assert len(list(scan_tree(source, stats))) == 2 and stats.files == 2
    again, _ = _staged(root, source)
    assert again == first


def test_demo_announcements_are_staged_where_the_worker_reads_them(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    out = root / "city"
    truths = generate_city(out, 12, seed=11, model=CityModel(hospitals=3, devices=12),
                           load=Load(rate_per_s=10.0), defect_rate=0.0,
                           not_applicable_rate=0.0)
    events, keyed = announcements(out, truths, Pseudonymizer(KEY), root)
    assert [t.study_uid for t in keyed] == [e["study_uid"] for _, e in events]
    for (_, event), truth, original in zip(events, keyed, truths, strict=True):
        assert event["study_uid"] != original.study_uid
        assert (event["hospital_id"], event["device_id"]) == (truth.hospital_id, truth.device_id)
        for series in event["series"]:
            path = resolve_uri(series["uri"], [root], hospital_id=event["hospital_id"])
            assert path.is_relative_to(root.resolve() / event["hospital_id"])
            assert len(list(path.parent.glob("*.dcm"))) == series["instance_count"]
