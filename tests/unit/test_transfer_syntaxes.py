"""Every common transfer syntax decodes through the worker's read path (streams/imaging/dicom_io)
to the original pixels: lossless ones exactly, lossy ones within the tolerance stated below; the
pixel budget is still judged from the header before decoding, a codestream that declares another
geometry than its header is refused as dicom_unreadable before it is decoded, a corrupt frame is
pixels_unreadable, and video syntaxes stay transfer_syntax_unsupported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from services.synth.compressed import JPEG_LS_NEAR, SYNTAXES, recompress
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.dicom_io import (
    ALLOWED_TRANSFER_SYNTAXES,
    codestream_geometry,
    read_image,
)

#: Lossy tolerances, per syntax: (largest absolute error as a fraction of the stored range,
#: lowest PSNR in dB over that range). Measured on these phantoms: JPEG quality 90, 0.067 and
#: 43.2 dB (8-bit); JPEG 2000 at ratio 10, at most 0.024 and at least 43.8 dB (8, 12, 16-bit).
#: JPEG-LS near-lossless is bounded by its NEAR parameter.
LOSSY_TOLERANCE = {
    "jpeg-baseline": (0.08, 40.0),
    "jpeg-extended": (0.08, 40.0),
    "jpeg2000": (0.04, 42.0),
}
ROWS, COLUMNS = 96, 128


def _phantom(bits: int) -> np.ndarray:
    """A radiograph-like image over the whole stored range: a gradient, a bright disc, a dark
    bar and a little noise (lossy codecs must keep the edges, lossless ones every value)."""
    rng = np.random.default_rng(bits)
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    image = 0.2 + 0.5 * xx / COLUMNS
    image = image + 0.25 * (((yy - 48) ** 2 + (xx - 64) ** 2) < 30 ** 2)
    image[40:50, 10:120] = 0.05
    top = (1 << bits) - 1
    image = image * top + rng.normal(0, top * 0.005, image.shape)
    return np.clip(np.rint(image), 0, top).astype(np.uint8 if bits <= 8 else np.uint16)


def _write_original(path: Path, pixels: np.ndarray, bits: int) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")  # DX, presentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


CASES = [(name, bits) for name, syntax in SYNTAXES.items() for bits in (8, 12, 16)
         if bits <= syntax.max_bits]


@pytest.mark.parametrize(("name", "bits"), CASES, ids=[f"{n}-{b}bit" for n, b in CASES])
def test_syntax_decodes_to_the_original(tmp_path: Path, name: str, bits: int) -> None:
    syntax = SYNTAXES[name]
    original = _phantom(bits)
    src = _write_original(tmp_path / "original.dcm", original, bits)
    dst = recompress(src, tmp_path / f"{name}.dcm", syntax.uid)
    assert pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax.uid
    assert syntax.uid in ALLOWED_TRANSFER_SYNTAXES

    decoded = read_image(dst).pixels

    assert decoded.shape == original.shape and decoded.dtype.isnative
    error = np.abs(decoded.astype(np.int64) - original.astype(np.int64))
    if not syntax.lossy:
        assert error.max() == 0
        return
    top = (1 << bits) - 1
    if name == "jpeg-ls-near":
        assert 0 < error.max() <= JPEG_LS_NEAR
        return
    max_fraction, min_psnr = LOSSY_TOLERANCE[name]
    mse = float(np.mean(error.astype(np.float64) ** 2))
    psnr = 10 * np.log10(top ** 2 / mse)
    assert error.max() > 0, "a lossy syntax that lost nothing was not exercised"
    assert error.max() <= max_fraction * top and psnr >= min_psnr, (error.max(), psnr)


def test_pixel_budget_is_judged_before_a_compressed_frame_is_decoded(tmp_path: Path) -> None:
    src = _write_original(tmp_path / "original.dcm", _phantom(16), 16)
    dst = recompress(src, tmp_path / "j2k.dcm", SYNTAXES["jpeg2000-lossless"].uid)
    with pytest.raises(InputRejected) as caught:
        read_image(dst, max_pixel_bytes=ROWS * COLUMNS * 2 - 1)
    assert caught.value.reason is Reason.IMAGE_TOO_LARGE


def test_a_codestream_larger_than_its_header_is_refused_before_decoding(tmp_path: Path) -> None:
    """A few-KiB JPEG 2000 frame whose own header claims 65535 x 65535 under a DICOM header of
    96 x 128 (which passes the pixel budget) is refused without being decoded."""
    src = _write_original(tmp_path / "original.dcm", _phantom(16), 16)
    dst = recompress(src, tmp_path / "j2k.dcm", JPEG2000Lossless)
    ds = pydicom.dcmread(dst)
    frame = bytearray(pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1))
    siz = frame.find(b"\xff\x4f\xff\x51")
    assert codestream_geometry(bytes(frame)) == (ROWS, COLUMNS, 1)
    frame[siz + 8:siz + 16] = (65535).to_bytes(4, "big") * 2
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(dst, enforce_file_format=True)
    with pytest.raises(InputRejected) as caught:
        read_image(dst)
    assert caught.value.reason is Reason.DICOM_UNREADABLE
    assert "65535 x 65535" in caught.value.detail


@pytest.mark.parametrize("name", ["jpeg-baseline", "jpeg-lossless", "jpeg-ls", "jpeg2000", "rle"])
def test_a_frame_without_its_scan_is_pixels_unreadable(tmp_path: Path, name: str) -> None:
    src = _write_original(tmp_path / "original.dcm", _phantom(8), 8)
    dst = recompress(src, tmp_path / f"{name}.dcm", SYNTAXES[name].uid)
    ds = pydicom.dcmread(dst)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])  # start and end of image, nothing else
    ds.save_as(dst, enforce_file_format=True)
    with pytest.raises(InputRejected) as caught:
        read_image(dst)
    assert caught.value.reason is Reason.PIXELS_UNREADABLE


#: Byte-level mutations per syntax in the crash test below: a few hundred each in well under
#: a minute; GDCM's decoders aborted the process within the first hundred JPEG ones.
MUTATIONS = 120
MUTATED_SYNTAXES = ("jpeg-baseline", "jpeg-extended", "jpeg-lossless", "jpeg-lossless-sv1",
                    "jpeg-ls", "jpeg-ls-near", "jpeg2000-lossless", "jpeg2000", "rle")


def decode_mutations(folder: str, seed: int = 16) -> dict[str, int]:
    """Decode MUTATIONS randomly damaged frames of each compressed syntax through read_image:
    run in a child process by the test below, since a decoder that crashes takes its process
    with it. Returns how often each outcome happened."""
    import random

    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    tmp = Path(folder)
    for name in MUTATED_SYNTAXES:
        bits = min(12, SYNTAXES[name].max_bits)
        src = _write_original(tmp / "original.dcm", _phantom(bits), bits)
        ds = pydicom.dcmread(recompress(src, tmp / f"{name}.dcm", SYNTAXES[name].uid))
        frame = pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1)
        for _ in range(MUTATIONS):
            damaged = bytearray(frame)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            if rng.random() < 0.2:
                damaged = damaged[:max(2, rng.randrange(len(damaged)))]
            ds.PixelData = encapsulate([bytes(damaged)])
            ds.save_as(tmp / "damaged.dcm", enforce_file_format=True)
            try:
                read_image(tmp / "damaged.dcm")
                outcome = "ok"
            except InputRejected as exc:
                outcome = exc.reason.value
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def test_damaged_frames_never_crash_the_decoding_process(tmp_path: Path) -> None:
    """Every damaged frame decodes or is rejected with a reason; none aborts, hangs or raises
    anything else (the worker's threads decode too, so a crash would take the worker down)."""
    code = ("import sys, json; from tests.unit.test_transfer_syntaxes import decode_mutations; "
            "print(json.dumps(decode_mutations(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=240, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert sum(outcomes.values()) == MUTATIONS * len(MUTATED_SYNTAXES)
    assert set(outcomes) <= {"ok", Reason.PIXELS_UNREADABLE.value, Reason.DICOM_UNREADABLE.value}
    assert outcomes.get(Reason.PIXELS_UNREADABLE.value, 0) > 0  # the damage was felt


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile
                                 "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile
                                 "1.2.840.10008.1.2.4.100"])  # MPEG2 Main Profile
def test_video_syntaxes_stay_unsupported(tmp_path: Path, uid: str) -> None:
    src = _write_original(tmp_path / "original.dcm", _phantom(8), 8)
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = UID(uid)
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + bytes(64)])
    ds.save_as(src, enforce_file_format=True)
    with pytest.raises(InputRejected) as caught:
        read_image(src)
    assert caught.value.reason is Reason.TRANSFER_SYNTAX_UNSUPPORTED


def _bundled(name: str) -> Path:
    """A test file shipped inside pydicom's wheel (never downloaded)."""
    found = get_testdata_file(name, download=False)
    assert isinstance(found, str), name
    return Path(found)


@pytest.mark.parametrize("copy", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm"])
def test_signed_copies_written_by_other_encoders_match_their_original(copy: str) -> None:
    """pydicom's bundled MR (signed 16-bit), written by other tools in other syntaxes, decodes
    to exactly the pixels of its uncompressed original."""
    original = read_image(_bundled("MR_small.dcm")).pixels
    decoded = read_image(_bundled(copy)).pixels
    assert original.dtype == np.int16 and original.max() > 255
    assert decoded.dtype == original.dtype and np.array_equal(decoded, original)


def test_twelve_bit_jpeg_extended_decodes() -> None:
    """No encoder at hand writes 12-bit lossy JPEG, so no original to compare with: pydicom's
    bundled 12-bit JPEG Extended file decodes to its header's geometry and 12-bit range."""
    pixels = read_image(_bundled("JPGExtended.dcm")).pixels
    assert pixels.shape == (1024, 256) and pixels.dtype == np.uint16
    assert 0 < pixels.max() < 4096 and len(np.unique(pixels)) > 100
