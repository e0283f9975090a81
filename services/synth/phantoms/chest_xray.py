"""Synthetic PA chest radiographs for the chest-xray service, with or without a lung nodule.

Anatomy is drawn as an attenuation map (0 = air, 1 = soft tissue) and mapped to 12-bit
MONOCHROME2 values (bright = attenuating): an elliptical body outline, two dark lung fields, a
brighter mediastinum, spine and heart shadow, clavicles, posterior ribs as curved bright bands
over the lungs (faint anterior ribs curving the other way), slow background shading and
quantum-like Gaussian noise. Each image gets its own position/scale jitter, lung and heart
shape jitter, and a random global brightness (offset), contrast (gain) and noise level, so a
detector cannot key on absolute intensities or fixed positions.

Lesion ``lung_nodule``: one round soft-tissue nodule, a bright Gaussian-profile blob
``contrast * exp(-r**2 / (2 * sigma**2))`` with ``sigma = radius_px / 2``, added to the
attenuation map at a random point well inside either lung field. ``radius_px`` is drawn in
[5, 16] pixels at 512 px, scaled with the image (2.5..8 px at the 256 px drawn here);
``contrast`` (attenuation units; lung is about 0.35 below soft tissue, ribs add 0.10..0.18) in
[0.15, 0.55], skewed towards subtle values (Beta(1.3, 2)), so small faint nodules compete with
rib edges and the lung outline and the task is far from perfectly separable.

Size: 256x256 at 0.7 mm (the contract's 2-D size; four times faster than 512). The worker
area-resizes every radiograph to the same 128 px model input, so a model keeps its AUC across
sizes (0.927 at 256 vs 0.930 at 512 on 300 phantoms, seed 777, for a model trained at 512).

:func:`render` is the common phantom interface (``SERVICE``, ``FINDINGS``, ``PREVALENCE``,
``render``) the city simulator and the trainers use; :func:`render_chest_xray` is the drawing
itself, at any size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from services.synth.phantoms.base import Phantom
from streams.imaging.preprocess import robust_window

SERVICE = "chest-xray"
FINDINGS: tuple[str, ...] = ("lung_nodule",)
PREVALENCE: dict[str, float] = {"lung_nodule": 0.3}

#: Rows and columns of the rendered radiograph.
SIZE = 256
#: Detector pitch written to PixelSpacing / ImagerPixelSpacing (mm).
PIXEL_SPACING_MM = 0.7

#: Largest value of a 12-bit detector.
MAX_VALUE_12BIT = 4095
#: Nodule radius range in pixels at size 512 (scaled with the image size).
LESION_RADIUS_PX = (5.0, 16.0)
#: Nodule peak contrast range in attenuation units (lung is ~0.35 below soft tissue).
LESION_CONTRAST = (0.15, 0.55)


@dataclass(frozen=True)
class LesionTruth:
    """Where the planted nodule is (pixel coordinates of the returned image) and how strong."""

    center_x: float
    center_y: float
    radius_px: float
    contrast: float


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float | np.ndarray,
             av: float, edge: float) -> np.ndarray:
    """Soft ellipse mask in [0, 1]; the soft edge avoids aliasing a real detector would not show."""
    r = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / edge, -30.0, 30.0)))


def render_chest_xray(
    rng: np.random.Generator, *, lesion: bool, size: int = SIZE
) -> tuple[np.ndarray, LesionTruth | None]:
    """Draw one radiograph as a uint16 12-bit MONOCHROME2 image of shape (size, size)."""
    scale = size / 512.0
    axis = np.arange(size, dtype=np.float32) / np.float32(size) - np.float32(0.5)
    zoom = float(rng.uniform(0.92, 1.08))
    shift_u, shift_v = rng.uniform(-0.04, 0.04, size=2)
    u = ((axis[None, :] - shift_u) / zoom).astype(np.float32)
    v = ((axis[:, None] - shift_v) / zoom).astype(np.float32)
    u, v = np.broadcast_arrays(u, v)

    body = _ellipse(u, v, 0.0, 0.12, rng.uniform(0.40, 0.46), 0.62, 0.02)
    atten = 0.55 * body

    # Lungs: two tall ellipses, slightly wider at the base; lung_depth is how much air they add.
    lung_w = rng.uniform(0.12, 0.15)
    lung_h = rng.uniform(0.27, 0.32)
    widen = 1.0 + 0.35 * np.clip(v + 0.1, 0.0, None)
    lungs = np.zeros_like(u)
    for side in (-1.0, 1.0):
        cu = side * rng.uniform(0.17, 0.21)
        lungs = np.maximum(lungs, _ellipse(u, v, cu, -0.04, lung_w * widen, lung_h, 0.03))
    heart = _ellipse(u, v, rng.uniform(0.03, 0.08), rng.uniform(0.12, 0.18),
                     rng.uniform(0.13, 0.17), rng.uniform(0.11, 0.14), 0.06)
    mediastinum = _ellipse(u, v, 0.0, -0.05, 0.06, 0.42, 0.15)
    lung_field = lungs * (1.0 - 0.85 * heart) * (1.0 - mediastinum)
    lung_depth = rng.uniform(0.30, 0.40)
    atten = atten + 0.45 * body - lung_depth * lung_field
    atten = atten + 0.12 * mediastinum + 0.10 * heart
    atten = atten + 0.12 * _ellipse(u, v, 0.0, 0.0, 0.03, 0.6, 0.2)  # spine

    # Ribs: periodic bands along parabolas, visible over the thorax.
    thorax = _ellipse(u, v, 0.0, -0.06, 0.40, 0.32, 0.04)
    period = rng.uniform(0.05, 0.062)
    bend = rng.uniform(0.9, 1.4)
    phase = rng.uniform(0.0, period)
    posterior = np.cos(2 * np.pi * (v - bend * u**2 - phase) / period)
    anterior = np.cos(2 * np.pi * (v + 0.8 * bend * u**2 - phase * 1.7) / (period * 1.3))
    rib_gain = rng.uniform(0.10, 0.18)
    ribs = rib_gain * np.clip((posterior - 0.1) * 2.5, 0.0, 1.0) + 0.1 * rib_gain * np.clip(
        (anterior - 0.3) * 2.5, 0.0, 1.0
    )
    atten = atten + ribs * thorax

    # Clavicles: two oblique bright bars at the apex.
    for side in (-1.0, 1.0):
        dist = np.abs((v + 0.33) - 0.18 * (side * u - 0.05))
        along = _ellipse(u, v, side * 0.19, -0.35, 0.15, 1.0, 0.05)
        atten = atten + 0.18 * np.exp(-((dist / 0.012) ** 2)) * along

    # Slow shading (scatter, patient thickness) so intensities vary smoothly across the field.
    for _ in range(3):
        fu, fv = rng.uniform(0.5, 2.0, size=2)
        pu, pv = rng.uniform(0.0, 2 * np.pi, size=2)
        atten = atten + rng.uniform(0.0, 0.03) * np.cos(2 * np.pi * fu * u + pu) * np.cos(
            2 * np.pi * fv * v + pv
        )

    truth: LesionTruth | None = None
    if lesion:
        candidates = np.flatnonzero(lung_field.ravel() > 0.9)
        if candidates.size == 0:  # pragma: no cover - the lung fields are never that small
            candidates = np.arange(size * size)
        index = int(rng.choice(candidates))
        cy, cx = divmod(index, size)
        radius = float(rng.uniform(*LESION_RADIUS_PX)) * scale
        lo, hi = LESION_CONTRAST
        contrast = float(lo + (hi - lo) * rng.beta(1.3, 2.0))
        sigma = radius / 2.0
        yy = np.arange(size, dtype=np.float32)[:, None] - cy
        xx = np.arange(size, dtype=np.float32)[None, :] - cx
        atten = atten + contrast * np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
        truth = LesionTruth(center_x=float(cx), center_y=float(cy), radius_px=radius,
                            contrast=contrast)

    gain = rng.uniform(2000.0, 3000.0)
    offset = rng.uniform(150.0, 700.0)
    noise_sd = rng.uniform(10.0, 35.0)
    raw = offset + gain * atten + noise_sd * rng.standard_normal(size=atten.shape, dtype=np.float32)
    image = np.clip(np.rint(raw), 0, MAX_VALUE_12BIT).astype(np.uint16)
    return image, truth


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
