"""Re-encode an uncompressed DICOM file in a compressed transfer syntax, as PACS store them: for
the tests that check the worker decodes every common syntax (tests/unit/test_transfer_syntaxes.py,
tests/integration/test_compressed_study.py).

GDCM (python-gdcm, a dev dependency: the worker decodes with pylibjpeg, never with it) writes
the JPEG family, JPEG-LS, JPEG 2000, implicit VR and big endian; pydicom writes RLE and deflated
files itself. Lossy
syntaxes are written with fixed settings, so a test's tolerance stays valid: JPEG quality 90,
JPEG-LS NEAR 2, JPEG 2000 at a compression ratio of 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
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

#: The NEAR parameter JPEG-LS near-lossless files are written with: no decoded sample differs
#: from the original by more.
JPEG_LS_NEAR = 2
#: JPEG quality (1-100) of baseline and extended files.
JPEG_QUALITY = 90
#: JPEG 2000 lossy compression ratio.
JPEG2000_RATIO = 10.0


@dataclass(frozen=True)
class Syntax:
    """A transfer syntax a test writes: its UID, whether it loses information, and the
    largest BitsStored it holds."""

    uid: str
    lossy: bool
    max_bits: int


#: Every transfer syntax the worker decodes, as the tests write them.
SYNTAXES = {
    "implicit-le": Syntax(ImplicitVRLittleEndian, False, 16),
    "explicit-be": Syntax(ExplicitVRBigEndian, False, 16),
    "deflated": Syntax(DeflatedExplicitVRLittleEndian, False, 16),
    "jpeg-baseline": Syntax(JPEGBaseline8Bit, True, 8),
    "jpeg-extended": Syntax(JPEGExtended12Bit, True, 8),  # GDCM cannot write 12-bit lossy JPEG
    "jpeg-lossless": Syntax(JPEGLossless, False, 16),
    "jpeg-lossless-sv1": Syntax(JPEGLosslessSV1, False, 16),
    "jpeg-ls": Syntax(JPEGLSLossless, False, 16),
    "jpeg-ls-near": Syntax(JPEGLSNearLossless, True, 16),
    "jpeg2000-lossless": Syntax(JPEG2000Lossless, False, 16),
    "jpeg2000": Syntax(JPEG2000, True, 16),
    "rle": Syntax(RLELossless, False, 16),
}


def _gdcm_codec(uid: str) -> object | None:
    import gdcm  # a dev dependency: imported only when a test writes a file

    if uid in (JPEGBaseline8Bit, JPEGExtended12Bit):
        jpeg = gdcm.JPEGCodec()
        jpeg.SetLossless(False)
        jpeg.SetQuality(JPEG_QUALITY)
        return jpeg
    if uid == JPEGLSNearLossless:
        jpeg_ls = gdcm.JPEGLSCodec()
        jpeg_ls.SetLossless(False)
        jpeg_ls.SetLossyError(JPEG_LS_NEAR)
        return jpeg_ls
    if uid == JPEG2000:
        j2k = gdcm.JPEG2000Codec()
        j2k.SetRate(0, JPEG2000_RATIO)
        return j2k
    return None


def recompress(src: Path, dst: Path, uid: str) -> Path:
    """Write ``src`` (an uncompressed file) to ``dst`` in transfer syntax ``uid``."""
    if uid in (DeflatedExplicitVRLittleEndian, RLELossless):
        ds = pydicom.dcmread(src)
        if uid == RLELossless:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        else:
            ds.file_meta.TransferSyntaxUID = UID(uid)  # pydicom deflates what it writes
        ds.save_as(dst, enforce_file_format=True)
        return dst
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise ValueError("GDCM cannot read the source file")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(uid)))
    change.SetInput(reader.GetImage())
    codec = _gdcm_codec(uid)
    if codec is not None:
        change.SetUserCodec(codec)
    if not change.Change():
        raise ValueError(f"GDCM cannot encode transfer syntax {uid}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise ValueError("GDCM cannot write the file")
    return dst
