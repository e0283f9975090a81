"""Comprehensive chest CT phantom for the ``chest-ct`` service (ten findings).

Series: axial non-contrast CT, 32-40 slices of 128x128, stored int16 HU (slope 1, intercept 0),
pixel spacing 2.6-2.9 mm (field of view 333-371 mm), slice spacing so that 240-290 mm of chest
is covered (6-9 mm), standard dose (noise sigma 12-22 HU), BodyPartExamined CHEST, description
"CHEST 1.0 B70f"-like (never "low dose"/"screening", which belong to ``ldct-screening``).
Normal anatomy: :mod:`services.synth.phantoms.thorax`.

Findings (each planted independently; sizes in mm, HU before noise):

- ``ct_lung_nodule``: one solid nodule, diameter 8-30 mm (log-uniform, so many are small; 8 mm
  is where Fleischner/Lung-RADS make a solid nodule actionable, end-on vessels stay <= 4 mm, and
  above 30 mm it would be called a mass),
  -20..60 HU, slightly ellipsoidal, 40 % lobulated by a 50-80 % satellite; anywhere in either
  lung at least its radius from the pleura/mediastinum.
- ``covid19_pattern``: bilateral peripheral ground-glass: 2-4 patches per lung, 20-50 mm, lung
  attenuation raised by 180-320 HU (about -650..-500 HU), soft 4 mm edges, centred in the outer
  (lateral/posterior) third of the lower two thirds of each lung.
- ``emphysema``: bilateral upper-zone centrilobular lucency: 8-25 % of the upper 60 % of both
  lungs (a thresholded smooth random field) set to -990..-955 HU, i.e. below -950 HU.
- ``pleural_effusion``: dependent fluid (5-20 HU) filling the posterior 10-40 mm of one (60 %)
  or both lungs, deepest at the base and thinning to a third upwards over the lower 55-75 %
  of the lung, with a meniscus following the posterior chest wall.
- ``pulmonary_trunk_dilation``: pulmonary trunk diameter 31-40 mm (normal 20-27 mm).
- ``thoracic_aortic_dilation``: ascending aorta 41-52 mm (60 %) or descending 40-48 mm
  (normal 28-36 and 20-28 mm).
- ``coronary_calcium``: 1-3 calcified segments, 3-6 mm thick and 10-25 mm long (craniocaudal,
  along the artery), 300-1000 HU, in the epicardial fat of the anterior interventricular groove
  (LAD: the anterolateral left heart border, 35-65 degrees left of straight anterior, so clear of
  the sternum as in a real heart) or the right atrioventricular groove (RCA: right lateral
  border), in the upper half of the heart.
- ``vertebral_compression``: one thoracic vertebral body in the middle of the volume loses
  30-55 % of its height, and its cancellous bone drops to 70-130 HU (normal 180-260 HU).
- ``pneumothorax``: one side: pleural air (-1000 HU, no vessels or texture) filling the anterior
  8-30 mm of the lung over 40-85 % of its height; the collapsed lung behind is 30-60 HU denser.
- ``pericardial_effusion``: a 6-18 mm rim of fluid (8-20 HU) around the heart, replacing the
  normal 2-5 mm epicardial fat (-90 HU) and pushing back the lungs.
"""

from __future__ import annotations

import numpy as np

from services.synth.phantoms import thorax
from services.synth.phantoms.base import Phantom
from services.synth.phantoms.ldct_screening import plant_nodule
from services.synth.phantoms.volume import child_rngs, ellipsoid, paint, smooth_field, to_stored

SERVICE = "chest-ct"
FINDINGS: tuple[str, ...] = (
    "ct_lung_nodule", "covid19_pattern", "emphysema", "pleural_effusion",
    "pulmonary_trunk_dilation", "thoracic_aortic_dilation", "coronary_calcium",
    "vertebral_compression", "pneumothorax", "pericardial_effusion",
)
PREVALENCE: dict[str, float] = {code: 0.3 for code in FINDINGS}
DESCRIPTIONS = ("CHEST 1.0 B70f", "CT THORAX WITH LUNG KERNEL", "CHEST ROUTINE 1.25")


def render(rng: np.random.Generator, positives: frozenset[str]) -> Phantom:
    """One chest CT series with exactly ``positives`` planted."""
    unknown = set(positives) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}")
    geo, anat, lesion, noise_rng = child_rngs(rng, 4)
    slices = int(geo.integers(32, 41))
    pixel_mm = float(geo.uniform(2.6, 2.9))
    slice_mm = float(geo.uniform(240, 290)) / slices
    truth: dict[str, object] = {}
    chest = thorax.build_chest(anat, slices=slices, pixel_mm=pixel_mm, slice_mm=slice_mm)

    # Structures whose size is the finding are drawn as normal or abnormal from the start.
    if "pericardial_effusion" in positives:
        rim, hu = float(lesion.uniform(6, 18)), float(lesion.uniform(8, 20))
        truth["pericardial_effusion"] = {"thickness_mm": round(rim, 1), "hu": round(hu, 1)}
    else:
        rim, hu = chest.info["epicardial_fat_mm"], -90.0
    thorax.add_heart(chest, anat, rim_mm=rim, rim_hu=hu)

    asc, desc = float(anat.uniform(28, 36)), float(anat.uniform(20, 28))
    if "thoracic_aortic_dilation" in positives:
        if lesion.random() < 0.6:
            asc = float(lesion.uniform(41, 52))
            truth["thoracic_aortic_dilation"] = {"segment": "ascending", "diameter_mm": asc}
        else:
            desc = float(lesion.uniform(40, 48))
            truth["thoracic_aortic_dilation"] = {"segment": "descending", "diameter_mm": desc}
    trunk = float(anat.uniform(20, 27))
    if "pulmonary_trunk_dilation" in positives:
        trunk = float(lesion.uniform(31, 40))
        truth["pulmonary_trunk_dilation"] = {"diameter_mm": round(trunk, 1)}
    thorax.add_vessels(chest, anat, aorta_asc_mm=asc, aorta_desc_mm=desc, trunk_mm=trunk)

    compressed, loss, bone_hu = None, 0.0, 0.0
    if "vertebral_compression" in positives:
        loss, bone_hu = float(lesion.uniform(0.3, 0.55)), float(lesion.uniform(70, 130))
        compressed = -1  # resolved below, once the level count is known
    thorax.add_spine(chest, anat)
    if compressed is not None:
        mid = [i for i, z in enumerate(chest.vertebrae) if abs(z) < 0.45 * chest.g.z[-1, 0, 0]]
        level = int(lesion.choice(mid)) if mid else len(chest.vertebrae) // 2
        _compress(chest, level, loss, bone_hu)
        truth["vertebral_compression"] = {"level_index": level, "height_loss": round(loss, 2),
                                          "cancellous_hu": round(bone_hu, 1)}
    thorax.add_lung_vessels(chest, anat, int(anat.integers(120, 181)))

    if "emphysema" in positives:
        truth["emphysema"] = _emphysema(chest, lesion)
    if "covid19_pattern" in positives:
        truth["covid19_pattern"] = _ground_glass(chest, lesion)
    if "ct_lung_nodule" in positives:
        truth["ct_lung_nodule"] = _nodule(chest, lesion)
    if "coronary_calcium" in positives:
        truth["coronary_calcium"] = _calcium(chest, lesion)
    if "pleural_effusion" in positives:
        truth["pleural_effusion"] = _pleural_effusion(chest, lesion)
    if "pneumothorax" in positives:
        truth["pneumothorax"] = _pneumothorax(chest, lesion)

    noise = float(noise_rng.uniform(12, 22))
    pixels = to_stored(chest.vol, noise_rng, noise=noise, dtype=np.int16)
    return Phantom(
        pixels=pixels, modality="CT", body_part="CHEST",
        series_description=str(DESCRIPTIONS[int(geo.integers(len(DESCRIPTIONS)))]),
        pixel_spacing=(pixel_mm, pixel_mm), slice_spacing=slice_mm, window=(-600.0, 1500.0),
        labels={code: code in positives for code in FINDINGS}, truth=truth,
    )


def _compress(chest: thorax.Chest, level: int, loss: float, bone_hu: float) -> None:
    """Redraw one vertebral body shorter and demineralised (the gap becomes soft tissue)."""
    z = chest.vertebrae[level]
    height = float(chest.info["vertebral_height_mm"])
    sy, ox = chest.spine_y, chest.info["ox"]
    paint(chest.vol, chest.g, 60.0, (z, sy, ox), (height / 2, 16, 19), edge_mm=1.0)
    hz = height / 2 * (1.0 - loss)
    paint(chest.vol, chest.g, 420.0, (z, sy, ox), (hz, 16, 19), edge_mm=1.0)
    paint(chest.vol, chest.g, bone_hu, (z, sy, ox), (max(hz - 1.5, 0.5), 14.5, 17.5),
          edge_mm=1.0)


def _emphysema(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    g = chest.g
    field = smooth_field(rng, g.shape, (10, 24, 24))
    half_l = float(g.z[-1, 0, 0])
    upper = np.clip((0.2 * half_l - g.z) / (0.3 * half_l), 0.0, 1.0)  # upper ~60 % of lungs
    fraction = float(rng.uniform(0.08, 0.25))
    cut = float(np.quantile(field, 1.0 - fraction))
    mask = np.clip((field - cut) * 4.0, 0.0, 1.0) * chest.lung * upper
    hu = float(rng.uniform(-990, -955))
    chest.vol += (np.float32(hu) - chest.vol) * mask
    return {"fraction_upper_lung": round(fraction, 2), "hu": round(hu, 1)}


def _ground_glass(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    patches = []
    for side, (c, s) in chest.lungs.items():
        sign = 1.0 if side == "left" else -1.0
        for _ in range(int(rng.integers(2, 5))):
            ang = rng.uniform(-0.3, 1.4)  # lateral (0) round to posterior (pi/2)
            point = (c[0] + rng.uniform(0.0, 0.6) * s[0],
                     c[1] + 0.7 * s[1] * np.sin(ang), c[2] + sign * 0.7 * s[2] * np.cos(ang))
            radius = float(rng.uniform(10, 25))
            box, occ = ellipsoid(chest.g, point, (radius * 1.2, radius, radius), edge_mm=4.0)
            if occ.size:
                delta = float(rng.uniform(180, 320))
                chest.vol[box] += np.float32(delta) * occ * chest.lung[box]
            patches.append({"side": side, "diameter_mm": round(2 * radius, 1)})
    return {"patches": patches}


def _nodule(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    return plant_nodule(chest, rng, 8.0, 30.0)


def _calcium(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    c, s = chest.heart_c, chest.heart_s
    rim = chest.info["epicardial_fat_mm"]
    plaques = []
    for _ in range(int(rng.integers(1, 4))):
        artery = "LAD" if rng.random() < 0.6 else "RCA"
        # Angles in the image plane (x = patient left, y = posterior): LAD anterolateral left.
        ang = rng.uniform(-1.0, -0.5) if artery == "LAD" else rng.uniform(2.6, 3.3)
        z = c[0] - rng.uniform(0.0, 0.6) * s[0]
        point = (z, c[1] + (s[1] + rim / 2) * np.sin(ang), c[2] + (s[2] + rim / 2) * np.cos(ang))
        d = float(rng.uniform(3.0, 6.0))
        length = float(rng.uniform(10, 25))  # the artery runs craniocaudally here
        hu = float(rng.uniform(300, 1000))
        paint(chest.vol, chest.g, hu, point, (length / 2, d / 2, d / 2), edge_mm=0.7)
        plaques.append({"artery": artery, "diameter_mm": round(d, 1),
                        "length_mm": round(length, 1), "hu": round(hu, 1)})
    return {"plaques": plaques}


def _pleural_effusion(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    g = chest.g
    sides = ["right", "left"] if rng.random() < 0.4 else [str(rng.choice(["right", "left"]))]
    depth_max = float(rng.uniform(10, 40))
    hu = float(rng.uniform(5, 20))
    extent = float(rng.uniform(0.55, 0.75))
    for side in sides:
        c, s = chest.lungs[side]
        z_top = c[0] + s[0] - 2 * s[0] * extent
        grow = np.clip((g.z - z_top) / max(c[0] + s[0] - z_top, 1.0), 0.0, 1.0)
        depth = depth_max * (1.0 / 3.0 + 2.0 / 3.0 * grow) * (g.z > z_top)
        inside = 1.0 - ((g.x - c[2]) / s[2]) ** 2
        back = c[1] + s[1] * np.sqrt(np.clip(inside, 0.0, 1.0))  # posterior lung wall
        fluid = np.clip((g.y - (back - depth)) / 2.0 + 0.5, 0.0, 1.0) * (depth > 0)
        side_mask = (g.x > 0) if side == "left" else (g.x <= 0)
        mask = fluid * chest.lung * side_mask
        chest.vol += (np.float32(hu) - chest.vol) * mask.astype(np.float32)
    return {"sides": sides, "max_depth_mm": round(depth_max, 1), "hu": round(hu, 1)}


def _pneumothorax(chest: thorax.Chest, rng: np.random.Generator) -> dict[str, object]:
    g = chest.g
    side = str(rng.choice(["right", "left"]))
    c, s = chest.lungs[side]
    depth = float(rng.uniform(8, 30))
    span = float(rng.uniform(0.4, 0.85))
    z0 = c[0] - s[0] * span
    inside = 1.0 - ((g.x - c[2]) / s[2]) ** 2
    front = c[1] - s[1] * np.sqrt(np.clip(inside, 0.0, 1.0))  # anterior lung wall
    in_z = (g.z > z0) * (g.z < c[0] + 0.3 * s[0])
    air = np.clip(((front + depth) - g.y) / 2.0 + 0.5, 0.0, 1.0) * in_z
    side_mask = (g.x > 0) if side == "left" else (g.x <= 0)
    lung_side = chest.lung * side_mask
    mask = (air * lung_side).astype(np.float32)
    denser = float(rng.uniform(30, 60))
    chest.vol += np.float32(denser) * (lung_side * (1.0 - mask)).astype(np.float32)
    chest.vol += (np.float32(thorax.AIR) - chest.vol) * mask
    return {"side": side, "depth_mm": round(depth, 1), "extent": round(span, 2)}
