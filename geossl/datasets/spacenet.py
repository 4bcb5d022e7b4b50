"""SpaceNet building footprints: image tiles with GeoJSON polygons as ``image`` / ``mask`` samples.

torchgeo 0.8.1 reads the SpaceNet-1/2 tarball layouts (:class:`torchgeo.datasets.SpaceNet1`,
``SpaceNet2``, ...). What it lacks, and this module adds:

- :class:`SpaceNetTiles`: any folder of image GeoTIFFs with one GeoJSON of building polygons per
  tile (the SpaceNet-4 layout, a solaris sample, a user's own tiles), or an explicit list of
  ``(image, label)`` pairs. Polygons in any CRS are reprojected to the image's CRS and rasterised
  with ``rasterio.features.rasterize(all_touched=False)`` (a pixel is a building when its centre is
  inside a polygon: torchgeo's rule) into a 0/1 ``mask``.
- :class:`SpaceNetChips`: torchgeo's SpaceNet samples (raw digital numbers as float, ``mask``
  long) as geossl samples: ``image`` scaled to ``[0, 1]``, padded or cropped to a fixed size so
  that batches stack, and the mask of a resampled chip rasterised on the right grid (a torchgeo
  defect, see the class).
- :func:`band_statistics`: per-band mean / std of the ``[0, 1]`` images, the normalisation a
  band set without pretrained statistics (a pan band) needs (``model.mean`` / ``model.std``).

Scaling to ``[0, 1]`` (:func:`default_scale`): ``image = clip(dn * scale, 0, 1)`` with ``scale``
``1/255`` for uint8 (SpaceNet-1 ``3band``), ``1/2047`` for uint16 (WorldView-2/3 deliver 11-bit
digital numbers: every SpaceNet-1..4 uint16 product; the rare brighter pixels, e.g. 0.1 % of the
SpaceNet-4 Atlanta pan tile above 2047 with a maximum of 6615, saturate at 1) and 1 for floats.
A fixed scale, not a per-image percentile stretch, keeps radiometry comparable between tiles and
between training and test; the per-band normalisation comes after it, in the model.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import rasterio
import shapely
import torch
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS as RasterioCRS
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely.geometry import shape as shapely_shape
from shapely.geometry.base import BaseGeometry
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.band_stats import BandMoments, BandStatistics, valid_pixels
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError

__all__ = [
    "IGNORE_INDEX",
    "TILE_ID_PATTERN",
    "BuildingLabels",
    "SpaceNetChips",
    "SpaceNetTiles",
    "band_statistics",
    "default_scale",
    "fit_to_size",
    "rasterize_buildings",
    "read_building_labels",
]

#: Mask value of padded pixels: ignored by the loss and the metrics (``model.ignore_index``).
IGNORE_INDEX = 255

#: Default tile id of a file name stem: ``img{N}`` (SpaceNet-1..3) or ``{easting}_{northing}``
#: (SpaceNet-4), at the end of the stem.
TILE_ID_PATTERN = r"(img\d+|\d+_\d+)$"

#: Scale of 11-bit digital numbers (WorldView-2/3 uint16 products) to ``[0, 1]``.
UINT16_SCALE = 1.0 / 2047.0

#: CRS of a GeoJSON file without a ``crs`` member (RFC 7946: WGS 84 longitude / latitude).
GEOJSON_DEFAULT_CRS = "OGC:CRS84"

_POLYGONAL = ("Polygon", "MultiPolygon")


def default_scale(dtype: str | np.dtype[Any]) -> float:
    """Scale of raw pixel values to ``[0, 1]`` for a raster data type (see the module doc).

    Args:
        dtype: the raster's data type (``"uint8"``, ``"uint16"``, ``"float32"``, ...).

    Returns:
        ``1/255`` for uint8, ``1/2047`` for (u)int16 (11-bit WorldView digital numbers), ``1`` for
        floating point.

    Raises:
        ValueError: for other integer types (give ``scale`` explicitly).
    """
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 1.0 / 255.0
    if kind in (np.uint16, np.int16):
        return UINT16_SCALE
    if np.issubdtype(kind, np.floating):
        return 1.0
    raise ValueError(f"no default scale to [0, 1] for {kind.name} pixels; give scale explicitly")


# -------------------------------------------------------------------------------------------------
# labels
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildingLabels:
    """The building polygons of one GeoJSON file.

    Attributes:
        path: the file.
        polygons: Polygon / MultiPolygon geometries (2-D) in :attr:`crs`.
        crs: the file's CRS (its ``crs`` member, else RFC 7946's WGS 84 longitude / latitude).
        skipped: features without a polygonal geometry (null, points, lines), not rasterised.
        empty_file: the file has no bytes (SpaceNet-4 writes such files for tiles without
            buildings); read as no buildings.
    """

    path: Path
    polygons: tuple[BaseGeometry, ...]
    crs: CRS
    skipped: int = 0
    empty_file: bool = False


def _geojson_crs(data: Mapping[str, Any], path: Path) -> CRS:
    member = data.get("crs")
    if member is None:
        return CRS.from_user_input(GEOJSON_DEFAULT_CRS)
    try:
        name = member["properties"]["name"]
        return CRS.from_user_input(name)
    except (KeyError, TypeError, ValueError, CRSError) as error:
        raise InvalidSampleError(path, "unreadable GeoJSON crs member", repr(member)) from error


def read_building_labels(path: str | os.PathLike[str]) -> BuildingLabels:
    """Read the building polygons of a GeoJSON file.

    Accepts a FeatureCollection, a Feature or a bare geometry; an empty (0-byte) file means no
    buildings. The ``crs`` member (old-style ``{"type": "name", "properties": {"name": ...}}``,
    as SpaceNet writes it) gives the CRS; without it the coordinates are WGS 84 longitude /
    latitude (RFC 7946). Z coordinates are dropped.

    Args:
        path: the GeoJSON file.

    Returns:
        The :class:`BuildingLabels`.

    Raises:
        FileNotFoundError: if the file does not exist.
        InvalidSampleError: if the file is not GeoJSON (not JSON, or JSON without a GeoJSON
            ``type``), or a geometry or the CRS cannot be parsed; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        return BuildingLabels(path, (), CRS.from_user_input(GEOJSON_DEFAULT_CRS), 0, True)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidSampleError(path, "not GeoJSON", f"not JSON: {error}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidSampleError(path, "not GeoJSON", "FeatureCollection without features")
        geometries = [f.get("geometry") if isinstance(f, dict) else None for f in features]
    elif kind == "Feature":
        geometries = [data.get("geometry")]
    elif kind in (*_POLYGONAL, "Point", "MultiPoint", "LineString", "MultiLineString"):
        geometries = [data]
    else:
        raise InvalidSampleError(path, "not GeoJSON", f"type {kind!r}")
    crs = _geojson_crs(data, path)
    polygons: list[BaseGeometry] = []
    skipped = 0
    for geometry in geometries:
        if not isinstance(geometry, dict) or geometry.get("type") not in _POLYGONAL:
            skipped += 1
            continue
        try:
            polygon = shapely.force_2d(shapely_shape(geometry))
        except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException) as error:
            raise InvalidSampleError(path, "bad GeoJSON geometry", str(error)) from None
        if polygon.is_empty:
            skipped += 1
            continue
        polygons.append(polygon)
    return BuildingLabels(path, tuple(polygons), crs, skipped)


def _reproject(geometries: Sequence[BaseGeometry], src: CRS, dst: CRS) -> list[BaseGeometry]:
    """Reproject 2-D geometries (coordinates in x / y = longitude / latitude order)."""
    if src == dst or not geometries:
        return list(geometries)
    transformer = Transformer.from_crs(src, dst, always_xy=True)

    def forward(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return [shapely.transform(g, forward) for g in geometries]


def rasterize_buildings(
    labels: BuildingLabels,
    *,
    transform: Affine,
    crs: CRS | RasterioCRS | str,
    shape: tuple[int, int],
) -> npt.NDArray[np.uint8]:
    """Rasterise building polygons on an image grid: 1 where a pixel centre is inside a polygon.

    The polygons are reprojected from ``labels.crs`` to ``crs`` first; rasterisation is
    ``rasterio.features.rasterize(all_touched=False)``, torchgeo's and solaris' rule.

    Args:
        labels: the polygons (:func:`read_building_labels`).
        transform: the image's affine transform.
        crs: the image's CRS.
        shape: ``(height, width)`` of the image.

    Returns:
        ``uint8 [height, width]`` with 0 (background) and 1 (building).
    """
    target = CRS.from_user_input(crs.to_wkt() if isinstance(crs, RasterioCRS) else crs)
    polygons = _reproject(labels.polygons, labels.crs, target)
    if not polygons:
        return np.zeros(shape, dtype=np.uint8)
    mask = rasterize(
        [(p, 1) for p in polygons],
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=False,
        dtype="uint8",
    )
    return np.asarray(mask, dtype=np.uint8)


# -------------------------------------------------------------------------------------------------
# size helpers
# -------------------------------------------------------------------------------------------------


def fit_to_size(
    sample: dict[str, Any],
    size: tuple[int, int],
    *,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Centre-crop or pad ``image`` ``[C, H, W]`` and ``mask`` ``[H, W]`` to ``size``.

    Padding goes to the bottom / right: ``image`` with 0, ``mask`` with ``ignore_index`` (padded
    pixels count neither in the loss nor in the metrics). Cropping keeps the centre.

    Args:
        sample: a sample with ``image`` and optionally ``mask``.
        size: ``(height, width)``.
        ignore_index: the mask value of padded pixels.

    Returns:
        A new dict; other keys pass through.
    """
    image: Tensor = sample["image"]
    height, width = image.shape[-2:]
    out_h, out_w = size
    top = max(0, (height - out_h) // 2)
    left = max(0, (width - out_w) // 2)
    result = dict(sample)
    crop = image[..., top : top + out_h, left : left + out_w]
    pad = (0, out_w - crop.shape[-1], 0, out_h - crop.shape[-2])
    result["image"] = torch.nn.functional.pad(crop, pad, value=0.0)
    if "mask" in sample:
        mask: Tensor = sample["mask"][..., top : top + out_h, left : left + out_w]
        result["mask"] = torch.nn.functional.pad(mask, pad, value=ignore_index)
    return result


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``multiple`` (32 for a 5-stage encoder)."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


# -------------------------------------------------------------------------------------------------
# SpaceNetTiles
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageInfo:
    path: Path
    count: int
    dtype: str
    height: int
    width: int


def _image_info(path: Path) -> _ImageInfo:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InvalidSampleError(path, "image without CRS", "cannot place the polygons")
            if src.transform == Affine.identity():
                raise InvalidSampleError(path, "image without geotransform")
            return _ImageInfo(path, src.count, src.dtypes[0], src.height, src.width)
    except RasterioIOError as error:
        raise InvalidSampleError(path, "unreadable image", str(error)) from None


def _tile_id(stem: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(stem)
    return match.group(1) if match and match.groups() else (match.group(0) if match else None)


class SpaceNetTiles(Dataset[dict[str, Any]]):
    """Image GeoTIFFs with one GeoJSON of building polygons each, as ``image`` / ``mask``.

    Matching rule (when ``pairs`` is not given): every file matching ``image_glob`` under
    ``root`` is an image; its tile id is the part of its name stem matched by
    ``tile_id_pattern`` (default :data:`TILE_ID_PATTERN`: a trailing ``img{N}``, SpaceNet-1..3, or
    ``{easting}_{northing}``, SpaceNet-4); its label is the one ``*.geojson`` under
    ``label_root`` (default ``root``, searched recursively) whose stem ends with the same tile id.
    Several images may share a label (SpaceNet-4 has 27 nadir angles per tile); a tile id
    matching several labels is an error. E.g. SpaceNet-4::

        Atlanta_nadir8_catid_10300100023BC100_732701_3730989.tif  -> tile 732701_3730989
        spacenet-buildings_732701_3730989.geojson                 -> tile 732701_3730989

    Sample keys:

    - ``image``: float32 ``[C, H, W]`` in ``[0, 1]``: ``clip(dn * scale, 0, 1)`` (module doc);
    - ``mask``: int64 ``[H, W]``, 1 building / 0 background (:func:`rasterize_buildings`);
    - ``crs``: the image CRS as a string; ``bounds``: float64 ``[4]`` ``(left, bottom, right,
      top)`` of the image in that CRS; ``tile_id``: the tile id (``""`` for explicit pairs).

    Bad cases: an empty (0-byte) label file reads as no buildings and is counted in
    :attr:`empty_label_files` (SpaceNet-4 has such files); features without a polygon are counted
    in :attr:`skipped_geometries`. Everything else fails at construction with a one-line error
    naming the file.

    Args:
        root: folder of the images (and labels); None when ``pairs`` is given.
        pairs: explicit ``(image, label)`` paths; replaces the matching rule.
        image_glob: images under ``root`` (``pathlib`` glob, recursive with ``**``).
        label_root: folder of the GeoJSON labels (default ``root``).
        tile_id_pattern: regular expression of the tile id at the end of a file name stem (group 1,
            or the whole match).
        bands: 1-based band indexes to read (rasterio convention); None for all.
        scale: raw value -> ``[0, 1]`` factor; None for :func:`default_scale` of the images' dtype.
        transforms: applied to each sample dict.

    Raises:
        DatasetNotFoundError: if ``root`` does not exist or holds no images.
        FileNotFoundError: if an image has no label file (the message names the image).
        InvalidSampleError: if an image has no CRS, or a label file is not GeoJSON.
        BadDatasetError: if the images disagree on band count or data type (without ``scale``).
        ValueError: on invalid arguments.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]] | None = None,
        image_glob: str = "**/*.tif",
        label_root: str | os.PathLike[str] | None = None,
        tile_id_pattern: str = TILE_ID_PATTERN,
        bands: Sequence[int] | None = None,
        scale: float | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if (root is None) == (pairs is None):
            raise ValueError("give either root (matched by tile id) or pairs, not both or neither")
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale}")
        if bands is not None and (not bands or any(b < 1 for b in bands)):
            raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
        self.root = Path(root) if root is not None else None
        self.bands = list(bands) if bands is not None else None
        self.transforms = transforms
        self.tile_id_pattern = tile_id_pattern
        matched: list[tuple[Path, Path, str]] = []
        if pairs is not None:
            matched = [(Path(i), Path(label), "") for i, label in pairs]
            if not matched:
                raise ValueError("pairs is empty: give at least one (image, label) pair")
        elif self.root is not None:
            matched = self._match(self.root, image_glob, label_root, tile_id_pattern)
        self.image_paths = [m[0] for m in matched]
        self.label_paths = [m[1] for m in matched]
        self.tile_ids = [m[2] for m in matched]

        infos = [_image_info(p) for p in self.image_paths]
        counts = sorted({i.count for i in infos})
        if len(counts) > 1:
            raise BadDatasetError(self._where, f"images have different band counts {counts}")
        if self.bands is not None and max(self.bands) > counts[0]:
            raise ValueError(f"bands {self.bands} out of range: the images have {counts[0]} bands")
        dtypes = sorted({i.dtype for i in infos})
        if scale is None and len(dtypes) > 1:
            raise BadDatasetError(
                self._where, f"images have different data types {dtypes}: give scale explicitly"
            )
        self.num_bands = len(self.bands) if self.bands is not None else counts[0]
        self.dtype = dtypes[0]
        self.scale = float(scale) if scale is not None else default_scale(self.dtype)
        self.image_shapes = [(i.height, i.width) for i in infos]
        labels = {p: read_building_labels(p) for p in dict.fromkeys(self.label_paths)}
        self._labels: dict[Path, BuildingLabels] = labels
        #: Label files with no bytes, read as tiles without buildings.
        self.empty_label_files = sum(1 for lab in labels.values() if lab.empty_file)
        #: Features without a polygonal geometry, over all label files.
        self.skipped_geometries = sum(lab.skipped for lab in labels.values())

    @property
    def _where(self) -> Path:
        return self.root if self.root is not None else self.image_paths[0].parent

    @staticmethod
    def _match(
        root: Path,
        image_glob: str,
        label_root: str | os.PathLike[str] | None,
        pattern_text: str,
    ) -> list[tuple[Path, Path, str]]:
        if not root.is_dir():
            raise DatasetNotFoundError(root, "SpaceNet tiles folder does not exist", "spacenet")
        pattern = re.compile(pattern_text)
        images = sorted(p for p in root.glob(image_glob) if p.is_file())
        if not images:
            raise DatasetNotFoundError(
                root, f"no images matching {image_glob!r} in the SpaceNet tiles folder", "spacenet"
            )
        label_dir = Path(label_root) if label_root is not None else root
        by_tile: dict[str, Path] = {}
        for label in sorted(label_dir.rglob("*.geojson")):
            tile = _tile_id(label.stem, pattern)
            if tile is None:
                continue
            if tile in by_tile:
                raise BadDatasetError(
                    label, f"tile {tile} has two label files (also {by_tile[tile].name})"
                )
            by_tile[tile] = label
        matched = []
        for image in images:
            tile = _tile_id(image.stem, pattern)
            if tile is None:
                raise InvalidSampleError(
                    image, "no tile id in the file name", f"pattern {pattern_text!r}"
                )
            if tile not in by_tile:
                raise FileNotFoundError(
                    f"{image}: missing label file: no *{tile}.geojson under {label_dir}"
                )
            matched.append((image, by_tile[tile], tile))
        return matched

    def __len__(self) -> int:
        """Number of images."""
        return len(self.image_paths)

    def read_image(self, index: int) -> tuple[npt.NDArray[np.float32], Affine, Any]:
        """Read image ``index`` scaled to ``[0, 1]``.

        Args:
            index: the image.

        Returns:
            ``(image [C, H, W] float32, transform, rasterio CRS)``.
        """
        path = self.image_paths[index]
        with rasterio.open(path) as src:
            raw = src.read(self.bands)
            transform, crs = src.transform, src.crs
        image = np.clip(raw.astype(np.float32) * np.float32(self.scale), 0.0, 1.0)
        return image, transform, crs

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` (keys in the class doc)."""
        image, transform, crs = self.read_image(index)
        shape = (image.shape[1], image.shape[2])
        labels = self._labels[self.label_paths[index]]
        mask = rasterize_buildings(labels, transform=transform, crs=crs, shape=shape)
        left, top = transform @ (0, 0)
        right, bottom = transform @ (shape[1], shape[0])
        sample: dict[str, Any] = {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "crs": crs.to_string(),
            "bounds": torch.tensor(
                [min(left, right), min(top, bottom), max(left, right), max(top, bottom)],
                dtype=torch.float64,
            ),
            "tile_id": self.tile_ids[index],
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


# -------------------------------------------------------------------------------------------------
# torchgeo adapter
# -------------------------------------------------------------------------------------------------


class _TorchGeoSpaceNet(Protocol):
    """What :class:`SpaceNetChips` uses of a torchgeo ``SpaceNet`` dataset."""

    images: list[str]
    masks: list[str]
    split: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Tensor]: ...


class SpaceNetChips(Dataset[dict[str, Tensor]]):
    """torchgeo's SpaceNet samples (``SpaceNet1``, ``SpaceNet2``, ...) as geossl samples.

    A torchgeo sample is ``image`` float32 of raw digital numbers and ``mask`` int64; this
    adapter returns ``image`` float32 ``[C, H, W]`` in ``[0, 1]`` (``clip(dn * scale, 0, 1)``,
    ``scale`` from the first image's dtype by default) and ``mask`` int64 ``[H, W]``, then
    optionally fits both to a fixed size (:func:`fit_to_size`) so that batches stack: SpaceNet-1
    ``3band`` chips are 406 x 439, which a 5-stage encoder cannot take unpadded.

    torchgeo defect fixed here: ``SpaceNet._load_image`` resamples an image to the collection's
    ``chip_size`` (SpaceNet-1: 406 x 439, 102 x 110; SpaceNet-2 ``MUL``: 163 x 163) but returns the
    file's own transform, with which ``_load_mask`` rasterises the polygons on the resampled
    shape: for a chip of another size the mask is shifted / cropped against the image. When the
    file's size differs from the sample's, the mask is rasterised again on the resampled grid
    (transform scaled by file size / sample size); :attr:`resampled_masks` counts those (per
    process).

    Args:
        base: a torchgeo SpaceNet dataset of the ``train`` split (the only one with labels).
        scale: raw value -> ``[0, 1]`` factor; None for :func:`default_scale` of the files' dtype.
        size: ``(height, width)`` to crop / pad every sample to; None keeps the size.
        pad_multiple: pad (bottom / right) to multiples of this when ``size`` is None; None
            keeps the size.
        ignore_index: mask value of padded pixels.

    Raises:
        ValueError: if ``base`` is not a ``train`` split or is empty.
    """

    def __init__(
        self,
        base: _TorchGeoSpaceNet,
        *,
        scale: float | None = None,
        size: tuple[int, int] | None = None,
        pad_multiple: int | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if getattr(base, "split", "train") != "train":
            raise ValueError(f"SpaceNet split {base.split!r} has no labels; use split='train'")
        if len(base) == 0:
            raise ValueError("the torchgeo SpaceNet dataset is empty")
        if pad_multiple is not None and pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        self.base = base
        if scale is None:
            with rasterio.open(base.images[0]) as src:
                scale = default_scale(src.dtypes[0])
        self.scale = float(scale)
        self.size = size
        self.pad_multiple = pad_multiple
        self.ignore_index = ignore_index
        #: Samples whose mask was rasterised again because torchgeo resampled the image.
        self.resampled_masks = 0

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Chip ``index``: ``image`` float ``[C, H, W]`` in ``[0, 1]``, ``mask`` long ``[H, W]``."""
        sample = self.base[index]
        image = (sample["image"].float() * self.scale).clamp_(0.0, 1.0)
        mask = sample["mask"].long()
        height, width = image.shape[-2:]
        with rasterio.open(self.base.images[index]) as src:
            file_shape, transform, crs = (src.height, src.width), src.transform, src.crs
        if file_shape != (height, width):
            grid = transform @ Affine.scale(file_shape[1] / width, file_shape[0] / height)
            labels = read_building_labels(self.base.masks[index])
            fixed = rasterize_buildings(labels, transform=grid, crs=crs, shape=(height, width))
            mask = torch.from_numpy(fixed.astype(np.int64))
            self.resampled_masks += 1
        out: dict[str, Tensor] = {"image": image, "mask": mask}
        if self.size is not None:
            return fit_to_size(out, self.size, ignore_index=self.ignore_index)
        if self.pad_multiple is not None:
            target = padded_size(height, width, self.pad_multiple)
            return fit_to_size(out, target, ignore_index=self.ignore_index)
        return out


# -------------------------------------------------------------------------------------------------
# band statistics
# -------------------------------------------------------------------------------------------------


def band_statistics(
    source: SpaceNetTiles | Sequence[str | os.PathLike[str]] | Dataset[dict[str, Any]],
    *,
    bands: Sequence[int] | None = None,
    scale: float | None = None,
) -> BandStatistics:
    r"""Per-band mean / std of the ``[0, 1]`` images, for ``model.mean`` / ``model.std``.

    A band set that pretrained weights know nothing about (SpaceNet-4's single pan band with RGB
    weights and ``adapt_in_chans``) needs the normalisation of its own data: over the valid
    pixels :math:`x_{c,i}` of every image, :math:`\mu_c = \frac{1}{N_c} \sum_i x_{c,i}` and
    :math:`\sigma_c = \sqrt{\frac{1}{N_c} \sum_i (x_{c,i} - \mu_c)^2}` (population std, pooled
    over images in float64 by :class:`~geossl.datasets.band_stats.BandMoments`; the nodata rule is
    :func:`~geossl.datasets.band_stats.valid_pixels`). Compute it on the training images only.

    Args:
        source: a list of GeoTIFF paths (scaled with ``scale`` or :func:`default_scale`; pixels
            whose bands all equal the file's ``nodata`` value are left out), a
            :class:`SpaceNetTiles` (its files, bands and scale, as paths), or any dataset of
            samples with ``image`` ``[C, H, W]`` in ``[0, 1]`` (every pixel counts).
        bands: 1-based bands to read from paths (None for all).
        scale: raw value -> ``[0, 1]`` factor for paths (None for the dtype's default).

    Returns:
        The :class:`~geossl.datasets.band_stats.BandStatistics` (``num_samples``: images read).

    Raises:
        ValueError: if there is no valid pixel, or the images disagree on the band count.
    """
    if isinstance(source, SpaceNetTiles):  # its files, so that nodata pixels are left out too
        return band_statistics(source.image_paths, bands=source.bands, scale=source.scale)
    moments: BandMoments | None = None
    if isinstance(source, Sequence) and all(isinstance(s, str | os.PathLike) for s in source):
        for path in source:
            with rasterio.open(path) as src:
                data = src.read(list(bands) if bands is not None else None)
                raw = torch.from_numpy(data.astype(np.float64))  # uint16 has few torch ops
                factor = scale if scale is not None else default_scale(src.dtypes[0])
                nodata = src.nodata
            valid = valid_pixels(raw, nodata)
            pixels = (raw[:, valid] * factor).clamp_(0.0, 1.0)
            moments = moments or BandMoments(raw.shape[0])
            moments.update(pixels)
    else:
        dataset: Any = source
        for index in range(len(dataset)):
            image: Tensor = dataset[index]["image"]
            moments = moments or BandMoments(image.shape[0])
            moments.update(image.reshape(image.shape[0], -1))
    if moments is None:
        raise ValueError("band_statistics: no image in the source")
    return moments.result(f"{moments.num_samples} SpaceNet images")
