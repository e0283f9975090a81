"""Write a :class:`~services.synth.phantoms.base.Phantom` as a real DICOM series, one file per
slice, the way a modality would send it to PACS.

Why real, per-slice DICOM: the worker reads multi-slice series through the production reader
(:mod:`streams.imaging.dicom_io`) and checks their geometry (InstanceNumber, ImagePositionPatient z,
PixelSpacing, slice spacing) before inference, so the simulator must exercise exactly those tags.

Layout: ``<root>/<hospital>/<study_uid>/<series_uid>/<n>.dcm`` with ``n`` = InstanceNumber
1..N and slice ``i`` (0-based) at z = ``i * slice_spacing`` mm. Explicit VR Little Endian, the
SOP class of the modality, 16-bit words (PixelRepresentation 1 for int16 pixels).
:func:`encode_series` builds the files' bytes without touching the disk (the hostile corpus
writes its template from them); :func:`write_series` writes them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from services.synth.phantoms.base import Phantom

#: SOP class written per Modality; anything else is stored as Secondary Capture.
SOP_CLASS_BY_MODALITY: dict[str, str] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CR": ComputedRadiographyImageStorage,
    "MG": DigitalMammographyXRayImageStorageForPresentation,
    "US": UltrasoundImageStorage,
}
#: Modalities whose images are projections (a detector behind the patient), not sections.
PROJECTION_MODALITIES = frozenset({"DX", "CR", "MG"})
#: Axial orientation (rows along +x, columns along +y); slices advance along +z.
AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

#: Value representations with a 4-byte length (and 2 reserved bytes) in Explicit VR.
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_META_GROUP_LENGTH = 0x00020000
_MEDIA_SOP_INSTANCE = 0x00020003
_SOP_INSTANCE = 0x00080018
_INSTANCE_NUMBER = 0x00200013
_POSITION = 0x00200032
_SLICE_LOCATION = 0x00201041
_PIXEL_DATA = 0x7FE00010
#: Tags written per slice (everything else is shared by the series).
_PER_SLICE_TAGS = (_SOP_INSTANCE, _INSTANCE_NUMBER, _POSITION, _SLICE_LOCATION, _PIXEL_DATA)


@dataclass(frozen=True)
class SeriesHeader:
    """Who, where and when: the patient/study/device tags of one synthetic series.

    ``patient_name``, ``patient_id``, ``birth_date`` and ``accession`` are synthetic PHI
    canaries: they must never reach the bus, so tests can grep for them.
    """

    study_uid: str
    series_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    accession: str
    institution: str
    #: Device id, written to StationName and DeviceSerialNumber.
    station: str
    acquired_at: datetime
    sex: str = "O"
    age_years: int | None = None
    #: The ordered procedure; empty = the phantom's series description.
    study_description: str = ""
    #: Overrides the phantom's Modality / BodyPartExamined (a device configured otherwise).
    modality: str = ""
    body_part: str = ""
    series_number: int = 1


def decimal_string(value: float) -> str:
    """Format a float as a DICOM DS (decimal string, at most 16 characters)."""
    return f"{value:.6g}"


def new_dataset(path: Path, sop_class: str, sop_uid: str) -> FileDataset:
    """An empty Part 10 dataset (Explicit VR Little Endian file meta) of one SOP instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "RADSTREAM_SYNTH"

    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = sop_uid
    return ds


def set_study_tags(ds: Dataset, header: SeriesHeader, *, study_description: str,
                   series_description: str) -> None:
    """The patient, study, series, timing and device tags every synthetic instance carries."""
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]

    acquired_at = header.acquired_at
    date, time = acquired_at.strftime("%Y%m%d"), acquired_at.strftime("%H%M%S.%f")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AcquisitionDateTime = f"{date}{time}"

    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    if header.age_years is not None:
        ds.PatientAge = f"{max(0, min(header.age_years, 999)):03d}Y"
    ds.AccessionNumber = header.accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = header.accession[-16:]
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description

    ds.Manufacturer = "radstream synthetic"
    ds.InstitutionName = header.institution
    ds.StationName = header.station
    ds.DeviceSerialNumber = header.station


def series_path(root: Path, hospital_id: str, study_uid: str, series_uid: str) -> Path:
    """The folder holding one series' files."""
    return root / hospital_id / study_uid / series_uid


def sop_uid(series_uid: str, instance_number: int) -> str:
    """Deterministic SOP Instance UID of slice ``instance_number`` of a series."""
    return str(generate_uid(entropy_srcs=["radstream-series", series_uid, str(instance_number)]))


def position_string(value: float) -> str:
    """A patient-space coordinate as DS with 0.1 micrometre resolution (``%g`` would keep only
    six significant digits: slice 40 of a 6.8 mm series would drift by a millimetre's tenths)."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _bits_stored(pixels: np.ndarray) -> int:
    if pixels.dtype == np.uint16 and int(pixels.max(initial=0)) <= 4095:
        return 12
    return 16


def _series_dataset(phantom: Phantom, header: SeriesHeader, path: Path) -> Dataset:
    """The tags shared by every slice (per-slice ones are set in :func:`write_series`)."""
    modality = header.modality or phantom.modality
    pixels = phantom.pixels
    ds = new_dataset(path, SOP_CLASS_BY_MODALITY.get(modality, SecondaryCaptureImageStorage),
                     sop_uid(header.series_uid, 1))
    set_study_tags(ds, header,
                   study_description=header.study_description or phantom.series_description,
                   series_description=phantom.series_description)
    ds.Modality = modality
    ds.BodyPartExamined = header.body_part or phantom.body_part
    ds.ManufacturerModelName = "radstream phantom"
    ds.SeriesNumber = header.series_number
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"

    row_mm, col_mm = phantom.pixel_spacing
    spacing = [decimal_string(row_mm), decimal_string(col_mm)]
    ds.PixelSpacing = spacing
    if modality in PROJECTION_MODALITIES:
        ds.ImagerPixelSpacing = spacing
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.PatientOrientation = ["L", "F"]
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["radstream-for", header.series_uid])
    ds.ImageOrientationPatient = [decimal_string(v) for v in AXIAL_ORIENTATION]
    ds.SliceThickness = decimal_string(phantom.slice_spacing)
    ds.SpacingBetweenSlices = decimal_string(phantom.slice_spacing)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = phantom.photometric
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
    ds.BitsAllocated = 16
    ds.BitsStored = _bits_stored(pixels)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.RescaleIntercept = decimal_string(phantom.intercept)
    ds.RescaleSlope = decimal_string(phantom.slope)
    if modality == "CT":
        ds.RescaleType = "HU"
    if phantom.window is not None:
        ds.WindowCenter = decimal_string(phantom.window[0])
        ds.WindowWidth = decimal_string(phantom.window[1])
    return ds


@dataclass
class Slice:
    """The values that differ between the files of a series, as :func:`write_series` is about
    to write them; a :data:`SliceHook` may change them (or drop the slice) to plant a defect."""

    #: 0-based position in the phantom.
    index: int
    instance_number: int
    #: ImagePositionPatient z and SliceLocation, mm.
    z: float
    #: The PixelData value (little-endian 16-bit words).
    pixel_data: bytes


#: Called once per slice before it is written; returns the slice to write (the same object,
#: changed or not) or None to leave that file out. The city simulator's technical defects.
SliceHook = Callable[[Slice], "Slice | None"]


def _encode(tag: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (even length: UI padded with NUL, text with space)."""
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    group, element = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _encoded_elements(ds: Dataset) -> list[tuple[int, bytes]]:
    """Each element of ``ds`` encoded by pydicom itself, keyed by tag."""
    out = []
    for elem in ds:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_data_element(fp, elem)
        out.append((int(elem.tag), fp.getvalue()))
    return out


def _checked_pixels(phantom: Phantom) -> np.ndarray:
    pixels = phantom.pixels
    if pixels.ndim != 3 or pixels.shape[0] < 1:
        raise ValueError(f"expected (slices, rows, cols) pixels, got shape {pixels.shape}")
    if pixels.dtype not in (np.int16, np.uint16):
        raise ValueError(f"expected int16 or uint16 stored values, got {pixels.dtype}")
    return pixels


def encode_series(phantom: Phantom, header: SeriesHeader, *,
                  on_slice: SliceHook | None = None) -> Iterator[tuple[int, bytes]]:
    """The Part 10 bytes of each slice of ``phantom``: (InstanceNumber, file bytes), in order.

    ``phantom.pixels`` must be (slices, rows, cols) int16 or uint16 stored values.

    Why not ``Dataset.save_as`` per slice: pydicom re-encodes every tag of every file (about
    8 ms a slice, most of a CT's generation time). The tags shared by all slices are encoded
    once, by pydicom, and only the per-slice ones (SOP Instance UID, InstanceNumber,
    ImagePositionPatient, SliceLocation, PixelData) are encoded here; the unit tests check the
    bytes equal pydicom's own output.
    """
    pixels = _checked_pixels(phantom)
    ds = _series_dataset(phantom, header, Path("1.dcm"))
    meta = ds.file_meta
    meta.FileMetaInformationVersion = b"\x00\x01"  # pydicom adds it on save; so do we
    for tag in _PER_SLICE_TAGS:
        if tag in ds:
            del ds[tag]
    shared = _encoded_elements(ds)
    meta_shared = [e for e in _encoded_elements(meta)
                   if e[0] not in (_META_GROUP_LENGTH, _MEDIA_SOP_INSTANCE)]

    row_mm, col_mm = phantom.pixel_spacing
    # Centre the image on the patient axis, as scanners do.
    x0 = position_string(-0.5 * col_mm * pixels.shape[2])
    y0 = position_string(-0.5 * row_mm * pixels.shape[1])
    little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    for i in range(pixels.shape[0]):
        item: Slice | None = Slice(index=i, instance_number=i + 1, z=i * phantom.slice_spacing,
                                   pixel_data=np.ascontiguousarray(little[i]).tobytes())
        if on_slice is not None and item is not None:
            item = on_slice(item)
        if item is None:
            continue
        uid = sop_uid(header.series_uid, item.instance_number).encode()
        z = position_string(item.z)
        meta_items = sorted([*meta_shared, (_MEDIA_SOP_INSTANCE,
                                            _encode(_MEDIA_SOP_INSTANCE, "UI", uid))])
        meta_body = b"".join(b for _, b in meta_items)
        per_slice = [
            (_SOP_INSTANCE, _encode(_SOP_INSTANCE, "UI", uid)),
            (_INSTANCE_NUMBER, _encode(_INSTANCE_NUMBER, "IS", str(item.instance_number).encode())),
            (_POSITION, _encode(_POSITION, "DS", f"{x0}\\{y0}\\{z}".encode())),
            (_SLICE_LOCATION, _encode(_SLICE_LOCATION, "DS", z.encode())),
            (_PIXEL_DATA, _encode(_PIXEL_DATA, "OW", item.pixel_data)),
        ]
        body = b"".join(b for _, b in sorted([*shared, *per_slice]))
        yield item.instance_number, b"".join((
            b"\0" * 128, b"DICM",
            struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta_body)), meta_body, body))


def write_series(root: Path, hospital_id: str, phantom: Phantom, header: SeriesHeader, *,
                 on_slice: SliceHook | None = None) -> list[Path]:
    """Write the slices of ``phantom`` (see :func:`encode_series`) under
    :func:`series_path`; returns the files written, in InstanceNumber order."""
    _checked_pixels(phantom)
    folder = series_path(root, hospital_id, header.study_uid, header.series_uid)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for instance_number, data in encode_series(phantom, header, on_slice=on_slice):
        path = folder / f"{instance_number}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_instance(path: Path, phantom: Phantom, header: SeriesHeader) -> Path:
    """Write a one-slice ``phantom`` as the single file ``path``, outside the series layout
    (the hostile corpus's templates, test fixtures)."""
    ((_, data),) = encode_series(phantom, header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
