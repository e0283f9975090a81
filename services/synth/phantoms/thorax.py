"""Shared axial chest-CT anatomy for the ``chest-ct`` and ``ldct-screening`` phantoms.

Why shared: both services read the same kind of series (an axial chest CT, stored int16 HU);
they differ in dose (noise) and in which findings are planted. Everything here is in mm (see
:mod:`services.synth.phantoms.volume`): rows run anterior (top) to posterior, columns patient
right (left of the image) to patient left, slices from the lung apices (0) to the bases.

Normal anatomy, all jittered per series: air (-1000 HU) around an elliptical body (half-width
120-135 mm, half-depth 85-100 mm), 8-14 mm of subcutaneous fat (-100 HU) over 40 HU muscle;
ribs as a broken ring of 450-650 HU at the chest wall; a sternum; mediastinal fat (-90 HU); two
lungs (ellipsoids narrowing to the apices, base -880..-830 HU plus +-15 HU smooth texture) with
120-180 vessels (-60..40 HU tubes, 16-50 mm long: 65 % in the axial plane, 1.6-5 mm calibre,
35 % craniocaudal, 1.6-4 mm calibre, so end-on they stay smaller than an 8 mm nodule); a liver
dome cutting the right base and a smaller left dome; the heart (40 HU, 2-5 mm epicardial fat);
the ascending aorta (28-36 mm), arch and descending aorta (20-28 mm) at 35-50 HU (non-contrast
blood); the pulmonary trunk (20-27 mm) above the heart with both branches; thoracic vertebral
bodies (180-260 HU with a 1.5-2.5 mm 500 HU cortex, 20-26 mm high, 5-7 mm discs) with the spinal
canal and spinous process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.synth.phantoms.volume import Grid3, ellipsoid, make_grid, paint, smooth_field

AIR = -1000.0
SIZE = 128


@dataclass
class Chest:
    """A rendered chest (HU, float32) and where its organs are, so findings can be placed."""

    vol: np.ndarray
    g: Grid3
    #: Lung parenchyma occupancy in [0, 1] (what is left of the lungs after other organs).
    lung: np.ndarray
    #: Per side ("right", "left"): lung ellipsoid centre (z, y, x) and semi-axes (z, y, x) in mm.
    lungs: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]]
    heart_c: tuple[float, float, float]
    heart_s: tuple[float, float, float]
    body: tuple[float, float]  # half-depth (y), half-width (x) in mm
    spine_y: float
    vertebrae: list[float] = field(default_factory=list)  # centre z of each vertebral body
    info: dict[str, float] = field(default_factory=dict)


def paint_into(vol: np.ndarray, box: tuple[slice, slice, slice], occ: np.ndarray,
               value: float | np.ndarray) -> None:
    """Blend ``value`` into ``vol[box]`` with occupancy ``occ`` (partial volume), in place."""
    if occ.size:
        target = vol[box]
        target += (np.asarray(value, dtype=np.float32) - target) * occ


def prism(g: Grid3, cy: float, cx: float, ry: float, rx: float, z0: float, z1: float,
          edge_mm: float = 1.5) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """A vertical elliptic cylinder from z0 to z1 (a vessel, the body, the canal)."""
    zc, zh = (z0 + z1) / 2, max((z1 - z0) / 2, 1e-3)
    box, _ = ellipsoid(g, (zc, cy, cx), (1.0, ry, rx), edge_mm=edge_mm)
    zbox = slice(*[int(v) for v in np.searchsorted(g.z.ravel(), [zc - zh, zc + zh + 1e-3])])
    full_z = (zbox, box[1], box[2])
    dy = (g.y[:, box[1]] - np.float32(cy)) / np.float32(ry)
    dx = (g.x[:, :, box[2]] - np.float32(cx)) / np.float32(rx)
    r = np.sqrt(dy * dy + dx * dx)
    plane = np.clip(0.5 - (r - 1.0) * np.float32(0.5 * (ry + rx) / edge_mm), 0.0, 1.0)
    depth = zbox.stop - zbox.start
    return full_z, np.broadcast_to(plane, (depth, *plane.shape[1:])).astype(np.float32)


def _remove_lung(chest_lung: np.ndarray, box: tuple[slice, slice, slice], occ: np.ndarray) -> None:
    if occ.size:
        chest_lung[box] *= np.float32(1.0) - occ


def build_chest(rng: np.random.Generator, *, slices: int, pixel_mm: float,
                slice_mm: float) -> Chest:
    """Draw one normal chest; findings are planted afterwards by the service modules."""
    g = make_grid(slices, SIZE, SIZE, pixel_mm, slice_mm)
    depth, h, w = g.shape
    half_l = float(g.z[-1, 0, 0])  # half the craniocaudal coverage
    vol = np.full((depth, h, w), AIR, dtype=np.float32)
    lung = np.zeros_like(vol)
    u = rng.uniform
    by, bx = u(85, 100), u(120, 135)
    oy, ox = u(-4, 6), u(-4, 4)
    # Body wall: fat then muscle.
    fat = u(8, 14)
    paint_into(vol, *prism(g, oy, ox, by, bx, -1e4, 1e4), -100.0)
    paint_into(vol, *prism(g, oy, ox, by - fat, bx - fat, -1e4, 1e4), 40.0)
    # Ribs: a broken ring just inside the muscle; the gaps drift with z (oblique ribs).
    yy, xx = g.y - np.float32(oy), g.x - np.float32(ox)
    r = np.sqrt((yy / np.float32(by - fat)) ** 2 + (xx / np.float32(bx - fat)) ** 2)
    ring = np.clip(1.0 - np.abs(r - 0.9) * np.float32(by / 5.0), 0.0, 1.0)
    theta = np.arctan2(yy, xx)
    phase = u(0, 2 * np.pi) + g.z * np.float32(u(0.03, 0.05))
    ribs = ring * (np.cos(theta * np.float32(6.0) + phase) > 0.2) * (np.abs(xx) > 28)
    rib_hu = u(450, 650)
    vol += (np.float32(rib_hu) - vol) * ribs.astype(np.float32)
    paint_into(vol, *prism(g, oy - by + fat + 9, ox, 7, 14, -0.8 * half_l, 0.5 * half_l), 400.0)
    # Mediastinal fat.
    paint_into(vol, *prism(g, oy - 10, ox, 0.6 * by, 42, -1e4, 1e4, edge_mm=4), -90.0)
    # Lungs.
    lungs: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    texture = smooth_field(rng, (depth, h, w), (4, 10, 10)) * np.float32(15.0)
    lung_hu = u(-880, -830)
    for side, sign, width in (("right", -1.0, 0.37), ("left", 1.0, 0.33)):
        c = (u(0.1, 0.2) * half_l, oy - u(0.0, 0.08) * by, ox + sign * u(0.43, 0.47) * bx)
        s = (u(1.05, 1.2) * half_l, u(0.68, 0.74) * by, width * bx * u(0.95, 1.05))
        lungs[side] = (c, s)
        box, occ = ellipsoid(g, c, s, edge_mm=2.0)
        np.maximum(lung[box], occ, out=lung[box])
    vol += (np.float32(lung_hu) + texture - vol) * lung
    # Abdomen domes at the bases (liver right, spleen/stomach left).
    for x_off, size, hu in ((-0.25, 1.0, 55.0), (0.3, 0.75, 45.0)):
        c = (half_l + u(45, 60) * size, oy, ox + x_off * bx)
        box, occ = ellipsoid(g, c, (80 * size, 0.75 * by, 0.55 * bx * size), edge_mm=3.0)
        paint_into(vol, box, occ, hu)
        _remove_lung(lung, box, occ)
    # Heart with epicardial fat; chest-ct may thicken the rim into an effusion later.
    heart_c = (u(0.2, 0.35) * half_l, oy - u(0.1, 0.2) * by, ox + u(10, 22))
    heart_s = (u(0.45, 0.55) * half_l, u(42, 52), u(52, 62))
    epi = u(2, 5)
    chest = Chest(vol, g, lung, lungs, heart_c, heart_s, (by, bx), oy + by - u(52, 58))
    chest.info.update(epicardial_fat_mm=round(epi, 1), lung_hu=round(lung_hu, 1),
                      rib_hu=round(rib_hu, 1))
    chest.info["epicardial_fat_mm"] = epi
    chest.info["ox"], chest.info["oy"] = ox, oy
    return chest


def add_heart(chest: Chest, rng: np.random.Generator, *, rim_mm: float, rim_hu: float) -> None:
    """Heart (40 HU) inside a rim of ``rim_mm`` at ``rim_hu`` (fat normally, fluid if effusion)."""
    c, s = chest.heart_c, chest.heart_s
    outer = (s[0] + rim_mm, s[1] + rim_mm, s[2] + rim_mm)
    box, occ = ellipsoid(chest.g, c, outer, edge_mm=1.5)
    paint_into(chest.vol, box, occ, rim_hu)
    _remove_lung(chest.lung, box, occ)
    paint(chest.vol, chest.g, rng.uniform(35, 45), c, s, edge_mm=1.5)


def add_vessels(chest: Chest, rng: np.random.Generator, *, aorta_asc_mm: float,
                aorta_desc_mm: float, trunk_mm: float) -> None:
    """Aorta (ascending, arch, descending) and pulmonary trunk + branches, given diameters."""
    g, vol = chest.g, chest.vol
    half_l = float(g.z[-1, 0, 0])
    ox = chest.info["ox"]
    by = chest.body[0]
    blood = rng.uniform(35, 50)
    hc = chest.heart_c
    asc_y, asc_x = hc[1] - 8, ox - rng.uniform(8, 14)
    desc_y, desc_x = chest.spine_y - rng.uniform(8, 14), ox + rng.uniform(22, 30)
    arch_z = -0.55 * half_l
    ra, rd, rp = aorta_asc_mm / 2, aorta_desc_mm / 2, trunk_mm / 2
    top_heart = hc[0] - chest.heart_s[0] * 0.5
    pieces = [
        prism(g, asc_y, asc_x, ra, ra, arch_z, top_heart),
        prism(g, desc_y, desc_x, rd, rd, arch_z, 0.95 * half_l),
        ellipsoid(g, (arch_z, (asc_y + desc_y) / 2, (asc_x + desc_x) / 2),
                  (rd, abs(desc_y - asc_y) / 2 + rd, max(abs(desc_x - asc_x) / 2, rd) + 2)),
    ]
    for box, occ in pieces:
        paint_into(vol, box, occ, blood)
        _remove_lung(chest.lung, box, occ)
    # The trunk leaves the heart's upper surface: centred just above it, in mediastinal fat.
    trunk_z = hc[0] - chest.heart_s[0] - rng.uniform(5, 12)
    trunk_c = (trunk_z, hc[1] - 0.2 * by, ox + rng.uniform(16, 24))
    for box, occ in (
        ellipsoid(g, trunk_c, (16.0, rp, rp), edge_mm=1.5),
        ellipsoid(g, (trunk_z - 18, hc[1] - 0.05 * by, ox), (9.0, 9.0, 55.0), edge_mm=1.5),
    ):
        paint_into(vol, box, occ, blood)
        _remove_lung(chest.lung, box, occ)
    chest.info.update(aorta_ascending_mm=aorta_asc_mm, aorta_descending_mm=aorta_desc_mm,
                      pulmonary_trunk_mm=trunk_mm)


def add_spine(chest: Chest, rng: np.random.Generator, *, compressed: int | None = None,
              height_loss: float = 0.0, compressed_hu: float = 0.0) -> None:
    """Vertebral bodies down the volume; ``compressed`` indexes one to flatten/demineralise."""
    g, vol = chest.g, chest.vol
    ox, sy = chest.info["ox"], chest.spine_y
    half_l = float(g.z[-1, 0, 0])
    for box, occ in (prism(g, sy, ox, 17, 21, -1e4, 1e4),):  # discs / paraspinal soft tissue
        paint_into(vol, box, occ, 60.0)
        _remove_lung(chest.lung, box, occ)
    height, disc = rng.uniform(20, 26), rng.uniform(5, 7)
    z = -half_l - rng.uniform(0, height + disc)
    bone = rng.uniform(180, 260)
    cortex = rng.uniform(1.5, 2.5)
    index = 0
    chest.vertebrae = []
    while z < half_l + height:
        hz, hu = height / 2, bone
        if compressed is not None and index == compressed:
            hz, hu = hz * (1.0 - height_loss), compressed_hu
        centre = (z + height / 2, sy, ox)
        paint(vol, g, 500.0, centre, (hz, 16, 19), edge_mm=1.0)
        paint(vol, g, hu, centre, (max(hz - cortex, 0.5), 16 - cortex, 19 - cortex),
              edge_mm=1.0)
        chest.vertebrae.append(z + height / 2)
        z += height + disc
        index += 1
    paint_into(vol, *prism(g, sy + 25, ox, 7, 8, -1e4, 1e4), 15.0)  # spinal canal (CSF)
    paint_into(vol, *prism(g, sy + 42, ox, 9, 4, -1e4, 1e4), 400.0)  # spinous processes
    chest.info.update(vertebral_hu=round(bone, 1), vertebral_height_mm=round(height, 1))


def add_lung_vessels(chest: Chest, rng: np.random.Generator, count: int) -> None:
    """Pulmonary vessels: soft-tissue tubes inside the lungs.

    Why tubes: a vessel is a branch of a tree, so on a slab MIP it is a line (or, running
    craniocaudally, a dot no wider than its calibre), while a nodule is a round blob; short
    ovoid "vessels" would be nodule mimics no reader could tell apart. 65 % run in the axial
    plane at a random angle (1.6-5 mm calibre, 16-50 mm long, partial-volumed over the slice
    thickness), 35 % craniocaudally (1.6-4 mm calibre, below the 8 mm of an actionable nodule).
    """
    g = chest.g
    for _ in range(count):
        point = lung_point(chest, rng, margin=3.0)
        if point is None:
            continue
        half_len = rng.uniform(8.0, 25.0)
        hu = rng.uniform(-60, 40)
        if rng.random() < 0.65:
            radius = rng.uniform(0.8, 2.5)
            # In-plane tube: as thick as one slice, its density diluted by the slice thickness.
            thick = max(radius, 0.5 * g.slice_mm)
            semi = (thick, radius, half_len)
            weight = min(1.0, radius / thick)
            edge = max(1.0, 0.5 * (radius + half_len) / radius)
        else:
            radius = rng.uniform(0.8, 2.0)
            semi, weight, edge = (half_len, radius, radius), 1.0, 1.0
        box, occ = ellipsoid(g, point, semi, edge_mm=edge, angle=rng.uniform(0, np.pi))
        paint_into(chest.vol, box, occ * chest.lung[box] * np.float32(weight), hu)


def lung_point(chest: Chest, rng: np.random.Generator, *, margin: float,
               side: str | None = None, tries: int = 40) -> tuple[float, float, float] | None:
    """A random (z, y, x) in mm whose voxel is lung, ``margin`` mm from non-lung in-plane."""
    sides = [side] if side else list(chest.lungs)
    for _ in range(tries):
        c, s = chest.lungs[sides[int(rng.integers(len(sides)))]]
        a, b, d = (float(c[i] + rng.uniform(-0.85, 0.85) * s[i]) for i in range(3))
        if inside_lung(chest, (a, b, d), margin):
            return (a, b, d)
    return None


def voxel(g: Grid3, point: tuple[float, float, float]) -> tuple[int, int, int]:
    z, y, x = point
    k = int(np.clip(np.rint(z / g.slice_mm + (g.shape[0] - 1) / 2), 0, g.shape[0] - 1))
    i = int(np.clip(np.rint(y / g.pixel_mm + (g.shape[1] - 1) / 2), 0, g.shape[1] - 1))
    j = int(np.clip(np.rint(x / g.pixel_mm + (g.shape[2] - 1) / 2), 0, g.shape[2] - 1))
    return k, i, j


def inside_lung(chest: Chest, point: tuple[float, float, float], margin: float) -> bool:
    """True when the point and its four in-plane neighbours ``margin`` mm away are lung."""
    z, y, x = point
    for dy, dx in ((0, 0), (margin, 0), (-margin, 0), (0, margin), (0, -margin)):
        if chest.lung[voxel(chest.g, (z, y + dy, x + dx))] < 0.9:
            return False
    return True
