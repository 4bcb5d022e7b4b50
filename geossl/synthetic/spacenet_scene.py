"""The drawing of the SpaceNet samples: roads, buildings, roofs and shadows, and the products.

`_place_buildings` lays out non-overlapping footprints clear of the roads in pixel space;
`_render` draws background, roads, shadows and roofs (roofs on exactly the pixels that
``rasterio.features.rasterize(..., all_touched=False)`` gives for each polygon);
`_products` turns the canvas into the image products (uint8 RGB, 11-bit multispectral,
panchromatic). Used by [`geossl.synthetic.spacenet`][geossl.synthetic.spacenet].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

FloatArray = npt.NDArray[np.float32]


_MS_FACTOR = 4  # multispectral pixel / pan-sharpened pixel (WorldView-2/3)
_DN_GAIN = 1600.0  # reflectance-like [0, 1] -> 11-bit digital number
_DN_MAX = 2047

# Roof palette (RGB in [0, 1]): concrete, terracotta, white, dark metal, blue metal, tan.
_ROOFS = np.array(
    [
        [0.78, 0.76, 0.72],
        [0.72, 0.36, 0.24],
        [0.90, 0.90, 0.88],
        [0.42, 0.44, 0.48],
        [0.52, 0.62, 0.74],
        [0.82, 0.67, 0.50],
    ],
    dtype=np.float32,
)
_VEGETATION = np.array([0.22, 0.34, 0.16], dtype=np.float32)
_SOIL = np.array([0.52, 0.44, 0.34], dtype=np.float32)
_ASPHALT = np.array([0.33, 0.33, 0.34], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> FloatArray:
    """Value noise in [0, 1]: a random grid of ``cell``-pixel spacing, bilinearly upsampled."""
    grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
    image = Image.fromarray(grid, mode="F").resize(
        ((width // cell + 2) * cell, (height // cell + 2) * cell), Image.Resampling.BILINEAR
    )
    return np.asarray(image, dtype=np.float32)[:height, :width]


def _roads(
    rng: np.random.Generator, height: int, width: int, gsd_m: float
) -> tuple[list[Polygon], float]:
    """1-3 straight roads (pixel-space polygons) across the chip, and the street-grid angle."""
    angle = float(rng.uniform(-20.0, 20.0))
    roads: list[Polygon] = []
    centre = (width / 2.0, height / 2.0)
    span = 2.0 * max(height, width)
    for k in range(int(rng.integers(1, 4))):
        half = float(rng.uniform(3.0, 5.0)) / gsd_m
        offset = float(rng.uniform(-0.4, 0.4)) * (height if k % 2 == 0 else width)
        strip = box(
            centre[0] - span, centre[1] + offset - half, centre[0] + span, centre[1] + offset + half
        )
        roads.append(affinity.rotate(strip, angle + (90.0 if k % 2 else 0.0), origin=centre))
    return roads, angle


def _building(
    rng: np.random.Generator, height: int, width: int, gsd_m: float, angle: float
) -> BaseGeometry:
    """A rotated rectangle (or an L of two) in pixel coordinates; may cross the chip edge."""
    cx = float(rng.uniform(-0.05, 1.05)) * width
    cy = float(rng.uniform(-0.05, 1.05)) * height
    side_a = float(rng.uniform(7.0, 22.0)) / gsd_m
    side_b = side_a * float(rng.uniform(0.5, 1.0))
    shape: BaseGeometry = box(cx - side_a / 2, cy - side_b / 2, cx + side_a / 2, cy + side_b / 2)
    if rng.random() < 0.25:  # an L-shaped house: a wing on one corner
        wing = box(cx, cy, cx + side_a / 2, cy + side_b * float(rng.uniform(0.9, 1.4)))
        shape = unary_union([shape, wing])
    return affinity.rotate(shape, angle + float(rng.normal(0.0, 4.0)), origin=(cx, cy))


def _place_buildings(
    rng: np.random.Generator, count: int, height: int, width: int, gsd_m: float
) -> tuple[list[Polygon], list[bool], list[Polygon]]:
    """Place non-overlapping buildings clear of the roads, clipped to the chip.

    Returns:
        The buildings (pixel space), whether each was cut by the chip edge, and the roads.
    """
    roads, angle = _roads(rng, height, width, gsd_m)
    chip = box(0.0, 0.0, float(width), float(height))
    taken: list[BaseGeometry] = []
    buildings: list[Polygon] = []
    partial: list[bool] = []
    gap = 1.5 / gsd_m  # keep 1.5 m between footprints so that masks do not merge
    for _ in range(count * 20):
        if len(buildings) == count:
            break
        footprint = _building(rng, height, width, gsd_m, angle)
        if any(footprint.buffer(gap).intersects(t) for t in (*roads, *taken)):
            continue
        clipped = footprint.intersection(chip)
        if clipped.is_empty or clipped.area < (4.0 / gsd_m) ** 2:
            continue
        parts = list(clipped.geoms) if isinstance(clipped, MultiPolygon) else [clipped]
        polygons = [p for p in parts if isinstance(p, Polygon) and not p.is_empty]
        if len(polygons) != 1:
            continue  # a footprint cut in two by the chip edge: skip rather than split
        taken.append(footprint)
        buildings.append(polygons[0])
        partial.append(polygons[0].area < footprint.area * (1 - 1e-9))
    return buildings, partial, roads


def _pixel_to_world(geom: Polygon, transform: Affine) -> Polygon:
    """Map a pixel-space ``(col, row)`` polygon to the CRS of ``transform``."""
    return affinity.affine_transform(
        geom, [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    )


@dataclass
class _Scene:
    rgb: FloatArray  # [3, H, W] reflectance-like in [0, 1]
    nir: FloatArray  # [H, W]
    roofs: npt.NDArray[np.int32]  # [H, W] building index + 1, 0 outside


def _render(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    transform: Affine,
    polygons_world: Sequence[Polygon],
    roads_px: Sequence[Polygon],
    gsd_m: float,
) -> _Scene:
    """Draw the background, roads, shadows and roofs on a ``canvas`` (height, width) grid."""
    height, width = canvas
    veg = 0.65 * _smooth_noise(rng, height, width, 48) + 0.35 * _smooth_noise(
        rng, height, width, 12
    )
    v = 1.0 / (1.0 + np.exp(-(veg - 0.5) * 10.0))  # vegetation fraction
    fine = 1.0 + 0.08 * (_smooth_noise(rng, height, width, 2) - 0.5)
    rgb = (v[None] * _VEGETATION[:, None, None] + (1 - v[None]) * _SOIL[:, None, None]) * fine[None]
    nir = (0.30 + 0.30 * v) * fine
    if roads_px:
        road = rasterize(roads_px, out_shape=canvas, fill=0, all_touched=False, dtype="uint8") > 0
        rgb = np.where(road[None], _ASPHALT[:, None, None] * fine[None], rgb)
        nir = np.where(road, 0.28 * fine, nir)
    roofs = np.zeros(canvas, dtype=np.int32)
    if polygons_world:
        shapes = [(p, i + 1) for i, p in enumerate(polygons_world)]
        roofs = rasterize(
            shapes, out_shape=canvas, transform=transform, fill=0, all_touched=False, dtype="int32"
        )
        # cast shadow (sun from the north-west): the footprint shifted south-east, outside roofs
        shift = max(1, round(1.5 / gsd_m))
        inside = roofs > 0
        shadow = np.zeros_like(inside)
        shadow[shift:, shift:] = inside[:-shift, :-shift]
        shadow &= ~inside
        rgb = np.where(shadow[None], rgb * 0.5, rgb)
        nir = np.where(shadow, nir * 0.5, nir)
        # roofs: one palette colour per building, brightness jitter, gable shading
        colours = _ROOFS[rng.integers(0, len(_ROOFS), size=len(polygons_world))]
        colours = colours * rng.uniform(0.9, 1.08, size=(len(polygons_world), 1)).astype(np.float32)
        table = np.concatenate([np.zeros((1, 3), np.float32), colours], axis=0)  # index 0 unused
        roof_rgb = table[roofs].transpose(2, 0, 1)  # [3, H, W]
        rows, cols = np.indices(canvas, dtype=np.float32)
        gable = np.ones(canvas, dtype=np.float32)
        for i in range(len(polygons_world)):
            sel = roofs == i + 1
            if not sel.any():
                continue
            r0, c0 = rows[sel].mean(), cols[sel].mean()
            theta = math.radians(float(rng.uniform(0, 180)))
            side = (rows[sel] - r0) * math.cos(theta) - (cols[sel] - c0) * math.sin(theta)
            gable[sel] = np.where(side > 0, 0.9, 1.0)
        texture = 1.0 + 0.03 * (_smooth_noise(rng, height, width, 3) - 0.5)
        roof_rgb = roof_rgb * (gable * texture)[None]
        rgb = np.where(inside[None], roof_rgb, rgb)
        nir = np.where(inside, 0.8 * roof_rgb.mean(axis=0), nir)
    return _Scene(
        np.clip(rgb, 0.0, 1.0).astype(np.float32), np.clip(nir, 0, 1).astype(np.float32), roofs
    )


def _block_mean(array: FloatArray, factor: int) -> FloatArray:
    """Average ``factor x factor`` blocks of ``[C, H, W]`` (H and W multiples of factor)."""
    c, h, w = array.shape
    blocks = array.reshape(c, h // factor, factor, w // factor, factor)
    return np.asarray(blocks.mean(axis=(2, 4)), dtype=np.float32)


def _eight_bands(rgb: FloatArray, nir: FloatArray) -> FloatArray:
    """WorldView-2/3 multispectral bands approximated from RGB and NIR.

    Order: coastal, blue, green, yellow, red, red edge, NIR1, NIR2.
    """
    red, green, blue = rgb[0], rgb[1], rgb[2]
    return np.stack(
        [
            0.8 * blue + 0.05,
            blue,
            green,
            0.5 * (red + green),
            red,
            0.5 * (red + nir),
            nir,
            0.95 * nir,
        ]
    ).astype(np.float32)


def _to_dn(rng: np.random.Generator, reflectance: FloatArray) -> npt.NDArray[np.uint16]:
    """11-bit digital numbers with sensor noise."""
    noise = rng.normal(0.0, 6.0, size=reflectance.shape).astype(np.float32)
    dn = np.clip(np.rint(reflectance * _DN_GAIN + noise), 1, _DN_MAX)
    return np.asarray(dn, dtype=np.uint16)


def _to_uint8(reflectance: FloatArray) -> npt.NDArray[np.uint8]:
    return np.asarray(np.clip(np.rint(reflectance * 255.0), 0, 255), dtype=np.uint8)


def _products(
    rng: np.random.Generator, collection: str, scene: _Scene, shape: tuple[int, int]
) -> dict[str, npt.NDArray[Any]]:
    """Every image product of a chip, bands first, from the rendered canvas."""
    h, w = shape
    if collection == "spacenet1":
        ms = _eight_bands(scene.rgb, scene.nir)
        return {
            "3band": _to_uint8(scene.rgb[:, :h, :w]),
            "8band": _to_dn(rng, _block_mean(ms, _MS_FACTOR)),
        }
    ms = _eight_bands(scene.rgb, scene.nir)
    red, green, blue = scene.rgb[0], scene.rgb[1], scene.rgb[2]
    pan = (0.30 * red + 0.35 * green + 0.15 * blue + 0.20 * scene.nir)[None]
    return {
        "RGB-PanSharpen": _to_dn(rng, scene.rgb[:, :h, :w]),
        "MUL": _to_dn(rng, _block_mean(ms, _MS_FACTOR)),
        "MUL-PanSharpen": _to_dn(rng, ms[:, :h, :w]),
        "PAN": _to_dn(rng, pan[:, :h, :w].astype(np.float32)),
    }
