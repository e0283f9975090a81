"""Fuzzing the hospital-side publisher with mutated files that carry PHI in every tag it reads:
building the announcements of a folder never raises and never hangs (a bad file is skipped and
counted by reason), and whatever is announced is valid and carries none of the planted values."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.publisher.cli import build_announcements
from streams.contract.schemas import EventKind, validate
from tests.fuzz.test_fuzz_dicom import _mutate, alarm, edits
from tests.unit.test_announce import CANARIES, KEY, planted_tree

_DIR = Path(tempfile.mkdtemp(prefix="radstream-fuzz-publisher-"))
TEMPLATE = next(planted_tree(_DIR / "template").rglob("*.dcm")).read_bytes()
HANG_S = 10


@settings(settings.get_profile("radstream-fuzz"))
@given(edits, st.none() | st.integers(0, 20_000))
def test_mutated_headers_never_stop_a_run(changes: list[tuple[int, str, int]],
                                          cut: int | None) -> None:
    folder = _DIR / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "1.dcm").write_bytes(_mutate(TEMPLATE, changes, cut))
    with alarm(HANG_S):
        found = build_announcements(folder, root=_DIR / "root", hospital_id="H001",
                                    priority="routine", key=KEY, log=lambda _line: None)
    assert found.stats.files == 1 and found.stats.dicom + found.stats.skipped == 1
    for reason in found.stats.reasons:
        event(reason)
    for announced in found.events:
        event("announced")
        validate(EventKind.STUDY_ANNOUNCED, announced)
        body = orjson.dumps(announced).decode().lower()
        assert not [c for c in CANARIES if c.lower() in body]
