"""The inputs of ``geossl embed``: rasters (GeoTIFF, COG, VRT) and fMoW folders.

[`find_sources`][geossl.embed.sources.find_sources] expands files and folders into a list of sources
and checks each one before anything is embedded, so a bad input fails the run at once with a
one-line error naming the file:

* [`RasterSource`][geossl.embed.sources.RasterSource]: one raster, cut into a grid of chips
  ([`ChipGrid`][geossl.embed.chips.ChipGrid]);
* [`FMoWSource`][geossl.embed.sources.FMoWSource]: an fMoW root (``train/``, ``val/``, ... in the
  layout of [`geossl.datasets.fmow`][geossl.datasets.fmow]) or one of its split folders; each image
  is one embedding of its context crop, placed by the JSON's ``raw_location`` footprint and
  ``timestamp``.

The fMoW images themselves are read by [`read_fmow_item`][geossl.embed.fmow_items.read_fmow_item].

A folder that is not fMoW is searched recursively for ``*.tif``, ``*.tiff`` and ``*.vrt`` files
(hidden files and folders skipped).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_PRODUCTS, FMOW_SPLITS
from geossl.embed.chips import ChipGrid
from geossl.embed.stac_vrt import stac_tags
from geossl.utils.bands import model_bands

__all__ = [
    "RASTER_SUFFIXES",
    "FMoWSource",
    "RasterSource",
    "Source",
    "crs_label",
    "find_sources",
    "fmow_split_folders",
    "open_raster",
    "raster_datetime",
]

#: File suffixes searched for in folders (case-insensitive).
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")

#: fMoW image products with a per-image JSON, and their image extensions (the JSON is
#: ``{stem}.json``): the products of :data:`~geossl.datasets.fmow.constants.FMOW_PRODUCTS` but
#: ``sentinel`` (metadata CSVs).
_FMOW_PRODUCTS: dict[str, tuple[str, ...]] = {
    name: product.extensions for name, product in FMOW_PRODUCTS.items() if name != "sentinel"
}

#: Metadata items that may hold the acquisition time, most specific first: (domain, key).
_DATETIME_TAGS = (
    ("IMAGERY", "ACQUISITIONDATETIME"),
    ("", "ACQUISITIONDATETIME"),
    ("", "DATETIME"),
    ("", "TIFFTAG_DATETIME"),
)


@dataclass(frozen=True, slots=True)
class RasterSource:
    """One raster to embed chip by chip.

    Attributes:
        path: the file.
        name: a unique short name in the run (the file stem, ``-2``, ``-3`` ... on collisions),
            used for output file names.
        crs: the CRS as WKT.
        crs_label: ``"EPSG:XXXX"`` when the CRS has an EPSG code, else the WKT.
        transform: pixel-to-map affine transform.
        width: width in pixels.
        height: height in pixels.
        bands: 1-based band indexes fed to the model.
        dtype: the numpy dtype the bands are read as.
        all_valid: the raster has no nodata value, alpha band or mask (no mask read needed).
        datetime: acquisition time from the raster's metadata, when present.
        grid: the chip grid.
        item_id: the STAC item the raster stands for ([`geossl.embed.stac`][geossl.embed.stac]).
        href: a STAC item's asset hrefs (comma-separated, in band order): the rows' ``source``
            in place of the path of the temporary VRT that stacks them.
    """

    path: Path
    name: str
    crs: str
    crs_label: str
    transform: Affine
    width: int
    height: int
    bands: tuple[int, ...]
    dtype: str
    all_valid: bool
    datetime: datetime | None
    grid: ChipGrid
    item_id: str | None = None
    href: str | None = None

    @property
    def num_items(self) -> int:
        """Chips of the grid."""
        return self.grid.num_chips

    @property
    def row_source(self) -> str:
        """What the rows' ``source`` column says: the path, or a STAC item's ``href``."""
        return self.href if self.href is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class FMoWSource:
    """An fMoW folder: one embedding per image.

    Attributes:
        root: the folder given (an fMoW root or a split folder).
        name: a unique short name in the run (``fmow-{folder name}``).
        images: the image files of ``product``, sorted.
        product: ``"rgb"``, ``"msrgb"`` or ``"ms"``.
        bands: 1-based band indexes, or None for all bands of the product.
    """

    root: Path
    name: str
    images: tuple[Path, ...]
    product: str
    bands: tuple[int, ...] | None

    @property
    def num_items(self) -> int:
        """Images."""
        return len(self.images)


Source = RasterSource | FMoWSource


def crs_label(crs: Any) -> str:
    """``"EPSG:XXXX"`` for a CRS with an EPSG code, else its WKT.

    Args:
        crs: a `rasterio.crs.CRS`.

    Returns:
        The label.
    """
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs.to_wkt())


def _parse_datetime(text: str) -> datetime | None:
    text = text.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def raster_datetime(dataset: Any) -> datetime | None:
    """The acquisition time stored in a raster's metadata, if any.

    Looks at ``ACQUISITIONDATETIME`` (GDAL's ``IMAGERY`` domain, then the default one),
    ``DATETIME`` and ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``), in that order. Note that
    ``TIFFTAG_DATETIME`` is, strictly, when the file was written; many pipelines set it to the
    acquisition time. Times without a zone are taken as UTC.

    Args:
        dataset: an open rasterio dataset.

    Returns:
        A timezone-aware UTC datetime, or None.
    """
    for domain, key in _DATETIME_TAGS:
        try:
            tags = dataset.tags(ns=domain) if domain else dataset.tags()
        except Exception:  # GDAL raises for unknown domains on some drivers
            continue
        value = tags.get(key)
        if isinstance(value, str) and value.strip():
            parsed = _parse_datetime(value)
            if parsed is not None:
                return parsed
    return None


def _has_category_folder(split_dir: Path) -> bool:
    try:
        with os.scandir(split_dir) as entries:
            return any(e.is_dir() and e.name in FMOW_CATEGORIES for e in entries)
    except OSError:
        return False


def fmow_split_folders(folder: Path) -> list[Path] | None:
    """The split folders of an fMoW root, or ``[folder]`` for a split folder; None otherwise.

    A folder is an fMoW root when ``train/`` or ``val/`` holds a folder named after an fMoW
    category, or when ``test/`` or ``seq/`` sits beside its ``{split}_gt_mapping.json``. A folder
    named ``train`` or ``val`` that holds category folders is a split folder.

    Args:
        folder: the folder to look at.

    Returns:
        The split folders to scan, or None when ``folder`` is not fMoW.
    """
    splits = []
    for split in FMOW_SPLITS:
        split_dir = folder / split
        if not split_dir.is_dir():
            continue
        if split in ("train", "val"):
            if _has_category_folder(split_dir):
                splits.append(split_dir)
        elif (folder / f"{split}_gt_mapping.json").is_file():
            splits.append(split_dir)
    if splits:
        return splits
    if folder.name in ("train", "val") and _has_category_folder(folder):
        return [folder]
    return None


def _walk_files(folder: Path) -> Iterable[Path]:
    """Files under ``folder``, recursively, skipping hidden entries; sorted per folder."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(current) / name


def _fmow_images(splits: Sequence[Path], product: str) -> list[Path]:
    suffixes = tuple(f"_{product}{ext}" for ext in _FMOW_PRODUCTS[product])
    images: list[Path] = []
    for split_dir in splits:
        images += [p for p in _walk_files(split_dir) if p.name.endswith(suffixes)]
    # A stem with two images (.jpg and .tif) keeps the product's preferred extension.
    chosen: dict[Path, Path] = {}
    for path in images:
        stem = path.with_suffix("")
        if stem not in chosen or _FMOW_PRODUCTS[product].index(path.suffix) < _FMOW_PRODUCTS[
            product
        ].index(chosen[stem].suffix):
            chosen[stem] = path
    return sorted(chosen.values())


def _unique_name(stem: str, taken: set[str]) -> str:
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}"
    taken.add(name)
    return name


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_raster(path: Path) -> Any:
    """Open a raster with rasterio; a file GDAL cannot read raises a one-line ValueError.

    Args:
        path: the file.

    Returns:
        The open dataset (close it).

    Raises:
        ValueError: if GDAL cannot open the file as a raster.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        return rasterio.open(path)
    except RasterioError as err:
        raise ValueError(f"{path}: not a raster that GDAL can read ({_first_line(err)})") from None


def _raster_source(
    path: Path,
    name: str,
    *,
    in_chans: int,
    bands: Sequence[int] | None,
    chip_size: int,
    stride: int,
) -> RasterSource:
    from rasterio.enums import MaskFlags

    with open_raster(path) as dataset:
        # Before the CRS check: a GCP-only raster has no dataset CRS (its CRS is the GCPs').
        if dataset.transform.is_identity and dataset.gcps[0]:
            raise ValueError(
                f"{path}: the raster is georeferenced by GCPs only; warp it first (gdalwarp)"
            )
        if dataset.crs is None:
            raise ValueError(
                f"{path}: the raster has no CRS; set one first, e.g. "
                "gdal_edit.py -a_srs EPSG:XXXX FILE"
            )
        count = dataset.count
        if bands is not None:
            out_of_range = [b for b in bands if not 1 <= b <= count]
            if out_of_range:
                raise ValueError(
                    f"{path}: band indexes {out_of_range} out of range; the raster has "
                    f"{count} band(s)"
                )
            chosen = tuple(bands)
        else:
            chosen = model_bands(dataset.colorinterp)  # alpha is a mask: pretraining's rule
            if len(chosen) != in_chans:
                alpha = count - len(chosen)
                has = f"{count} band(s)" + (f" ({alpha} alpha, not counted)" if alpha else "")
                raise ValueError(
                    f"{path}: the raster has {has} but the weights take {in_chans}; "
                    f"choose {in_chans} with --bands (e.g. --bands "
                    f"{','.join(str(i + 1) for i in range(min(in_chans, count)))})"
                )
        dtypes = {dataset.dtypes[b - 1] for b in chosen}
        dtype = str(np.result_type(*dtypes)) if len(dtypes) > 1 else dtypes.pop()
        all_valid = (
            all(dataset.mask_flag_enums[i] == [MaskFlags.all_valid] for i in range(count))
            and np.dtype(dtype).kind != "f"
        )
        stac = stac_tags(dataset)  # the STAC item of a VRT that geossl.embed.stac wrote
        return RasterSource(
            path=path,
            name=name,
            crs=str(dataset.crs.to_wkt()),
            crs_label=crs_label(dataset.crs),
            transform=dataset.transform,
            width=dataset.width,
            height=dataset.height,
            bands=chosen,
            dtype=dtype,
            all_valid=all_valid,
            datetime=raster_datetime(dataset),
            grid=ChipGrid(dataset.width, dataset.height, chip_size, stride),
            item_id=stac.get("ITEM_ID"),
            href=stac.get("SOURCE"),
        )


def _check_fmow_bands(image: Path, in_chans: int, bands: Sequence[int] | None) -> None:
    """Check the bands of an fMoW product on its first image (JPEGs have 3)."""
    if image.suffix.lower() == ".tif":
        with open_raster(image) as dataset:
            count = dataset.count
    else:
        count = 3
    if bands is not None and max(bands) > count:
        raise ValueError(
            f"{image}: band indexes {[b for b in bands if b > count]} out of range; the image has "
            f"{count} band(s)"
        )
    if bands is None and count != in_chans:
        raise ValueError(
            f"{image}: the image has {count} band(s) but the weights take {in_chans}; choose "
            f"{in_chans} with --bands or another product with --fmow-product"
        )


def _fmow_source(
    path: Path,
    splits: Sequence[Path],
    taken: set[str],
    in_chans: int,
    bands: Sequence[int] | None,
    fmow_product: str | None,
) -> FMoWSource:
    """The source of the fMoW folder ``path`` (its ``splits``); its name is added to ``taken``."""
    product = fmow_product or (
        "ms" if in_chans > 3 or (bands is not None and max(bands) > 3) else "rgb"
    )
    images = _fmow_images(splits, product)
    if not images:
        raise FileNotFoundError(
            f"{path}: an fMoW folder without *_{product} images "
            f"({', '.join('*' + e for e in _FMOW_PRODUCTS[product])})"
        )
    _check_fmow_bands(images[0], in_chans, bands)
    name = _unique_name(f"fmow-{path.resolve().name}", taken)
    return FMoWSource(path, name, tuple(images), product, None if bands is None else tuple(bands))


def _folder_rasters(folder: Path) -> list[Path]:
    """The raster files under ``folder`` (recursive, sorted); refuse a folder without any."""
    files = [p for p in _walk_files(folder) if p.suffix.lower() in RASTER_SUFFIXES]
    if not files:
        raise FileNotFoundError(
            f"{folder}: no {', '.join('*' + s for s in RASTER_SUFFIXES)} files in the folder"
        )
    return files


def find_sources(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    in_chans: int,
    bands: Sequence[int] | None = None,
    chip_size: int,
    stride: int,
    fmow_product: str | None = None,
) -> list[Source]:
    """Expand the inputs into sources and check that each can be embedded.

    Every raster is opened (header only) and checked: GDAL can read it, it has a CRS and an affine
    geotransform, and it has ``in_chans`` bands (alpha bands not counted) or ``bands`` selects
    existing ones.

    Args:
        inputs: raster files and folders (searched recursively) and fMoW folders.
        in_chans: bands the model takes.
        bands: 1-based band indexes to feed the model (``len(bands) == in_chans``); None means
            every band but alpha.
        chip_size: chip side in pixels.
        stride: chip step in pixels.
        fmow_product: fMoW image product to embed (``rgb``, ``msrgb`` or ``ms``); None picks
            ``ms`` when the model takes more than 3 bands or ``bands`` goes past 3, else ``rgb``.

    Returns:
        The sources, in input order (files of a folder sorted by path).

    Raises:
        FileNotFoundError: if an input does not exist or a folder holds no raster.
        ValueError: for a file GDAL cannot read, a raster without CRS or with the wrong number of
            bands, or an unknown fMoW product; the message names the file.
    """
    if bands is not None and len(bands) != in_chans:
        raise ValueError(f"--bands selects {len(bands)} band(s) but the weights take {in_chans}")
    if fmow_product is not None and fmow_product not in _FMOW_PRODUCTS:
        raise ValueError(
            f"unknown fMoW product {fmow_product!r}; choose one of {sorted(_FMOW_PRODUCTS)}"
        )
    taken: set[str] = set()
    sources: list[Source] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        splits = fmow_split_folders(path) if path.is_dir() else None
        if splits is not None:
            sources.append(_fmow_source(path, splits, taken, in_chans, bands, fmow_product))
            continue
        files = _folder_rasters(path) if path.is_dir() else [path]
        for file in files:
            key = file.resolve()
            if key in seen:
                warnings.warn(f"{file}: given twice; embedded once", UserWarning, stacklevel=2)
                continue
            seen.add(key)
            name = _unique_name(file.stem, taken)
            sources.append(
                _raster_source(
                    file, name, in_chans=in_chans, bands=bands, chip_size=chip_size, stride=stride
                )
            )
    if not sources:
        raise FileNotFoundError("no input given")
    return sources
