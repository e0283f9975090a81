"""Test images for the technical-defect checks, drawn apart from the phantoms they were tuned on.

Nothing here imports services/synth: the anatomy is drawn again, more crudely and differently
(ellipses, bands, noise), and then written the ways other hospitals' devices write it: with
collimation shown bright as on film or masked black or white, slightly tilted, MONOCHROME1 or 2,
Presentation LUT Shape INVERSE, FOR PROCESSING (linear or log exposure, nothing clipped) or FOR
PRESENTATION (log, tone curve, air burned out), a VOI LUT sequence, 8 to 16 bits signed or
unsigned, ImagerPixelSpacing only, portable films (noise, burned-in markers, lines, rotation),
pediatric films (a small body in a wide field), CT with padding outside the reconstruction
circle and a table, MR with noise in the air and a bias field.

Each :class:`Variation` carries its expected verdict: None for a well-formed study, else the
technical-defect reason of the defect injected, in the same style, the way the project's city
plants them (values mirrored within their range or the photometric tag flipped, an implausible
spacing or coinciding slices, slices missing, another body part, pixel data cut short).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from streams.contract.catalog import ServiceSpec
from streams.contract.reasons import Reason

#: service id -> (anatomy, modality, body part, series description)
SERVICES: dict[str, tuple[str, str, str, str]] = {
    "chest-xray": ("chest", "DX", "CHEST", "CHEST PA"),
    "knee-xray": ("knee", "CR", "KNEE", "KNEE AP"),
    "pelvis-xray": ("pelvis", "DX", "PELVIS", "PELVIS AP"),
    "wrist-xray": ("wrist", "DX", "WRIST", "WRIST PA"),
    "foot-xray": ("foot", "DX", "FOOT", "FOOT LAT WB"),
    "mammography": ("breast", "MG", "BREAST", "L MLO"),
    "chest-ct": ("ct-chest", "CT", "CHEST", "CT CHEST 1.25"),
    "ldct-screening": ("ct-ldct", "CT", "CHEST", "LOW DOSE CHEST"),
    "head-ct": ("ct-head", "CT", "HEAD", "HEAD ROUTINE"),
    "abdomen-ct": ("ct-abdomen", "CT", "ABDOMEN", "ABDOMEN NC"),
    "brain-mri": ("mr-brain", "MR", "BRAIN", "AX T2 FLAIR"),
    "lumbar-mri": ("mr-lumbar", "MR", "LSPINE", "SAG T2 TSE"),
}
#: Another body part of the same modality, for the identity defect.
FOREIGN: dict[str, tuple[str, str]] = {
    "chest": ("knee", "KNEE"), "knee": ("chest", "CHEST"), "pelvis": ("wrist", "HAND"),
    "wrist": ("pelvis", "PELVIS"), "foot": ("knee", "KNEE"), "breast": ("chest", "CHEST"),
    "ct-chest": ("ct-head", "HEAD"), "ct-ldct": ("ct-abdomen", "ABDOMEN"),
    "ct-head": ("ct-abdomen", "ABDOMEN"), "ct-abdomen": ("ct-chest", "THORAX"),
    "mr-brain": ("mr-lumbar", "LSPINE"), "mr-lumbar": ("mr-brain", "HEAD"),
}
#: Synonyms another generator may write for the same body part.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "CHEST": ("CHEST", "THORAX", "Chest"), "HEAD": ("HEAD", "BRAIN", "SKULL"),
    "PELVIS": ("PELVIS", "HIP"), "LSPINE": ("LSPINE", "L-SPINE", "LUMBAR SPINE"),
    "WRIST": ("WRIST", "HAND"), "BREAST": ("BREAST",), "KNEE": ("KNEE",), "FOOT": ("FOOT",),
    "ABDOMEN": ("ABDOMEN", "ABD"), "BRAIN": ("BRAIN", "HEAD"),
}
RADIOGRAPH_STYLES = ("collimation", "photometric", "processing", "bits", "habitus")


@dataclass
class Variation:
    """One study as a device writes it, and the verdict the checks should reach."""

    service: str
    style: str
    expected: Reason | None
    pixels: np.ndarray  # (slices, rows, cols) stored values
    photometric: str = "MONOCHROME2"
    presentation_inverse: bool = False
    slope: float = 1.0
    intercept: float = 0.0
    modality: str = ""
    body_part: str = ""
    description: str = ""
    spacing: tuple[float, float] = (0.2, 0.2)
    spacing_tag: str = "PixelSpacing"
    positions: list[float] | None = None
    numbers: list[int] = field(default_factory=list)
    announced: int = 1
    signed: bool = False
    bits_stored: int = 16
    for_processing: bool = False
    voi_lut: bool = False
    truncate: bool = False

    @property
    def reported_photometric(self) -> str:
        """What the reader reports: INVERSE on MONOCHROME2 displays as MONOCHROME1."""
        return "MONOCHROME1" if self.presentation_inverse else self.photometric


# --- drawing -------------------------------------------------------------------------------

def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return y / h, x / w


def _ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             angle: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - cy, x - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def attenuation(kind: str, rng: np.random.Generator, h: int, w: int,
                small: bool = False) -> np.ndarray:
    """A projection radiograph's attenuation (0 = air), body ``small`` in the field or not."""
    y, x = _grid(h, w)
    a = np.zeros((h, w), np.float32)
    scale = rng.uniform(0.55, 0.7) if small else rng.uniform(0.9, 1.25)
    sx = 0.5 + rng.uniform(-0.06, 0.06)  # patient off-centre or rotated (portable)
    sy = 0.5 + rng.uniform(-0.04, 0.04)
    if kind == "chest":
        torso = _ellipse(y, x, sy + 0.15 * scale, sx, 0.62 * scale, 0.42 * scale)
        neck = (np.abs(x - sx) < 0.08 * scale) & (y < sy - 0.3 * scale)
        a[torso | neck] = 0.55
        shift = rng.uniform(-0.04, 0.04)
        for side in (-1, 1):
            lung = _ellipse(y, x, sy - 0.02 * scale, sx + side * 0.19 * scale,
                            0.3 * scale, 0.13 * scale)
            a[lung & torso] = 0.22
            ribs = lung & (np.sin((y * 28 / scale) + side * x * 6) > 0.6)
            a[ribs] += 0.12
        a[(np.abs(x - sx - shift) < 0.07 * scale) & torso & (y < sy + 0.3 * scale)] = 0.78
        a[_ellipse(y, x, sy + 0.12 * scale, sx + shift + 0.05, 0.13 * scale,
                   0.12 * scale) & torso] = 0.75
        a[(y > sy + 0.3 * scale) & torso] = 0.72  # below the diaphragm
        a[(np.abs(x - sx) < 0.03 * scale) & (torso | neck)] += 0.15
    elif kind == "knee":
        leg = np.abs(x - sx) < rng.uniform(0.22, 0.34) * scale
        a[leg] = 0.5
        bone = np.abs(x - sx) < 0.13 * scale
        gap = np.abs(y - sy) < 0.02
        a[bone & ~gap] = 0.85
        a[(np.abs(x - sx - 0.16 * scale) < 0.025 * scale) & (y > sy + 0.05)] = 0.75
        a[bone & ~gap & (np.abs(y - sy) < 0.12)] = 0.95
    elif kind == "pelvis":
        # widest at the trochanters, narrower at the waist and down the thighs
        half = rng.uniform(0.36, 0.56) * scale * (1.0 - 0.35 * np.abs(y - sy - 0.1) ** 1.5)
        body = np.abs(x - sx) < half
        a[body] = 0.6
        ring = _ellipse(y, x, sy, sx, 0.3 * scale, 0.3 * scale) & ~_ellipse(
            y, x, sy + 0.03, sx, 0.22 * scale, 0.22 * scale)
        a[ring & body] = 0.85
        for side in (-1, 1):
            a[_ellipse(y, x, sy + 0.12, sx + side * 0.27 * scale, 0.07 * scale,
                       0.07 * scale)] = 0.95
            a[(np.abs(x - sx - side * 0.3 * scale) < 0.05 * scale) & (y > sy + 0.18)] = 0.9
        for _ in range(4):  # bowel gas
            a[_ellipse(y, x, sy + rng.uniform(-0.25, 0.0), sx + rng.uniform(-0.15, 0.15),
                       0.04, 0.05) & body] = 0.35
    elif kind == "wrist":
        arm = (np.abs(x - sx) < 0.17 * scale) & (y > 0.35)
        hand = _ellipse(y, x, 0.25, sx, 0.22 * scale, 0.24 * scale)
        a[arm | hand] = 0.45
        for off in (-0.08, 0.08):
            a[(np.abs(x - sx - off * scale) < 0.045 * scale) & (y > 0.42)] = 0.85
        for i in range(4):
            a[_ellipse(y, x, 0.36, sx + (i - 1.5) * 0.06 * scale, 0.03, 0.025)] = 0.8
            a[(np.abs(x - sx - (i - 1.5) * 0.07 * scale) < 0.015) & (y < 0.3) & hand] = 0.8
    elif kind == "foot":
        foot = _ellipse(y, x, 0.65, sx, 0.18 * scale, 0.45 * scale) & (y > 0.52)
        a[foot] = 0.5
        a[_ellipse(y, x, 0.68, sx - 0.25 * scale, 0.08, 0.09) & foot] = 0.9  # calcaneus
        a[_ellipse(y, x, 0.6, sx - 0.08 * scale, 0.05, 0.12) & foot] = 0.85
        a[(np.abs(y - 0.66) < 0.02) & foot & (x > sx)] = 0.8
        a[(np.abs(x - sx + 0.2 * scale) < 0.05) & (y < 0.55) & (y > 0.05)] = 0.5  # leg
        a[(np.abs(x - sx + 0.2 * scale) < 0.025) & (y < 0.55) & (y > 0.05)] = 0.85
    elif kind == "breast":
        left = rng.random() < 0.5
        xx = x if left else 1.0 - x
        breast = _ellipse(y, xx, sy, 0.0, 0.42 * scale + 0.08, 0.62 * scale + 0.1)
        a[breast] = 0.4
        for _ in range(6):
            a[_ellipse(y, xx, sy + rng.uniform(-0.2, 0.2), rng.uniform(0.05, 0.35),
                       0.06, 0.1) & breast] = 0.6
        a[(xx < 0.25 - y * 0.25) & breast] = 0.7  # pectoral muscle
        a[breast] += 0.25 * (1.0 - np.clip(xx / 0.7, 0, 1))[breast]  # thicker at the wall
    # Soft tissue is not uniform: thickness falls towards the body's outline, and overlying
    # structures mottle it.
    body = a > 0
    depth = np.cumsum(body, axis=1) * np.cumsum(body[:, ::-1], axis=1)[:, ::-1]
    depth = np.sqrt(depth / max(float(depth.max()), 1.0))
    a[body] *= (0.7 + 0.3 * depth[body])
    a[body] += 0.1 * _mottle(rng, h, w)[body]
    return np.clip(a, 0.0, None)


def _mottle(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random texture in [-1, 1] (a coarse random grid, bilinearly enlarged)."""
    coarse = rng.uniform(-1, 1, (9, 9)).astype(np.float32)
    ry, rx = np.linspace(0, 8, h), np.linspace(0, 8, w)
    y0, x0 = np.minimum(ry.astype(int), 7), np.minimum(rx.astype(int), 7)
    fy, fx = (ry - y0)[:, None], (rx - x0)[None, :]
    c = coarse
    return ((1 - fy) * (1 - fx) * c[y0][:, x0] + fy * (1 - fx) * c[y0 + 1][:, x0]
            + (1 - fy) * fx * c[y0][:, x0 + 1] + fy * fx * c[y0 + 1][:, x0 + 1])


def hounsfield(kind: str, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """A CT volume in HU, (n, size, size), air around the body and a table under it."""
    y, x = _grid(size, size)
    vol = np.full((n, size, size), -1000.0, np.float32)
    ry, rx = rng.uniform(0.28, 0.36), rng.uniform(0.36, 0.44)
    for i in range(n):
        t = i / max(n - 1, 1)
        s = vol[i]
        if kind == "ct-head":
            head = _ellipse(y, x, 0.5, 0.5, 0.36 + 0.04 * np.sin(t * 3), 0.3)
            s[head] = 1000.0
            brain = _ellipse(y, x, 0.5, 0.5, 0.33 + 0.04 * np.sin(t * 3), 0.27)
            s[brain] = 35.0
            s[_ellipse(y, x, 0.5, 0.5, 0.08, 0.05)] = 5.0
        else:
            body = _ellipse(y, x, 0.5, 0.5, ry, rx)
            s[body] = -100.0
            s[_ellipse(y, x, 0.5, 0.5, ry - 0.03, rx - 0.03)] = 40.0
            if kind in ("ct-chest", "ct-ldct"):
                for side in (-1, 1):
                    s[_ellipse(y, x, 0.47, 0.5 + side * 0.17, ry - 0.1, 0.13)] = -850.0
                s[_ellipse(y, x, 0.46, 0.45, 0.1, 0.09)] = 40.0
                s[_ellipse(y, x, 0.4, 0.5, 0.02, 0.02)] = -1000.0
            else:
                s[_ellipse(y, x, 0.47, 0.36, 0.12, 0.1)] = 60.0
                for _ in range(3):
                    s[_ellipse(y, x, rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.65),
                               0.03, 0.04)] = -900.0
            s[_ellipse(y, x, 0.5 + ry - 0.1, 0.5, 0.05, 0.05)] = 700.0
        s[(y > 0.5 + ry + 0.04) & (y < 0.5 + ry + 0.06) & (np.abs(x - 0.5) < 0.45)] = 150.0
    noise = 40.0 if kind == "ct-ldct" else rng.uniform(8, 25)
    return vol + rng.normal(0, noise, vol.shape).astype(np.float32)


def signal(kind: str, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """An MR volume (n, size, size) of magnitude signal: noise, not black, in the air."""
    y, x = _grid(size, size)
    vol = np.zeros((n, size, size), np.float32)
    for i in range(n):
        t = i / max(n - 1, 1)
        s = vol[i]
        if kind == "mr-brain":
            r = 0.34 + 0.05 * np.sin(t * 3)
            s[_ellipse(y, x, 0.5, 0.5, r + 0.02, r * 0.82 + 0.02)] = 800.0  # scalp fat
            s[_ellipse(y, x, 0.5, 0.5, r, r * 0.82)] = 60.0  # skull
            s[_ellipse(y, x, 0.5, 0.5, r - 0.03, r * 0.82 - 0.03)] = 520.0
            s[_ellipse(y, x, 0.5, 0.5, 0.08, 0.05)] = 120.0  # ventricles (FLAIR: dark)
            for _ in range(int(rng.integers(0, 4))):
                s[_ellipse(y, x, rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65),
                           0.02, 0.02)] = 900.0
        else:
            back = rng.uniform(0.72, 0.85)
            s[x < back] = 380.0
            s[(x > back - 0.08) & (x < back)] = 850.0  # subcutaneous fat
            for k in range(6):
                yy = 0.08 + k * 0.16
                s[(np.abs(y - yy) < 0.055) & (np.abs(x - 0.42) < 0.11)] = 320.0
                s[(np.abs(y - yy - 0.08) < 0.02) & (np.abs(x - 0.42) < 0.1)] = 700.0
            s[np.abs(x - 0.58) < 0.03 + 0.01 * t] = 950.0  # CSF
    bias = 1.0 + 0.25 * (x - 0.5) + 0.15 * (y - 0.5)
    sigma = rng.uniform(8, 25)
    real = vol * bias + rng.normal(0, sigma, vol.shape)
    imag = rng.normal(0, sigma, vol.shape)
    return np.sqrt(real ** 2 + imag ** 2).astype(np.float32)


# --- writing the values as a device would ---------------------------------------------------

def _to_bits(v: np.ndarray, bits: int, signed: bool, rng: np.random.Generator) -> np.ndarray:
    """``v`` in [0, 1] onto part of the stored range of ``bits`` bits."""
    top = (1 << bits) - 1
    use = rng.uniform(0.7, 1.0)
    start = rng.uniform(0.0, 1.0 - use)
    stored = np.rint((start + use * np.clip(v, 0, 1)) * top)
    if signed:
        stored -= 1 << (bits - 1)
    return stored.astype(np.int16 if signed and bits <= 16 else np.uint16 if bits > 8 else np.uint8)


def radiograph(service: str, rng: np.random.Generator, style: str,
               kind: str | None = None) -> Variation:
    """A projection radiograph of ``service`` in one drawn flavour of ``style``."""
    anatomy, modality, body_part, description = SERVICES[service]
    kind = kind or anatomy
    h = int(rng.integers(180, 300))
    w = int(h * rng.uniform(0.75, 1.2))
    small = style == "habitus" and rng.random() < 0.6
    a = attenuation(kind, rng, h, w, small=small)
    portable = style == "habitus" and not small
    y, x = _grid(h, w)
    exposure = np.exp(-3.0 * a) * (1.0 + 0.15 * (y - 0.5))  # heel effect
    noise = 0.03 if portable else 0.012
    exposure = np.clip(exposure + rng.normal(0, noise, a.shape) * np.sqrt(exposure), 1e-4, None)
    collimation = rng.choice(["none", "bright", "black", "white", "tilted"]) \
        if style in ("collimation", "habitus") else rng.choice(["none", "bright"])
    if kind == "breast":
        collimation = "none" if collimation == "tilted" else collimation
    outside = np.zeros((h, w), bool)
    if collimation != "none":
        t, b = rng.uniform(0.04, 0.12, 2)
        left, right = rng.uniform(0.04, 0.12, 2)
        if collimation == "tilted":
            tilt = rng.uniform(-0.04, 0.04)
            yy, xx = y + tilt * (x - 0.5), x - tilt * (y - 0.5)
        else:
            yy, xx = y, x
        outside = (yy < t) | (yy > 1 - b) | (xx < left) | (xx > 1 - right)
        exposure[outside] = 2e-3 * (1 + rng.normal(0, 0.1, int(outside.sum())))
    for_processing = style == "processing" and rng.random() < 0.7
    inside = ~outside
    if for_processing:
        # raw detector values, high where the beam was strong: shown as MONOCHROME1
        v = exposure if rng.random() < 0.5 else np.log(exposure)
        lo, hi = np.percentile(v[inside], (0.1, 99.9))
        v = (v - lo) / (hi - lo) * 0.9 + 0.05
        display_dark_high = True
    else:
        d = -np.log(exposure)
        lo, hi = np.percentile(d[inside], (2.0, 99.5))
        d = (d - lo) / (hi - lo)
        d = 1.0 / (1.0 + np.exp(-4.0 * (d - 0.5)))  # tone curve
        d = np.clip((d - 0.15) / 0.8, 0, 1)  # air burned out black, bone not white
        if collimation == "black":
            d[outside] = 0.0
        elif collimation == "white":
            d[outside] = 1.0
        v, display_dark_high = d, False
    if portable:
        r0, c0 = int(h * rng.uniform(0.03, 0.1)), int(w * rng.uniform(0.7, 0.85))
        v[r0:r0 + h // 14, c0:c0 + w // 10] = 0.0 if display_dark_high else 1.0  # marker
        line = np.abs(x - 0.5 - 0.2 * np.sin(y * 3) * rng.uniform(0.5, 1)) < 0.006
        v[line & inside] = v[line & inside] * 0.5 + (0.0 if display_dark_high else 0.5)
    photometric, inverse = "MONOCHROME2", False
    flip = False
    choice = rng.random() if style in ("photometric", "processing") else 1.0
    if not display_dark_high and choice < 0.4:
        flip, photometric = True, "MONOCHROME1"
    elif not display_dark_high and choice < 0.7:
        flip, inverse = True, True
    elif display_dark_high:
        photometric = "MONOCHROME1"
        if rng.random() < 0.3:  # the DX pairing: MONOCHROME1 with INVERSE
            inverse = False
    stored_v = 1.0 - v if flip else v
    if style == "bits" or rng.random() < 0.3:
        bits = int(rng.choice([8, 10, 12, 14, 16]))
        signed = bits >= 12 and rng.random() < 0.3
    else:
        bits, signed = 12, False
    pixels = _to_bits(stored_v, bits, signed, rng)[np.newaxis]
    sp = float(rng.uniform(0.08, 0.2)) if kind != "breast" else float(rng.uniform(0.05, 0.1))
    return Variation(
        service=service, style=f"{style}/{collimation}", expected=None, pixels=pixels,
        photometric=photometric, presentation_inverse=inverse and photometric == "MONOCHROME2",
        modality=modality, body_part=str(rng.choice(SYNONYMS[body_part])),
        description=description, spacing=(sp, sp),
        spacing_tag="ImagerPixelSpacing" if rng.random() < 0.4 else "PixelSpacing",
        numbers=[int(rng.integers(1, 5))], announced=1, signed=signed, bits_stored=bits,
        for_processing=for_processing, voi_lut=rng.random() < 0.3)


def volume(service: str, rng: np.random.Generator, style: str,
           kind: str | None = None, slices: tuple[int, int] = (24, 40)) -> Variation:
    anatomy, modality, body_part, description = SERVICES[service]
    kind = kind or anatomy
    n, size = int(rng.integers(*slices)), int(rng.integers(64, 97))
    step = float(rng.uniform(1.0, 5.0))
    if modality == "CT":
        hu = hounsfield(kind, rng, n, size)
        y, x = _grid(size, size)
        circle = _ellipse(y, x, 0.5, 0.5, 0.5, 0.5)
        pad = float(rng.choice([-2000.0, -3024.0, -1024.0]))
        hu[:, ~circle] = pad
        variant = int(rng.integers(4)) if style in ("bits", "photometric") else 0
        slope, intercept = [(1.0, -1024.0), (1.0, 0.0), (1.0, -32768.0), (8.0, -1024.0)][variant]
        stored = np.rint((np.maximum(hu, -1024.0 if variant == 0 else pad) - intercept) / slope)
        dtype = [np.uint16, np.int16, np.uint16, np.uint16][variant]
        bits = [12, 16, 16, 10][variant]
        pixels = np.clip(stored, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        signed = dtype is np.int16
    else:
        sig = signal(kind, rng, n, size)
        bits = int(rng.choice([12, 16])) if style == "bits" else 12
        top = (1 << bits) - 1
        pixels = np.clip(np.rint(sig / max(float(sig.max()), 1.0) * top * rng.uniform(0.5, 1)),
                         0, top).astype(np.uint16)
        slope, intercept, signed = 1.0, 0.0, False
    photometric = "MONOCHROME2"
    if style == "photometric" and modality == "MR" and rng.random() < 0.3:
        photometric = "MONOCHROME1"  # values stored the other way round, tagged so
        pixels = (int(pixels.max()) + int(pixels.min()) - pixels.astype(np.int64)).astype(
            pixels.dtype)
    first = int(rng.choice([1, 1, 101]))
    z0 = float(rng.uniform(-400, 100))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    sp = float(rng.uniform(0.4, 1.2))
    return Variation(
        service=service, style=style, expected=None, pixels=pixels, photometric=photometric,
        slope=slope, intercept=intercept, modality=modality,
        body_part=str(rng.choice(SYNONYMS[body_part])), description=description,
        spacing=(sp, sp), positions=[z0 + sign * i * step for i in range(n)],
        numbers=list(range(first, first + n)), announced=n, signed=signed, bits_stored=bits,
        voi_lut=rng.random() < 0.2)


STYLES_3D = ("plain", "bits", "photometric", "habitus")


def well_formed(spec: ServiceSpec, rng: np.random.Generator, i: int) -> Variation:
    if spec.checks.max_slices <= 1:
        return radiograph(spec.id, rng, RADIOGRAPH_STYLES[i % len(RADIOGRAPH_STYLES)])
    lo = spec.checks.min_slices
    return volume(spec.id, rng, STYLES_3D[i % len(STYLES_3D)], slices=(lo + 2, lo + 20))


def defect_kinds(spec: ServiceSpec) -> tuple[Reason, ...]:
    kinds = (Reason.CONTRAST_INVERTED, Reason.GEOMETRY_IMPLAUSIBLE, Reason.BODY_PART_MISMATCH,
             Reason.PIXELS_UNREADABLE)
    return kinds + ((Reason.SERIES_INCOMPLETE,) if spec.checks.max_slices > 1 else ())


def injected(spec: ServiceSpec, rng: np.random.Generator, i: int) -> Variation:
    """A well-formed study of the same styles with one real defect put in."""
    kinds = defect_kinds(spec)
    kind = kinds[i % len(kinds)]
    base = well_formed(spec, rng, i // len(kinds))
    v = replace(base, expected=kind, style=f"{base.style}+{kind.value}")
    if kind is Reason.CONTRAST_INVERTED:
        if rng.random() < 0.6 or v.modality == "CT":  # the city's way: values mirrored
            wide = v.pixels.astype(np.int64)
            v.pixels = (int(wide.max()) + int(wide.min()) - wide).astype(v.pixels.dtype)
        else:  # a writer that flips the tag and not the values
            v.photometric = "MONOCHROME1" if v.reported_photometric == "MONOCHROME2" \
                else "MONOCHROME2"
            v.presentation_inverse = False
    elif kind is Reason.GEOMETRY_IMPLAUSIBLE:
        if v.positions is not None and rng.random() < 0.5:
            v.positions = [0.0] * len(v.positions)
        else:
            s = float(rng.choice([0.001, 50.0]))
            v.spacing = (s, s)
    elif kind is Reason.BODY_PART_MISMATCH:
        other, part = FOREIGN[SERVICES[spec.id][0]]
        if spec.checks.max_slices <= 1:
            foreign = radiograph(spec.id, rng, base.style.split("/")[0], kind=other)
        else:
            foreign = volume(spec.id, rng, base.style, kind=other,
                             slices=(len(base.numbers), len(base.numbers) + 1))
        v = replace(foreign, expected=kind, style=f"{foreign.style}+{kind.value}",
                    body_part=part)
    elif kind is Reason.SERIES_INCOMPLETE:
        n = v.pixels.shape[0]
        if rng.random() < 0.5:  # slices lost from the middle
            k, at = int(rng.integers(1, 4)), int(rng.integers(n // 4, n // 2))
            keep = [j for j in range(n) if not at <= j < at + k]
        else:  # too few for the service
            keep = list(range(int(rng.integers(2, spec.checks.min_slices))))
        v.pixels = v.pixels[keep]
        v.positions = [v.positions[j] for j in keep] if v.positions else None
        v.numbers = [v.numbers[j] for j in keep]
        v.announced = len(keep)
    else:
        v.truncate = True
    return v


def variations(spec: ServiceSpec, n_well: int, n_bad: int,
               seed: int = 19) -> Iterator[Variation]:
    rng = np.random.default_rng([seed, sum(map(ord, spec.id))])
    for i in range(n_well):
        yield well_formed(spec, rng, i)
    for i in range(n_bad):
        yield injected(spec, rng, i)


def six_films(seed: int = 6) -> list[Variation]:
    """The report of issue 19: chest films from another generator, MONOCHROME2, 12 bits, bright
    collimated edges (as film shows unexposed area), lungs darker than the tissue around them."""
    films: list[Variation] = []
    rng = np.random.default_rng(seed)
    while len(films) < 6:
        v = radiograph("chest-xray", rng, "collimation")
        if v.style.endswith("/bright") and v.photometric == "MONOCHROME2" \
                and not v.presentation_inverse:
            wide = (v.pixels.astype(np.float64) - float(v.pixels.min())) / max(
                float(np.ptp(v.pixels)), 1.0)
            films.append(replace(v, pixels=np.rint(wide * 4095).astype(np.uint16),
                                 bits_stored=12, signed=False, style="six-films"))
    return films


# --- files -----------------------------------------------------------------------------------

def write_series(v: Variation, folder: Path) -> Path:
    """The study as DICOM files (one per slice) in ``folder``; the first file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    paths = []
    for j in range(v.pixels.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID({
            "CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
            "MG": "1.2.840.10008.5.1.4.1.1.1.2"}.get(v.modality, "1.2.840.10008.5.1.4.1.1.1.1"))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.BodyPartExamined, ds.SeriesDescription = (
            v.modality, v.body_part, v.description)
        ds.InstanceNumber = v.numbers[j]
        if v.positions is not None:
            ds.ImagePositionPatient = [0.0, 0.0, round(v.positions[j], 3)]
        setattr(ds, v.spacing_tag, [v.spacing[0], v.spacing[1]])
        frame = v.pixels[j]
        ds.Rows, ds.Columns = frame.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = v.photometric
        if v.presentation_inverse:
            ds.PresentationLUTShape = "INVERSE"
        ds.BitsAllocated = 8 if frame.dtype.itemsize == 1 else 16
        ds.BitsStored, ds.HighBit = v.bits_stored, v.bits_stored - 1
        ds.PixelRepresentation = 1 if v.signed else 0
        if v.modality in ("CT",) or v.slope != 1.0 or v.intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept = v.slope, v.intercept
        if v.modality in ("DX", "CR", "MG"):
            ds.PresentationIntentType = ("FOR PROCESSING" if v.for_processing
                                         else "FOR PRESENTATION")
        if v.voi_lut:
            item = Dataset()
            item.LUTDescriptor = [256, int(frame.min()) if not v.signed else 0, 16]
            item.LUTData = np.linspace(0, 65535, 256).astype("<u2").tobytes()
            ds.VOILUTSequence = [item]
        data = frame.tobytes()
        if v.truncate:
            data = data[: (len(data) // 4) * 2]
        ds.PixelData = data
        path = folder / f"{j + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths[0]


def study_event(v: Variation, first: Path, hospital: str) -> dict[str, object]:
    """The StudyAnnounced body a hospital would send for ``v``."""
    _, modality, body_part, description = SERVICES[v.service]
    return {"study_uid": generate_uid(), "hospital_id": hospital, "device_id": f"{hospital}-D1",
            "modality": modality, "body_part": body_part, "priority": "routine",
            "acquired_at": "2024-03-01T11:00:00Z", "published_at": "2024-03-01T11:00:00Z",
            "patient_ref": "ab" * 16, "patient_sex": "F", "patient_age_years": 61,
            "study_description": description,
            "series": [{"series_uid": pydicom.dcmread(first, stop_before_pixels=True)
                        .SeriesInstanceUID, "modality": modality, "body_part": body_part,
                        "description": description, "instance_count": v.announced,
                        "uri": first.as_uri()}]}
