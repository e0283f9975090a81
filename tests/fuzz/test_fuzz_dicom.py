"""Fuzzing the worker's DICOM reader with mutated valid files: read_image (and the
preprocessing that follows it in the worker) returns a result or raises InputRejected, never
another exception, and never hangs (an alarm per example)."""

from __future__ import annotations

import signal
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.synth.hostile import deflated_copy, phantom_dicom
from streams.contract.reasons import InputRejected
from streams.imaging.dicom_io import read_image
from streams.imaging.preprocess import to_model_input

_DIR = Path(tempfile.mkdtemp(prefix="radstream-fuzz-"))
TEMPLATES = [
    phantom_dicom(_DIR / "plain.dcm", size=(16, 12)).read_bytes(),
    deflated_copy(phantom_dicom(_DIR / "d.dcm", size=(16, 12)), _DIR / "deflated.dcm").read_bytes(),
]
#: Per-example limit: parsing a 10 KiB file takes milliseconds, so this only trips on a hang.
HANG_S = 10


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"read_image still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


edits = st.lists(st.tuples(st.integers(0, 20_000), st.sampled_from(["byte", "u32", "u16"]),
                           st.integers(0, 2**32 - 1)), min_size=1, max_size=8)


def _mutate(data: bytes, changes: list[tuple[int, str, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for offset, kind, value in changes:
        at = offset % len(out)
        if kind == "byte":
            out[at] = value & 0xFF
        elif kind == "u16" and at + 2 <= len(out):
            struct.pack_into("<H", out, at, value & 0xFFFF)
        elif kind == "u32" and at + 4 <= len(out):  # lengths, Rows/Columns pairs, tags
            struct.pack_into("<I", out, at, value)
    return bytes(out[:cut] if cut is not None else out)


@settings(settings.get_profile("radstream-fuzz"))
@given(st.sampled_from(range(len(TEMPLATES))), edits, st.none() | st.integers(0, 20_000))
def test_mutated_dicom(template: int, changes: list[tuple[int, str, int]],
                       cut: int | None) -> None:
    path = _DIR / "case.dcm"
    path.write_bytes(_mutate(TEMPLATES[template], changes, cut))
    with alarm(HANG_S):
        try:
            image = read_image(path, max_bytes=1024 * 1024, max_pixel_bytes=16 * 1024 * 1024)
            tensor = to_model_input(image.pixels, photometric=image.photometric,
                                    slope=image.slope, intercept=image.intercept,
                                    window_center=image.window_center,
                                    window_width=image.window_width)
        except InputRejected as exc:
            event(exc.reason.value)  # shown by --hypothesis-show-statistics
            return
    event("read")
    assert tensor.ndim == 3
