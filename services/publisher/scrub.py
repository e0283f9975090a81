"""Free text from DICOM headers, reduced to closed vocabularies before it may leave the hospital.

Why: StudyDescription, SeriesDescription and BodyPartExamined are typed by people at a modality
console, and people type names, MRNs and birth dates into them ("CHEST PA SMITH 12.03.1961").
Nothing typed by hand reaches the bus as typed: BodyPartExamined must be one of the DICOM
defined terms (the catalog's own terms always included) or becomes UNKNOWN, and a description
keeps only the words of a closed radiology vocabulary (views, sequences, techniques, anatomy),
in their order, so the catalog can still route on them ("SAG T2 TSE", "LOW DOSE CHEST") while a
name, an ID or a date is never among them. Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import cache

from streams.contract.catalog import catalog

#: Body part used when BodyPartExamined is missing or not a known term.
UNKNOWN_BODY_PART = "UNKNOWN"
#: Longest scrubbed description (the contract's maxLength).
DESCRIPTION_MAX = 64

#: DICOM BodyPartExamined defined terms (PS3.16 CID 4031 and PS3.3 C.7.3.1), the common ones.
DICOM_BODY_PARTS = frozenset({
    "ABDOMEN", "ABDOMENPELVIS", "ANKLE", "AORTA", "ARM", "BLADDER", "BRAIN", "BREAST",
    "BRONCHUS", "CALCANEUS", "CAROTID", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "CLAVICLE",
    "COCCYX", "COLON", "CSPINE", "ELBOW", "EXTREMITY", "EYE", "FEMUR", "FIBULA", "FINGER",
    "FOOT", "FOREARM", "HAND", "HEAD", "HEADNECK", "HEART", "HIP", "HUMERUS", "JAW", "KIDNEY",
    "KNEE", "LEG", "LIVER", "LSPINE", "LUNG", "MANDIBLE", "NECK", "ORBIT", "PANCREAS", "PATELLA",
    "PELVIS", "PROSTATE", "RIB", "SACRUM", "SCAPULA", "SHOULDER", "SINUS", "SKULL", "SPINE",
    "SSPINE", "STERNUM", "TIBIA", "THUMB", "THYROID", "TOE", "TSPINE", "WHOLEBODY", "WRIST",
})

#: Words a description may keep besides body parts: views, laterality, positioning, MR
#: sequences, CT techniques and common anatomy words. Never a name, never digits beyond the
#: sequence codes listed here.
DESCRIPTION_WORDS = frozenset({
    # views and laterality
    "AP", "PA", "LAT", "LATERAL", "OBL", "OBLIQUE", "FRONTAL", "AXIAL", "AX", "SAG",
    "SAGITTAL", "COR", "CORONAL", "CC", "MLO", "ML", "LM", "XCCL", "L", "R", "LEFT", "RIGHT",
    "BILATERAL", "BILAT", "PORTABLE", "DECUB", "LORDOTIC", "VIEW", "VIEWS",
    # positioning
    "WB", "STANDING", "ERECT", "SUPINE", "PRONE", "UPRIGHT", "WEIGHT", "BEARING", "FLEXION",
    "EXTENSION",
    # MR
    "T1", "T2", "PD", "FLAIR", "DWI", "ADC", "STIR", "TSE", "FSE", "SE", "GRE", "SWI", "MPRAGE",
    "FS", "FATSAT", "FAT", "SAT", "IR", "TIRM", "SPACE", "VIBE", "DIXON", "MRA", "TOF", "MR",
    "MRI", "3D", "2D",
    # CT and X-ray techniques
    "CT", "CTA", "LOW", "DOSE", "LOWDOSE", "LDCT", "SCREEN", "SCREENING", "ROUTINE", "STANDARD",
    "NC", "NONCON", "NONCONTRAST", "CONTRAST", "WITH", "WITHOUT", "WO", "POST", "PRE", "IV",
    "HELICAL", "SPIRAL", "KERNEL", "LUNG", "LUNGS", "BONE", "SOFT", "TISSUE", "MEDIASTINUM",
    "ANGIO", "PERFUSION", "SCOUT", "LOCALIZER", "TOPOGRAM", "RECON", "MIP", "MPR", "THIN",
    "THICK", "HRCT", "CALCIUM", "SCORE", "XR", "DX", "CR", "MG", "US", "MAMMO", "MAMMOGRAM",
    "MAMMOGRAPHY", "TOMO", "TOMOSYNTHESIS", "DIAGNOSTIC",
    # anatomy words that are not BodyPartExamined terms
    "THORAX", "ABD", "HIPS", "LUMBAR", "CERVICAL", "THORACIC", "SPINE", "STONE", "KUB",
    "HEAD", "BRAIN",
})

_WORD = re.compile(r"[A-Z0-9]+")


@cache
def body_parts() -> frozenset[str]:
    """Every BodyPartExamined value the bus may carry: the DICOM terms and the catalog's."""
    return DICOM_BODY_PARTS | frozenset(part for spec in catalog() for part in spec.body_parts)


def body_part(value: str) -> str:
    """BodyPartExamined as a known term, else UNKNOWN (never the text as typed)."""
    term = value.strip().upper()
    return term if term in body_parts() else UNKNOWN_BODY_PART


def description(value: str) -> str:
    """The vocabulary words of a description, upper case, in order, space separated ("" when
    none is left): "Chest PA SMITH^JOHN 1961-03-12" becomes "CHEST PA"."""
    allowed = body_parts() | DESCRIPTION_WORDS
    kept: list[str] = []
    length = -1
    for word in _WORD.findall(value.upper()):
        if word in allowed and length + 1 + len(word) <= DESCRIPTION_MAX:
            kept.append(word)
            length += 1 + len(word)
    return " ".join(kept)
