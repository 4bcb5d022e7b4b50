"""Seeded generator of a small fMoW sample in the real on-disk layout.

The sample mirrors the public fMoW buckets (``fmow-rgb`` and ``fmow-full``) file name by file name,
so that the index, datasets and downloader can be tested without the 200 GB (rgb) / 3.5 TB (full)
real data:

* ``train``/``val``: ``{split}/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.{ext}``;
* ``test``/``seq``: ``{split}/{id:07d}/{id:07d}_{t}_{product}.{ext}`` (box JSONs without category),
  the ground truth JSONs in
  ``{split}_gt/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.json`` and
  ``{split}_gt_mapping.json`` (a list of ``{"input": "{split}_gt/{category}/{category}_{loc}",
  "output": "{split}/{id:07d}"}``);
* ``manifest.json.bz2``: a bz2-compressed JSON list of every file's path relative to the root.

Products: fMoW-rgb (``full=False``) has ``_rgb.jpg`` (pan-sharpened RGB) and ``_msrgb.jpg``
(RGB of the multispectral image, 4x coarser); fMoW-full (``full=True``) has ``_rgb.tif`` (3 bands,
uint8) and ``_ms.tif`` (8 bands, uint16 with 11-bit values), north-up GeoTIFFs in the location's UTM
zone. Every image has a ``.json`` beside it with all the fields of the real files.

The pixels are procedural scenes, not noise: a land-cover background texture plus a
category-specific structure (building grids, tank circles, field stripes, water bodies, runways,
ovals, ...) with a per-category palette, drawn inside the target bounding box. Acquisitions of one
location share the scene and differ by season and sun illumination, sensor gain, a few pixels of
misregistration, clouds matching ``cloud_cover`` and, at some locations, construction (the structure
appears after a change date). The file index ``t`` is not in time order.

The scenes are drawn by `geossl.synthetic.fmow_scene`; the file layout is planned and
written by `geossl.synthetic.fmow_layout`; the JSON fields and GeoTIFF grids come from
`geossl.synthetic.fmow_metadata`.

Same seed, same arguments => byte-identical JSON files and identical pixels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SPLITS
from geossl.synthetic.common import _check_range, _prepare_output, check_plan_arguments
from geossl.synthetic.fmow_layout import _Location, _LocationFolders, _plan_locations, _SampleFiles
from geossl.synthetic.fmow_metadata import (
    _METRES_PER_DEG_LAT,
    _MS_FACTOR,
    _abs_cal_factors,
    _geotiff_transform,
    _Image,
    _product_meta,
    _solar_angles,
    _utm_epsg,
)
from geossl.synthetic.fmow_scene import (
    FloatArray,
    _category_style,
    _CategoryStyle,
    _downsample,
    _draw_scene,
    _greenness,
    _ms_bands,
    _render,
    _Scene,
)

__all__ = ["DEFAULT_SPLIT_FRACTIONS", "FMoWSampleSummary", "generate_fmow_sample"]


#: Default share of locations per split (normalised; every split with a positive share gets >= 1
#: location when there are enough locations).
DEFAULT_SPLIT_FRACTIONS: Mapping[str, float] = {
    "train": 0.7,
    "val": 0.15,
    "test": 0.075,
    "seq": 0.075,
}

_JPEG_QUALITY = 90
_EPOCH_2002 = int(datetime(2002, 1, 1, tzinfo=UTC).timestamp())
_DAYS_2002_2017 = (datetime(2018, 1, 1, tzinfo=UTC) - datetime(2002, 1, 1, tzinfo=UTC)).days


@dataclass(frozen=True)
class FMoWSampleSummary:
    """What [`generate_fmow_sample`][geossl.synthetic.fmow.generate_fmow_sample] wrote.

    Attributes:
        root: the sample's root folder.
        num_locations: number of locations (folders of one place) over all splits.
        num_images: number of acquisitions (one per file index ``t``; each has 2 image files and 2
            JSONs).
        images_per_split: acquisitions per split (every split of `FMOW_SPLITS`, 0 when
            unused).
        locations_per_split: locations per split.
        categories: the categories that have at least one location, in `FMOW_CATEGORIES`
            order.
        full: ``True`` for the fMoW-full layout (GeoTIFF), ``False`` for fMoW-rgb (JPEG).
        num_files: number of files written (the entries of ``manifest.json.bz2``).
    """

    root: Path
    num_locations: int
    num_images: int
    images_per_split: Mapping[str, int] = field(default_factory=dict)
    locations_per_split: Mapping[str, int] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    full: bool = False
    num_files: int = 0


def _jpeg_bytes(img: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


@dataclass(frozen=True)
class _Acquisitions:
    """The scene of one location and when it was imaged."""

    scene: _Scene
    times: list[int]  # unix times, in time order
    order: npt.NDArray[np.int64]  # file index t -> position in times


def _plan_acquisitions(
    location: _Location,
    lrng: np.random.Generator,
    style: _CategoryStyle,
    images: tuple[int, int],
    mean_side: float,
) -> tuple[_Acquisitions, float]:
    """Draw a location's scene and acquisition times; also return its base GSD (m)."""
    n_lo, n_hi = images
    n_img = int(lrng.integers(n_lo, n_hi + 1))
    base_gsd = float(lrng.uniform(0.35, 0.65))
    frac_w, frac_h = lrng.uniform(0.3, 0.55, size=2)
    f_len = lrng.uniform(1.0 / 120.0, 1.0 / 25.0, size=3)
    f_dir = lrng.uniform(0.0, 2.0 * math.pi, size=3)
    tex_freq = np.stack([f_len * np.cos(f_dir), f_len * np.sin(f_dir)], axis=1) * 2.0 * math.pi
    # acquisitions: distinct days, ~10:30 local solar time, t is a shuffled time order
    days = np.sort(lrng.choice(_DAYS_2002_2017, size=n_img, replace=False))
    local_s = lrng.integers(int(9.5 * 3600), int(11.5 * 3600), size=n_img)
    times = [
        _EPOCH_2002 + int(d) * 86400 + int(s) - round(location.lon / 15.0 * 3600)
        for d, s in zip(days, local_s, strict=True)
    ]
    order = lrng.permutation(n_img)
    if n_img > 1 and np.all(order == np.arange(n_img)):
        order = np.roll(order, 1)
    change_ts: int | None = None
    if location.category == "construction_site" or (n_img > 1 and lrng.random() < 0.25):
        change_ts = times[int(lrng.integers(1, n_img))] if n_img > 1 else times[0] + 1
    obj_size_m = (float(frac_w * mean_side * base_gsd), float(frac_h * mean_side * base_gsd))
    scene = _draw_scene(style, location.region, lrng, obj_size_m, tex_freq, change_ts)
    return _Acquisitions(scene, times, order), base_gsd


def _image_geometry(
    lrng: np.random.Generator, scene: _Scene, sizes: tuple[int, int], base_gsd: float
) -> tuple[int, int, float, float, tuple[int, int, int, int]]:
    """Draw an image's size, off-nadir angle, GSD and target box ``(x, y, w, h)``."""
    s_lo, s_hi = sizes
    w = int(lrng.integers(s_lo, s_hi + 1))
    h = int(lrng.integers(s_lo, s_hi + 1))
    off_nadir = float(lrng.uniform(2.0, 30.0))
    gsd = base_gsd * float(lrng.uniform(0.9, 1.1)) / math.cos(math.radians(off_nadir)) ** 0.5
    bw = max(4, min(round(scene.obj_w_m / gsd), int(0.9 * w)))
    bh = max(4, min(round(scene.obj_h_m / gsd), int(0.9 * h)))
    bx = round((w - bw) / 2.0 + lrng.uniform(-0.06, 0.06) * w)
    by = round((h - bh) / 2.0 + lrng.uniform(-0.06, 0.06) * h)
    return w, h, off_nadir, gsd, (max(0, min(w - bw, bx)), max(0, min(h - bh, by)), bw, bh)


def _acquire(
    location: _Location,
    scene: _Scene,
    ts: int,
    lrng: np.random.Generator,
    sizes: tuple[int, int],
    base_gsd: float,
    noise_tile: npt.NDArray[np.int8],
) -> _Image:
    """Draw and render one acquisition of ``scene`` at time ``ts``."""
    w, h, off_nadir, gsd, target = _image_geometry(lrng, scene, sizes, base_gsd)
    bx, by, bw, bh = target
    elev, azim = _solar_angles(location.lat, location.lon, ts)
    cloud_cover = 0 if lrng.random() < 0.6 else int(lrng.integers(1, 61))
    built = scene.change_ts is None or ts >= scene.change_ts
    shift = (float(lrng.uniform(-3.0, 3.0)), float(lrng.uniform(-3.0, 3.0)))
    gain: FloatArray = (1.0 + 0.06 * lrng.uniform(-1.0, 1.0, size=3)).astype(np.float32)
    pixels = _render(
        h,
        w,
        target,
        gsd,
        scene,
        shift=shift,
        brightness=0.6 + 0.45 * math.sin(math.radians(max(elev, 5.0))),
        greenness=_greenness(location.lat, ts),
        gain=gain,
        cloud_cover=cloud_cover,
        built=built,
        rng=lrng,
        noise_tile=noise_tile,
    )
    ms_rgb = _downsample(pixels, max(4, round(w / _MS_FACTOR)), max(4, round(h / _MS_FACTOR)))
    # footprint centre: the object position plus the offset of the box from the image centre
    dx_m = (w / 2.0 - (bx + bw / 2.0)) * gsd
    dy_m = ((by + bh / 2.0) - h / 2.0) * gsd
    c_lat = location.lat + dy_m / _METRES_PER_DEG_LAT
    c_lon = location.lon + dx_m / (_METRES_PER_DEG_LAT * math.cos(math.radians(location.lat)))
    return _Image(
        ts, w, h, gsd, off_nadir, target, (elev, azim), cloud_cover, pixels, ms_rgb, (c_lat, c_lon)
    )


def _boxes(
    image: _Image, lrng: np.random.Generator, last_id: int
) -> list[tuple[int, int, int, int, int]]:
    """The boxes ``(x, y, w, h, ID)`` of an image: the target, sometimes a second instance."""
    w, h = image.w, image.h
    bx, by, bw, bh = image.target
    boxes = [(bx, by, bw, bh, last_id + 1)]  # the first is the target
    if lrng.random() < 0.1:  # an occasional second, smaller instance
        sw, sh = max(2, bw // 3), max(2, bh // 3)
        sx, sy = int(lrng.integers(0, w - sw + 1)), int(lrng.integers(0, h - sh + 1))
        boxes.append((sx, sy, sw, sh, last_id + 2))
    return boxes


def _write_image(
    files: _SampleFiles,
    location: _Location,
    folders: _LocationFolders,
    t: int,
    image: _Image,
    boxes: Sequence[tuple[int, int, int, int, int]],
    lrng: np.random.Generator,
    full: bool,
) -> None:
    """Write the two products of acquisition ``t`` of a location and their JSONs."""
    shared = {
        "scan": "Forward" if lrng.random() < 0.5 else "Reverse",
        "target_az": float(lrng.uniform(0.0, 360.0)),
        "cal": _abs_cal_factors(lrng),
        "pan_res": image.gsd * float(lrng.uniform(0.97, 1.0)),
    }
    ext = "tif" if full else "jpg"
    ms_h, ms_w = image.ms_rgb.shape[:2]
    sizes = {"rgb": (image.w, image.h, 1), ("ms" if full else "msrgb"): (ms_w, ms_h, _MS_FACTOR)}
    for product, (pw, ph, scale) in sizes.items():
        name = f"{folders.stem}_{t}_{product}"
        meta = _product_meta(location, image, boxes, (pw, ph, scale, f"{name}.{ext}"), shared, lrng)
        files.write_image_json(location, folders, name, meta)
        rel = f"{folders.images}/{name}.{ext}"
        is_rgb = product == "rgb"
        if not full:
            files.write(rel, _jpeg_bytes(image.pixels if is_rgb else image.ms_rgb))
            continue
        bands: npt.NDArray[Any]
        if is_rgb:
            bands = np.ascontiguousarray(image.pixels.transpose(2, 0, 1))
        else:
            bands = _ms_bands(image.ms_rgb)
        epsg = _utm_epsg(location.lat, location.lon)
        files.write_geotiff(rel, bands, epsg, _geotiff_transform(location, image, pw, ph))


@dataclass(frozen=True)
class _Draws:
    """The sample-wide arguments every location is drawn with."""

    images: tuple[int, int]  # inclusive range of acquisitions per location
    sizes: tuple[int, int]  # inclusive range of image widths and heights
    full: bool
    noise_tile: npt.NDArray[np.int8]


def _write_location(
    files: _SampleFiles, location: _Location, style: _CategoryStyle, draws: _Draws, box_id: int
) -> tuple[int, int]:
    """Draw and write every acquisition of a location; return its image count and last box ID."""
    lrng = np.random.default_rng(location.seed)
    mean_side = (draws.sizes[0] + draws.sizes[1]) / 2.0
    acquisitions, base_gsd = _plan_acquisitions(location, lrng, style, draws.images, mean_side)
    folders = _LocationFolders.of(location)
    files.add_location(location, folders)
    for t, when in enumerate(acquisitions.order):
        ts = acquisitions.times[int(when)]
        image = _acquire(
            location, acquisitions.scene, ts, lrng, draws.sizes, base_gsd, draws.noise_tile
        )
        boxes = _boxes(image, lrng, box_id)
        box_id = boxes[-1][4]
        _write_image(files, location, folders, t, image, boxes, lrng, draws.full)
    return len(acquisitions.order), box_id


def generate_fmow_sample(
    output: str | Path,
    locations: int = 48,
    seed: int = 0,
    *,
    images_per_location: tuple[int, int] = (2, 5),
    image_size: tuple[int, int] = (160, 288),
    split_fractions: dict[str, float] | None = None,
    full: bool = False,
    categories: Sequence[str] | None = None,
    overwrite: bool = False,
) -> FMoWSampleSummary:
    """Write a seeded fMoW sample in the real fMoW-rgb or fMoW-full layout.

    Location ``i`` gets category ``categories[i % len(categories)]`` (so labels are spread), a
    region of the globe (11 regions in both hemispheres, Fiji across the antimeridian) with a
    jittered lat/lon, and a split drawn by largest remainder from ``split_fractions`` (every split
    with a positive share gets at least one location when there are enough locations). Each
    acquisition of a location has a distinct timestamp in 2002-2017; the file index ``t`` is a
    random permutation of the time order (never the time order itself when a location has 2+
    images). Images are procedural scenes (see the module docstring).

    Args:
        output: the sample's root folder (created).
        locations: number of locations over all splits (>= 1).
        seed: the random seed; the same seed and arguments give byte-identical JSON and identical
            pixels.
        images_per_location: inclusive ``(min, max)`` range of acquisitions per location, drawn per
            location.
        image_size: inclusive ``(min, max)`` range of the width and of the height of the
            pan-sharpened image in pixels (>= 16), each drawn per image; the multispectral image is
            4x coarser.
        split_fractions: share of locations per split among ``train``, ``val``, ``test``, ``seq``;
            normalised. Default `DEFAULT_SPLIT_FRACTIONS`.
        full: ``False``: fMoW-rgb (``_rgb.jpg``/``_rgb.json`` + ``_msrgb.jpg``/``_msrgb.json``);
            ``True``: fMoW-full (``_rgb.tif`` 3-band uint8 + ``_ms.tif`` 8-band uint16 11-bit, UTM
            GeoTIFFs, + ``.json``).
        categories: the categories to cycle through (each one of `FMOW_CATEGORIES`); default
            all 62.
        overwrite: when ``output`` is a non-empty folder, replace the sample's own entries (split
            folders, ``*_gt`` folders, mapping JSONs, manifest) instead of raising; other files
            there are left alone.

    Returns:
        A [`FMoWSampleSummary`][geossl.synthetic.fmow.FMoWSampleSummary] of what was written.

    Raises:
        ValueError: when an argument is out of range or names an unknown split or category.
        FileExistsError: when ``output`` is a file, or a non-empty folder and ``overwrite`` is
            ``False``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     summary = generate_fmow_sample(
        ...         f"{folder}/fmow", 4, image_size=(16, 24), categories=["airport", "dam"]
        ...     )
        ...     print(summary.num_locations, dict(summary.locations_per_split))
        ...     print(sorted(p.name for p in (summary.root / "train/dam/dam_0").iterdir())[:4])
        4 {'train': 1, 'val': 1, 'test': 1, 'seq': 1}
        ['dam_0_0_msrgb.jpg', 'dam_0_0_msrgb.json', 'dam_0_0_rgb.jpg', 'dam_0_0_rgb.json']
    """
    shares = DEFAULT_SPLIT_FRACTIONS if split_fractions is None else split_fractions
    fractions, cats = check_plan_arguments(locations, shares, FMOW_SPLITS, categories)
    images = _check_range("images_per_location", images_per_location, 1)
    sizes = _check_range("image_size", image_size, 16)
    root = Path(output)
    _prepare_output(root, overwrite)

    rng = np.random.default_rng(seed)
    plan = _plan_locations(int(locations), rng, fractions, cats)
    styles = {c: _category_style(c) for c in set(cats)}
    noise_tile = rng.integers(-6, 7, size=(sizes[1] + 64, sizes[1] + 64, 3), dtype=np.int8)
    return _write_sample(root, plan, styles, _Draws(images, sizes, full, noise_tile))


def _write_sample(
    root: Path,
    plan: Sequence[_Location],
    styles: Mapping[str, _CategoryStyle],
    draws: _Draws,
) -> FMoWSampleSummary:
    """Write every location of ``plan`` and the manifest; summarise what was written."""
    files = _SampleFiles(root)
    images_per_split = dict.fromkeys(FMOW_SPLITS, 0)
    locations_per_split = dict.fromkeys(FMOW_SPLITS, 0)
    box_id = 0
    for location in plan:
        locations_per_split[location.split] += 1
        num_images, box_id = _write_location(
            files, location, styles[location.category], draws, box_id
        )
        images_per_split[location.split] += num_images
    manifest = files.finish()

    return FMoWSampleSummary(
        root=root,
        num_locations=len(plan),
        num_images=sum(images_per_split.values()),
        images_per_split=images_per_split,
        locations_per_split=locations_per_split,
        categories=tuple(c for c in FMOW_CATEGORIES if c in {L.category for L in plan}),
        full=draws.full,
        num_files=len(manifest),
    )
