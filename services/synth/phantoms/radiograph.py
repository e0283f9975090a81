"""Shared drawing and exposure helpers for the 2-D radiograph phantoms (DX and MG).

Why a separate module: the five projection-radiography generators (mammography, knee, pelvis,
wrist, foot) draw the same things — soft-edged bones over soft tissue, trabecular texture,
lucent fracture lines, a collimated air border — and expose them the same way to 12-bit
MONOCHROME2 detector values. Everything here works in PIXEL units on a (rows, cols) grid, which
keeps lesion sizes in the docstrings directly comparable to the image.

Attenuation convention: 0 = air, about 0.35..0.5 = soft tissue, bone adds 0.25..0.6 on top.
"""

from __future__ import annotations

import numpy as np

#: Largest value of a 12-bit detector.
MAX_VALUE_12BIT = 4095
#: Fraction of rows/columns on each side that the collimator keeps at air (contract: >= 6 %).
AIR_MARGIN = 0.075
#: Fraction over which the field ramps from air to full exposure inside the margin.
AIR_RAMP = 0.03


def pixel_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel-centre coordinates, broadcast views of shape (rows, cols), float32."""
    x = np.arange(cols, dtype=np.float32)[None, :]
    y = np.arange(rows, dtype=np.float32)[:, None]
    xx, yy = np.broadcast_arrays(x, y)
    return xx, yy


def soft_step(d: np.ndarray, edge: float) -> np.ndarray:
    """1 where the signed distance ``d`` is well below 0, 0 well above, a smooth ramp of about
    ``edge`` pixels between (a detector's blur; hard edges would alias on downsampling)."""
    return (0.5 - 0.5 * np.tanh(d * np.float32(1.0 / max(edge, 1e-3)))).astype(np.float32)


def ellipse_px(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float,
               angle: float = 0.0, edge: float = 1.0) -> np.ndarray:
    """Soft-edged filled ellipse (semi-axes in pixels, ``angle`` in radians), values in [0, 1]."""
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = dx * c + dy * s, -dx * s + dy * c
    r = np.sqrt((dx * np.float32(1.0 / ax)) ** 2 + (dy * np.float32(1.0 / ay)) ** 2)
    # Signed distance approximated by (r - 1) times the mean semi-axis.
    return soft_step((r - 1.0) * np.float32(0.5 * (ax + ay)), edge)


def superellipse_px(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float,
                    power: float = 4.0, angle: float = 0.0, edge: float = 1.0) -> np.ndarray:
    """A rounded rectangle (``power`` 4) or ellipse (2): the shape of a tibial plateau or a
    distal radius, soft-edged, values in [0, 1]."""
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = dx * c + dy * s, -dx * s + dy * c
    r = (np.abs(dx * np.float32(1.0 / ax)) ** power
         + np.abs(dy * np.float32(1.0 / ay)) ** power) ** np.float32(1.0 / power)
    return soft_step((r - 1.0) * np.float32(0.5 * (ax + ay)), edge)


def bone(mask: np.ndarray, density: float, cortex: float, rim_px: float,
         texture: np.ndarray | None = None) -> np.ndarray:
    """Attenuation of a bone from its soft mask: a medullary density, a brighter cortical rim
    (where the mask is partial after a ``rim_px`` blur, approximated by mask*(1-mask)) and an
    optional trabecular texture in about [-1, 1]."""
    rim = 4.0 * mask * (1.0 - mask)
    out = density * mask + cortex * rim * min(1.0, rim_px / 2.0)
    if texture is not None:
        out = out + 0.06 * density * texture * mask
    return out.astype(np.float32)


def fast_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise in about [-1, 1] with features ``cell`` pixels across: a coarse Gaussian
    grid bilinearly upsampled by two small interpolation matrices (about 0.2 ms at 256x256)."""
    rows, cols = shape
    cr, cc = int(rows / cell) + 2, int(cols / cell) + 2
    coarse = rng.standard_normal((cr, cc)).astype(np.float32)
    return (_interp_matrix(rows, cr) @ coarse @ _interp_matrix(cols, cc).T).astype(np.float32)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.linspace(0.0, n_in - 1.0, n_out, dtype=np.float32)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    mat[np.arange(n_out), lo] = 1.0 - frac
    mat[np.arange(n_out), lo + 1] = frac
    return mat


def collimation(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Field mask: 0 (air) on the outer ring of at least ``AIR_MARGIN`` of each side, ramping
    to 1 inside; the margin jitters a little per image, like a hand-set collimator."""
    rows, cols = shape
    out = []
    for n in (rows, cols):
        margin = n * (AIR_MARGIN + float(rng.uniform(0.0, 0.015)))
        ramp = n * AIR_RAMP
        t = np.arange(n, dtype=np.float32)
        d = np.minimum(t, n - 1 - t) - np.float32(margin)
        out.append(np.clip(d / np.float32(ramp), 0.0, 1.0))
    return (out[0][:, None] * out[1][None, :]).astype(np.float32)


def lucent_line(x: np.ndarray, y: np.ndarray, x0: float, y0: float, angle: float,
                width: float, half_length: float, wiggle: np.ndarray | None = None
                ) -> np.ndarray:
    """Profile in [0, 1] of a thin line through (x0, y0) at ``angle`` (radians from the
    x axis): Gaussian across (``width`` px FWHM-ish), soft ends at ``half_length`` px; an
    optional ``wiggle`` field (px) bends it like a real jagged fracture line."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx, dy = x - np.float32(x0), y - np.float32(y0)
    along = dx * c + dy * s
    across = -dx * s + dy * c
    if wiggle is not None:
        across = across + wiggle
    prof = np.exp(-(across * np.float32(1.0 / max(width, 0.3))) ** 2)
    return (prof * soft_step(np.abs(along) - np.float32(half_length), 2.0)).astype(np.float32)


def expose(rng: np.random.Generator, atten: np.ndarray, field: np.ndarray,
           gain: tuple[float, float] = (2600.0, 3600.0),
           noise: tuple[float, float] = (8.0, 25.0)) -> np.ndarray:
    """Attenuation map -> 12-bit MONOCHROME2 stored values (bright = attenuating), shape
    (1, rows, cols) uint16. Random gain, a small dark offset and quantum-like noise vary per
    image so that no model can key on absolute intensity; air stays the lowest values."""
    g = float(rng.uniform(*gain))
    offset = float(rng.uniform(20.0, 120.0))
    sd = float(rng.uniform(*noise))
    raw = offset + g * (atten * field)
    raw += (sd * rng.standard_normal(size=atten.shape, dtype=np.float32)).astype(np.float32)
    return np.clip(np.rint(raw), 0, MAX_VALUE_12BIT).astype(np.uint16)[np.newaxis]


def shading(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, amount: float) -> np.ndarray:
    """Slow multiplicative-looking shading (heel effect, thickness) of about ``amount``."""
    rows, cols = x.shape
    gx, gy = rng.uniform(-1.0, 1.0, size=2)
    return (amount * (gx * (x / cols - 0.5) + gy * (y / rows - 0.5))).astype(np.float32)
