"""Shared 3-D drawing primitives for the CT/MR volume phantoms, in millimetres.

Why a separate module: the 2-D primitives in :mod:`services.synth.phantoms.base` work on full
images; a 40x128x128 volume is 25x larger, so here every shape is painted only inside its
bounding box, edges are linear partial-volume ramps instead of exponentials, and noise/texture
use float32 throughout. That keeps a whole volume under ~100 ms on one core.

Coordinates are millimetres from the volume centre: ``x`` across columns (patient left-right on
an axial slice), ``y`` down rows, ``z`` along slices. Shapes take centres and semi-axes in mm,
so a documented "6 mm lesion" is 6 mm whatever the pixel spacing drawn for that series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: (z, y, x) in millimetres: a centre or the semi-axes of a shape.
Vec3 = Sequence[float]


@dataclass(frozen=True)
class Grid3:
    """Voxel-centre coordinates (mm) of one volume, broadcastable to (slices, rows, cols)."""

    z: np.ndarray  # (D, 1, 1)
    y: np.ndarray  # (1, H, 1)
    x: np.ndarray  # (1, 1, W)
    pixel_mm: float
    slice_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.shape[0], self.y.shape[1], self.x.shape[2])


def make_grid(slices: int, rows: int, cols: int, pixel_mm: float, slice_mm: float) -> Grid3:
    """A grid centred on the volume centre."""
    def axis(n: int, step: float) -> np.ndarray:
        return ((np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2)) * np.float32(step))

    return Grid3(z=axis(slices, slice_mm)[:, None, None], y=axis(rows, pixel_mm)[None, :, None],
                 x=axis(cols, pixel_mm)[None, None, :], pixel_mm=pixel_mm, slice_mm=slice_mm)


def child_rngs(rng: np.random.Generator, n: int) -> list[np.random.Generator]:
    """Independent generators drawn from ``rng``'s state (not its seed sequence), so the same
    state gives the same children, and a finding drawn from one never shifts the anatomy drawn
    from another (a positive and a negative render of one seed differ only at the lesion)."""
    return [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=n)]


def _box(coord: np.ndarray, lo: float, hi: float) -> slice:
    """Index range of a sorted 1-D coordinate inside [lo, hi] (empty slice if none)."""
    flat = coord.ravel()
    start = int(np.searchsorted(flat, lo, side="left"))
    stop = int(np.searchsorted(flat, hi, side="right"))
    return slice(start, max(start, stop))


def ellipsoid(g: Grid3, center: Vec3, semi: Vec3,
              *, edge_mm: float = 1.0, angle: float = 0.0,
              ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Soft ellipsoid occupancy in [0, 1] inside its bounding box.

    Arguments:
        center: (z, y, x) in mm. semi: (z, y, x) semi-axes in mm.
        edge_mm: width of the linear partial-volume ramp at the surface.
        angle: in-plane rotation (radians) of the y/x axes.

    Returns the (z, y, x) index box and the occupancy array of that box's shape.
    """
    cz, cy, cx = center
    az, ay, ax = (max(float(s), 1e-3) for s in semi)
    reach = max(ay, ax) + edge_mm
    box = (_box(g.z, cz - az - edge_mm, cz + az + edge_mm),
           _box(g.y, cy - reach, cy + reach), _box(g.x, cx - reach, cx + reach))
    dz = (g.z[box[0]] - np.float32(cz)) / np.float32(az)
    dy = g.y[:, box[1]] - np.float32(cy)
    dx = g.x[:, :, box[2]] - np.float32(cx)
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dy, dx = dy * c - dx * s, dy * s + dx * c
    r = np.sqrt(dz * dz + (dy / np.float32(ay)) ** 2 + (dx / np.float32(ax)) ** 2)
    # Distance-like ramp: (r - 1) times the mean in-plane semi-axis approximates mm to surface.
    scale = np.float32(0.5 * (ay + ax) / edge_mm)
    occ = np.clip(np.float32(0.5) - (r - np.float32(1.0)) * scale, 0.0, 1.0)
    return box, occ.astype(np.float32, copy=False)


def paint(vol: np.ndarray, g: Grid3, value: float | np.ndarray,
          center: Vec3, semi: Vec3, *,
          edge_mm: float = 1.0, angle: float = 0.0, weight: float = 1.0) -> np.ndarray:
    """Replace tissue inside an ellipsoid by ``value`` (partial volume at the edge), in place.

    Returns the occupancy of the painted box (callers may reuse it, e.g. as a mask)."""
    box, occ = ellipsoid(g, center, semi, edge_mm=edge_mm, angle=angle)
    if occ.size:
        if weight != 1.0:
            occ = occ * np.float32(weight)
        target = vol[box]
        target += (np.asarray(value, dtype=np.float32) - target) * occ
    return occ


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int],
                 cells: tuple[int, int, int]) -> np.ndarray:
    """Smooth random field of about unit variance: a coarse Gaussian grid of ``cells`` knots per
    axis, linearly interpolated (separable, by small matrix products) to ``shape``."""
    coarse = rng.standard_normal(tuple(c + 1 for c in cells), dtype=np.float32)

    def interp(n: int, knots: int) -> np.ndarray:
        pos = np.linspace(0.0, knots - 1, n, dtype=np.float32)
        idx = np.arange(knots, dtype=np.float32)
        return np.clip(1.0 - np.abs(pos[:, None] - idx[None, :]), 0.0, 1.0).astype(np.float32)

    d, h, w = shape
    az, ay, ax = (interp(n, c + 1) for n, c in zip(shape, cells, strict=True))
    out = coarse @ ax.T                                  # (cz, cy, W)
    out = np.einsum("hy,zyw->zhw", ay, out)              # (cz, H, W)
    out = np.tensordot(az, out, axes=(1, 0))             # (D, H, W)
    out *= np.float32(1.0 / max(float(out.std()), 1e-6))
    return out.astype(np.float32, copy=False).reshape(d, h, w)


def to_stored(values: np.ndarray, rng: np.random.Generator, *, noise: float, dtype: type,
              intercept: float = 0.0, rician: bool = False) -> np.ndarray:
    """Physical values + white noise -> clipped stored integers (slope 1).

    ``rician``: magnitude MR noise (|signal + complex Gaussian|), which keeps air near 0 but
    never negative, as on a real magnitude image."""
    n1 = rng.standard_normal(values.shape, dtype=np.float32)
    n1 *= np.float32(noise)
    if rician:
        n2 = rng.standard_normal(values.shape, dtype=np.float32)
        n2 *= np.float32(noise)
        noisy = np.sqrt((values + n1) ** 2 + n2 * n2)
    else:
        noisy = values + n1
    if intercept:
        noisy -= np.float32(intercept)
    np.rint(noisy, out=noisy)
    np.clip(noisy, np.iinfo(dtype).min, np.iinfo(dtype).max, out=noisy)
    return noisy.astype(dtype)


def border_ring(shape: tuple[int, ...], fraction: float = 0.06) -> np.ndarray:
    """Boolean mask of the outer ``fraction`` of rows/columns (the contract's air border)."""
    rows, cols = shape
    br, bc = max(1, int(np.ceil(rows * fraction))), max(1, int(np.ceil(cols * fraction)))
    ring = np.ones(shape, dtype=bool)
    ring[br:rows - br, bc:cols - bc] = False
    return ring
