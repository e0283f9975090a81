"""Phantom adapter for the chest-xray service: the original PA chest radiograph generator.

The drawing lives in :mod:`services.synth.cxr_phantom` (its docstring documents the anatomy and
the lesion); this module only gives it the common phantom interface (``SERVICE``, ``FINDINGS``,
``PREVALENCE``, ``render``) so the city simulator and the trainers treat it like every other
service.

Lesion ``lung_nodule``: one round soft-tissue nodule, a Gaussian-profile bright blob of radius
5..16 px at 512 px (scaled with the image: 2.5..8 px at the 256 px drawn here), peak contrast
0.15..0.55 attenuation units skewed to subtle values, placed well inside either lung field.

Size: 256x256 at 0.7 mm (the contract's 2-D size; four times faster than 512). The
``cxr_lesion`` reference model, trained on 512 px images, keeps its held-out AUC on these
(0.927 at 256 vs 0.930 at 512 on 300 phantoms, seed 777), because the worker area-resizes both
to the same 128 px input.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from services.synth.cxr_phantom import render_chest_xray
from services.synth.dicom_writer import PIXEL_SPACING_MM
from services.synth.phantoms.base import Phantom
from streams.imaging.preprocess import robust_window

SERVICE = "chest-xray"
FINDINGS: tuple[str, ...] = ("lung_nodule",)
PREVALENCE: dict[str, float] = {"lung_nodule": 0.3}

#: Rows and columns of the rendered radiograph.
SIZE = 256


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One PA chest radiograph; plants a lung nodule when ``lung_nodule`` is positive."""
    lesion = "lung_nodule" in positives
    pixels, lesion_truth = render_chest_xray(rng, lesion=lesion, size=SIZE)
    # Real DX devices write a display window; the robust one is what preprocessing would pick.
    center, width = robust_window(pixels.astype(np.float32))
    return Phantom(
        pixels=pixels[None, :, :],
        modality="DX",
        body_part="CHEST",
        series_description="CHEST PA",
        pixel_spacing=(PIXEL_SPACING_MM, PIXEL_SPACING_MM),
        slice_spacing=1.0,
        window=(float(center), float(width)),
        labels={"lung_nodule": lesion},
        truth={"lung_nodule": asdict(lesion_truth)} if lesion_truth is not None else {},
    )
