"""Fuzzing the worker's DICOM reader with mutated valid files: read_image (and the
preprocessing that follows it in the worker) returns a result or raises InputRejected, never
another exception, and never hangs (an alarm per example); and read_series on series folders
holding random extra files of every kind (notes, DICOMDIR, SR, presentation states, JPEG
captures, other series, mutated or cut copies of slices): it reads the announced series or
says precisely why not. Every tensor that leaves preprocessing is finite."""

from __future__ import annotations

import shutil
import signal
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.synth.hostile import EXPORT_EXTRAS, deflated_copy, export_extras, phantom_dicom
from services.synth.phantoms.base import Phantom
from services.synth.series_writer import SeriesHeader, write_series
from streams.contract.catalog import PreprocessSpec
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import read_image
from streams.imaging.preprocess import to_model_input, to_series_input
from streams.imaging.series import read_series

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
    assert tensor.ndim == 3 and np.isfinite(tensor).all()


# --- Series folders with random company -----------------------------------------------------

SERIES_UID = {"CT": "1.2.826.0.1.3680043.8.498.60", "MR": "1.2.826.0.1.3680043.8.498.61",
              "CT2": "1.2.826.0.1.3680043.8.498.62"}
STUDY_UID = "1.2.826.0.1.3680043.8.498.59"


def _written_series(key: str, n: int) -> tuple[list[bytes], np.ndarray]:
    modality = key.rstrip("2")
    pixels = np.random.default_rng(len(key) + n).integers(0, 3000, (n, 10, 8)).astype(np.uint16)
    phantom = Phantom(pixels=pixels, modality=modality, body_part="CHEST",
                      series_description="AXIAL", pixel_spacing=(0.8, 0.8), slice_spacing=3.0)
    header = SeriesHeader(study_uid=STUDY_UID, series_uid=SERIES_UID[key],
                          patient_name="SYNTH^FUZZ", patient_id="F1", birth_date="19700101",
                          accession="A1", institution="Synthetic", station="H001-D01",
                          acquired_at=datetime(2024, 3, 1, tzinfo=UTC))
    files = write_series(_DIR / "series" / key, "H001", phantom, header)
    return [f.read_bytes() for f in files], pixels


ANNOUNCED = _written_series("CT", 4)
OTHER_SERIES = {"CT2": _written_series("CT2", 3)[0], "MR": _written_series("MR", 2)[0]}
export_extras(_DIR / "extras", STUDY_UID)
EXTRAS = {name: (_DIR / "extras" / name).read_bytes() for name in EXPORT_EXTRAS}
#: Extras that are not slices of the announced series: the series must still be read exactly.
BENIGN = [*EXTRAS, "CT2", "MR", "empty", "noise"]
#: Extras made from the announced series' own slices: their own reasons are fair outcomes.
DAMAGED = ["cut-slice", "mutated-slice"]

extras = st.lists(st.sampled_from(BENIGN + DAMAGED), max_size=6)
announced_choice = st.sampled_from(["slice", *EXPORT_EXTRAS])
uid_mode = st.sampled_from(["exact", "keyed", "absent"])


def _fill(folder: Path, chosen: list[str], changes: list[tuple[int, str, int]]) -> None:
    for i, kind in enumerate(chosen):
        name = f"x{i:02d}-{kind}"
        if kind in EXTRAS:
            (folder / name).write_bytes(EXTRAS[kind])
        elif kind in OTHER_SERIES:
            for j, data in enumerate(OTHER_SERIES[kind]):
                (folder / f"{name}-{j}.dcm").write_bytes(data)
        elif kind == "empty":
            (folder / name).write_bytes(b"")
        elif kind == "noise":
            (folder / name).write_bytes(bytes(range(256)) * 3)
        elif kind == "cut-slice":
            data = ANNOUNCED[0][i % len(ANNOUNCED[0])]
            (folder / name).write_bytes(data[: len(data) * (i + 1) // 8])
        else:
            (folder / name).write_bytes(_mutate(ANNOUNCED[0][i % 4], changes, None))


@settings(settings.get_profile("radstream-fuzz"))
@given(extras, announced_choice, uid_mode, edits)
def test_series_folder_with_company(chosen: list[str], named: str, mode: str,
                                    changes: list[tuple[int, str, int]]) -> None:
    root = _DIR / "root"
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "H001" / "study" / "series"
    folder.mkdir(parents=True)
    for j, data in enumerate(ANNOUNCED[0]):
        (folder / f"{j + 1:05d}.dcm").write_bytes(data)
    _fill(folder, chosen, changes)
    if named != "slice":
        (folder / named).write_bytes(EXTRAS[named])
    uri = (folder / ("00001.dcm" if named == "slice" else named)).as_uri()
    series_uid = {"exact": SERIES_UID["CT"], "keyed": "2.25.77", "absent": None}[mode]
    with alarm(HANG_S):
        try:
            series = read_series(uri, 4, [root], max_slices=8, max_bytes=1 << 20,
                                 series_uid=series_uid, modality="CT", hospital_id="H001")
            tensor = to_series_input(series.pixels, PreprocessSpec(size=16, slabs=2),
                                     photometric=series.photometric, slope=series.slope,
                                     intercept=series.intercept,
                                     window_center=series.window_center,
                                     window_width=series.window_width)
        except InputRejected as exc:
            event(exc.reason.value)
            damaged = any(kind in DAMAGED for kind in chosen)
            # Without damaged copies of its slices, the announced series is found whenever the
            # announcement points at it: by its UID, or by naming one of its slices.
            assert damaged or (mode != "exact" and named != "slice"), exc
            if not damaged:  # the named note's own reason, or no way to choose
                assert exc.reason in (Reason.SERIES_AMBIGUOUS, Reason.SERIES_NOT_FOUND,
                                      Reason.NOT_DICOM), exc
            return
    event("read")
    assert np.isfinite(tensor).all()
    assert len({g.series_uid for g in series.geometries}) == 1
    if mode == "exact" or named == "slice":
        chosen_uid = series.geometries[0].series_uid
        assert chosen_uid == SERIES_UID["CT"]
        if not any(kind in DAMAGED for kind in chosen):
            np.testing.assert_array_equal(series.pixels, ANNOUNCED[1])
