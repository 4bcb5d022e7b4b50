"""SpaceNet tiles: any folder of image GeoTIFFs with one GeoJSON of building polygons per tile.

[`SpaceNetTiles`][geossl.datasets.spacenet.tiles.SpaceNetTiles] reads the SpaceNet-4 layout, a
solaris sample, a user's own tiles, or an explicit list of ``(image, label)`` pairs, which
torchgeo's tarball readers do not.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import torch
from matplotlib.figure import Figure
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError
from geossl.datasets.plotting import mask_figure
from geossl.datasets.spacenet.constants import TILE_ID_PATTERN, default_scale
from geossl.datasets.spacenet.labels import (
    BuildingLabels,
    rasterize_buildings,
    read_building_labels,
)

__all__ = ["SpaceNetTiles"]


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


class SpaceNetTiles(NonGeoDataset):
    """Image GeoTIFFs with one GeoJSON of building polygons each, as ``image`` / ``mask``.

    Matching rule (when ``pairs`` is not given): every file matching ``image_glob`` under
    ``root`` is an image; its tile id is the part of its name stem matched by
    ``tile_id_pattern`` (default `TILE_ID_PATTERN`: a trailing ``img{N}``, SpaceNet-1..3, or
    ``{easting}_{northing}``, SpaceNet-4); its label is the one ``*.geojson`` under
    ``label_root`` (default ``root``, searched recursively) whose stem ends with the same tile id.
    Several images may share a label (SpaceNet-4 has 27 nadir angles per tile); a tile id
    matching several labels is an error. E.g. SpaceNet-4::

        Atlanta_nadir8_catid_10300100023BC100_732701_3730989.tif  -> tile 732701_3730989
        spacenet-buildings_732701_3730989.geojson                 -> tile 732701_3730989

    Sample keys:

    - ``image``: float32 ``[C, H, W]`` in ``[0, 1]``: ``clip(dn * scale, 0, 1)``
      ([`default_scale`][geossl.datasets.spacenet.constants.default_scale]);
    - ``mask``: int64 ``[H, W]``, 1 building / 0 background
    ([`rasterize_buildings`][geossl.datasets.spacenet.labels.rasterize_buildings]);
    - ``crs``: the image CRS as a string; ``bounds``: float64 ``[4]`` ``(left, bottom, right,
      top)`` of the image in that CRS; ``tile_id``: the tile id (``""`` for explicit pairs).

    Bad cases: an empty (0-byte) label file reads as no buildings and is counted in
    `empty_label_files` (SpaceNet-4 has such files); features without a polygon are counted
    in `skipped_geometries`. Everything else fails at construction with a one-line error
    naming the file.

    Args:
        root: folder of the images (and labels); None when ``pairs`` is given.
        pairs: explicit ``(image, label)`` paths; replaces the matching rule.
        image_glob: images under ``root`` (``pathlib`` glob, recursive with ``**``).
        label_root: folder of the GeoJSON labels (default ``root``).
        tile_id_pattern: regular expression of the tile id at the end of a file name stem (group 1,
            or the whole match).
        bands: 1-based band indexes to read (rasterio convention); None for all.
        scale: raw value -> ``[0, 1]`` factor; None for
            [`default_scale`][geossl.datasets.spacenet.constants.default_scale] of the images'
            dtype.
        transforms: applied to each sample dict.

    Raises:
        DatasetNotFoundError: if ``root`` does not exist or holds no images.
        FileNotFoundError: if an image has no label file (the message names the image).
        InvalidSampleError: if an image has no CRS, or a label file is not GeoJSON.
        BadDatasetError: if the images disagree on band count or data type (without ``scale``).
        ValueError: on invalid arguments.

    Examples:
        >>> import tempfile
        >>> from geossl.datasets.spacenet import SpaceNetTiles
        >>> from geossl.synthetic.spacenet import generate_spacenet_sample
        >>> with tempfile.TemporaryDirectory() as root:
        ...     summary = generate_spacenet_sample(root, tiles=2, seed=0)
        ...     tiles = SpaceNetTiles(summary.dataset_dir / "train", image_glob="3band/*.tif")
        ...     sample = tiles[0]
        >>> len(tiles), sample["image"].shape, sample["mask"].dtype
        (2, torch.Size([3, 406, 439]), torch.int64)
        >>> sorted(sample)
        ['bounds', 'crs', 'image', 'mask', 'tile_id']
        >>> len(tiles.plot(sample).axes)  # torchgeo's plot: the image with the mask overlaid
        1
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

    def plot(
        self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw a tile as RGB (its first three bands) with the building mask overlaid.

        torchgeo's ``plot`` contract; a ``prediction`` mask ``[H, W]`` goes on a second axis.

        Args:
            sample: a sample of this dataset.
            show_titles: write the tile id above the image.
            suptitle: an optional figure title.

        Returns:
            The figure: one axis, two with a prediction.
        """
        tile = sample.get("tile_id") or "tile"
        return mask_figure(sample, f"{tile}: buildings", show_titles=show_titles, suptitle=suptitle)
