"""Phantoms through the worker's own input path, for tests that score committed models.

A phantom is written as DICOM by the city simulator's series writer, read back with the
worker's series reader and normalised by its preprocessing, so a model is judged on exactly the
tensor a worker would send to Triton.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.synth.phantoms.base import Phantom
from services.synth.series_writer import SeriesHeader, write_series
from streams.contract.catalog import ServiceSpec
from streams.imaging.preprocess import to_series_input
from streams.imaging.series import read_series


def model_input(spec: ServiceSpec, phantom: Phantom, root: Path, uid: str) -> np.ndarray:
    """The model input a worker builds for ``phantom`` (written under ``root`` as study ``uid``,
    a DICOM UID root such as ``2.25.1234``)."""
    header = SeriesHeader(study_uid=uid, series_uid=f"{uid}.1", patient_name="SYNTH^TEST",
                          patient_id="T0", birth_date="19600101", accession="A0",
                          institution="radstream test", station="TEST-D01",
                          acquired_at=datetime(2024, 3, 4, tzinfo=UTC))
    files = write_series(root, "TEST", phantom, header)
    series = read_series(files[0].as_uri(), len(files), [root],
                         max_slices=spec.checks.max_slices)
    return to_series_input(series.pixels, spec.preprocess, photometric=series.photometric,
                           slope=series.slope, intercept=series.intercept,
                           window_center=series.window_center,
                           window_width=series.window_width)
