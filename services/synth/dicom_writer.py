"""Write a phantom as a real DICOM Part 10 file (Digital X-Ray Image Storage - For Presentation).

Why real DICOM: the workers read studies through the same code path a hospital PACS export
would exercise (file meta, transfer syntax, 12-bit pixels in 16-bit words, window tags), so the
synthetic city tests the production reader, not a shortcut.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

from streams.imaging.preprocess import robust_window

#: Detector pitch written to PixelSpacing / ImagerPixelSpacing (mm); 512 px ~ 36 cm field.
PIXEL_SPACING_MM = 0.7


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


def set_study_tags(ds: Dataset, *, study_uid: str, series_uid: str, patient_name: str,
                   patient_id: str, birth_date: str, accession: str, institution: str,
                   station: str, acquired_at: datetime, sex: str, age_years: int | None,
                   study_description: str, series_description: str) -> None:
    """The patient, study, series, timing and device tags every synthetic instance carries.

    The names, IDs, birth dates and accessions are synthetic PHI canaries: they must never
    reach the bus, so tests can grep for them.
    """
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]

    date, time = acquired_at.strftime("%Y%m%d"), acquired_at.strftime("%H%M%S.%f")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AcquisitionDateTime = f"{date}{time}"

    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    if age_years is not None:
        ds.PatientAge = f"{max(0, min(age_years, 999)):03d}Y"
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = accession[-16:]
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description

    ds.Manufacturer = "radstream synthetic"
    ds.InstitutionName = institution
    ds.StationName = station
    ds.DeviceSerialNumber = station


def write_cxr_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    patient_name: str,
    patient_id: str,
    birth_date: str,
    accession: str,
    institution: str,
    station: str,
    acquired_at: datetime,
    modality: str = "DX",
    body_part: str = "CHEST",
    sex: str = "O",
    age_years: int | None = None,
    description: str = "CHEST PA",
    window: tuple[float, float] | None = None,
) -> None:
    """Write one single-frame 12-bit MONOCHROME2 chest radiograph to ``path``.

    ``window`` (center, width) overrides the robust window, to simulate a misconfigured device.
    """
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    image = np.ascontiguousarray(pixels, dtype="<u2")
    if int(image.max(initial=0)) > 4095:
        raise ValueError("pixel values exceed 12 bits")

    ds = new_dataset(path, DigitalXRayImageStorageForPresentation, sop_uid)
    set_study_tags(ds, study_uid=study_uid, series_uid=series_uid, patient_name=patient_name,
                   patient_id=patient_id, birth_date=birth_date, accession=accession,
                   institution=institution, station=station, acquired_at=acquired_at, sex=sex,
                   age_years=age_years, study_description=description,
                   series_description=description)

    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ManufacturerModelName = "CXR phantom"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    spacing = decimal_string(PIXEL_SPACING_MM)
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    # The same robust window the preprocessing falls back to, so files with and without the
    # window tags normalise alike.
    center, width = window if window is not None else robust_window(image.astype(np.float32))
    ds.WindowCenter = decimal_string(center)
    ds.WindowWidth = decimal_string(width)
    ds.PixelData = image.tobytes()

    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
