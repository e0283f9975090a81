"""Dead-letter and technical-defect reason codes: the one list every producer of them uses.

Codes are stable strings (they appear in DeadLetter events and in the `reason` label of
`radstream_deadletters_total`), so analysts and alert rules can key on them.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # The event itself
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    #: Same study_uid announced again with a different body (published_at aside).
    DUPLICATE_CONFLICT = "duplicate_conflict"
    #: The body's hospital_id is not the hospital whose intake topic carried it
    #: (streams/rules/origin.py).
    HOSPITAL_MISMATCH = "hospital_mismatch"
    # The files the event points at
    URI_UNSUPPORTED = "uri_unsupported"
    FILE_OUTSIDE_ROOT = "file_outside_root"
    FILE_MISSING = "file_missing"
    #: The file or a folder on its way exists but cannot be opened or read (permissions, I/O).
    FILE_UNREADABLE = "file_unreadable"
    FILE_TOO_LARGE = "file_too_large"
    NOT_DICOM = "not_dicom"
    TRANSFER_SYNTAX_UNSUPPORTED = "transfer_syntax_unsupported"
    #: The file ends before the lengths its header declares (cut short, or an absurd length).
    DICOM_TRUNCATED = "dicom_truncated"
    DICOM_UNREADABLE = "dicom_unreadable"
    #: Rows x Columns x Samples x Frames x BitsAllocated/8 above the configured pixel budget.
    IMAGE_TOO_LARGE = "image_too_large"
    PIXELS_UNREADABLE = "pixels_unreadable"
    #: More data elements in one file than the worker parses (RADSTREAM_MAX_DICOM_ELEMENTS).
    DICOM_TOO_MANY_ELEMENTS = "dicom_too_many_elements"
    #: Parsing one file took longer than the worker allows (RADSTREAM_MAX_PARSE_S).
    DICOM_PARSE_TIMEOUT = "dicom_parse_timeout"
    #: Preparing one study needed more memory than the worker allows
    #: (RADSTREAM_MAX_PREPARE_BYTES).
    PREPARATION_MEMORY_EXCEEDED = "preparation_memory_exceeded"
    #: The announced series' folder holds no image instance of it.
    SERIES_NOT_FOUND = "series_not_found"
    #: The announced series' folder holds several image series and none is the announced one.
    SERIES_AMBIGUOUS = "series_ambiguous"
    # A series fetched from an archive by DICOMweb WADO-RS (streams/imaging/wado.py)
    #: The URI is not a series under a configured archive base URL (RADSTREAM_ARCHIVE_URLS).
    ARCHIVE_NOT_ALLOWED = "archive_not_allowed"
    #: The archive did not answer (refused, 5xx, 429) after the retries, or its circuit is open.
    ARCHIVE_UNAVAILABLE = "archive_unavailable"
    #: The series did not arrive within RADSTREAM_ARCHIVE_TIMEOUT_S.
    ARCHIVE_TIMEOUT = "archive_timeout"
    #: The answer is not a well-formed multipart/related of application/dicom parts (or is a
    #: redirect, an encoded body or an unexpected status).
    ARCHIVE_RESPONSE_INVALID = "archive_response_invalid"
    # Technical defects of the study's images for the service that reads them
    # (streams/imaging/defects.py):
    # these end as a technical_defect Finding, not a dead letter.
    #: The images' own Modality/BodyPartExamined is not one the service reads.
    BODY_PART_MISMATCH = "body_part_mismatch"
    #: Slices missing (gaps in instance numbers or positions) or fewer than the service needs.
    SERIES_INCOMPLETE = "series_incomplete"
    #: Pixel or slice spacing, matrix size or slice count outside what a device can produce.
    GEOMETRY_IMPLAUSIBLE = "geometry_implausible"
    #: Background brighter than anatomy: pixel values inverted against their photometric tag.
    CONTRAST_INVERTED = "contrast_inverted"
    #: A rescale or window attribute, or a pixel value after rescaling, is NaN or infinite (or
    #: makes the model's input so): the model cannot be given a finite tensor for this study.
    NON_FINITE_INPUT = "non_finite_input"
    # Inference
    INFERENCE_FAILED = "inference_failed"
    # Anything we did not foresee: still recorded, never dropped
    INTERNAL_ERROR = "internal_error"


#: Reasons that are a property of the study's images, reported to the hospital as a
#: technical_defect Finding for the service (the programme's "defective study" count) rather than
#: dead-lettered. Hostile or broken files (not DICOM, truncated, outside the roots) stay dead
#: letters: they point at a broken sender, not at an image a radiologist should redo.
TECHNICAL_DEFECTS = frozenset({
    Reason.BODY_PART_MISMATCH, Reason.SERIES_INCOMPLETE, Reason.GEOMETRY_IMPLAUSIBLE,
    Reason.CONTRAST_INVERTED, Reason.PIXELS_UNREADABLE, Reason.NON_FINITE_INPUT})


class InputRejected(Exception):
    """Raised by pure logic and adapters when an input cannot be processed; carries a Reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[InputRejected], tuple[Reason, str]]:
        # Raised in preprocessing worker processes: it must come back with its reason, not be
        # re-built from its message (subclasses come back as InputRejected, same reason).
        return InputRejected, (self.reason, self.detail)
