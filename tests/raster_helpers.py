"""Small GeoTIFF writers and the real time series' location, shared by the raster tests."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window, from_bounds

#: The real co-located time series (read-only, never copied): ``landsat_pucallpa`` (8 dates,
#: ``1985.tif``..., EPSG:4326) and ``naip_north_dakota`` (10 dates, EPSG:26914).
REAL_TIMESERIES = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "timeseries"
).resolve()


#: Top-left corner (EPSG:32614) of :func:`write_tif`'s files and of the generated stacks.
ORIGIN = (485900.0, 5209248.0)


def real_stack(name: str) -> Path:
    """The folder of a real time series, or skip the test when it is not on this machine."""
    path = REAL_TIMESERIES / name
    if not path.is_dir():
        pytest.skip(f"real time series {name} not found at {path}")
    return path


def write_tif(
    path: Path,
    pixels: np.ndarray,
    *,
    crs: str | None = "EPSG:32614",
    origin: tuple[float, float] = ORIGIN,
    res: float = 2.0,
    nodata: float | None = 0,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``pixels`` ``[C, H, W]`` as a north-up GeoTIFF (no CRS when ``crs`` is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": pixels.shape[2],
        "height": pixels.shape[1],
        "count": pixels.shape[0],
        "dtype": pixels.dtype.name,
        "transform": Affine(res, 0.0, origin[0], 0.0, -res, origin[1]),
        "nodata": nodata,
        "photometric": "minisblack",  # 4 bands are not RGBA
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        if tags:
            dst.update_tags(**tags)
    return path


def scene(seed: int, shape: tuple[int, int, int] = (4, 64, 64), low: int = 1) -> np.ndarray:
    """Random uint8 pixels in ``low..255`` (no nodata when ``low >= 1``)."""
    return np.random.default_rng(seed).integers(low, 256, size=shape, dtype=np.uint8)


#: The real BigEarthNet Sentinel-2 sample (read-only, never copied): 6 patch folders of 12
#: one-band files ``{patch}_B01.tif`` ... ``_B12.tif``, ``_B8A.tif`` at 10/20/60 m, uint16, UTM.
REAL_BIGEARTHNET = REAL_TIMESERIES.parent / "bigearthnet_s2"

#: Sentinel-2 L2A bands of BigEarthNet in wavelength order and their resolutions in metres.
S2_BANDS: dict[str, int] = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B11": 20,
    "B12": 20,
}


def real_bigearthnet() -> Path:
    """The BigEarthNet sample folder, or skip the test when it is not on this machine."""
    if not REAL_BIGEARTHNET.is_dir():
        pytest.skip(f"real BigEarthNet sample not found at {REAL_BIGEARTHNET}")
    return REAL_BIGEARTHNET


def write_band_product(
    folder: Path,
    patch: str,
    bands: dict[str, int],
    *,
    seed: int = 0,
    side: float = 120.0,
    origin: tuple[float, float] = (404400.0, 5342400.0),
) -> dict[str, Path]:
    """A BigEarthNet-like patch: one uint16 file ``{patch}_{band}.tif`` per band, no nodata.

    Args:
        folder: where the files go.
        patch: the product name, e.g. ``S2A_MSIL2A_20170613T101031_87_48`` (holds the date).
        bands: band name -> resolution in metres (``side`` must be a multiple of each).
        seed: pixel seed.
        side: the patch side in metres (every band covers the same square).
        origin: top-left corner (EPSG:32633).

    Returns:
        band name -> file.
    """
    rng = np.random.default_rng(seed)
    files = {}
    for band, res in bands.items():
        size = round(side / res)
        pixels = rng.integers(1, 10_000, size=(1, size, size), dtype=np.uint16)
        path = folder / f"{patch}_{band}.tif"
        files[band] = write_tif(path, pixels, crs="EPSG:32633", origin=origin, res=res, nodata=None)
    return files


def unix_day(day: str) -> int:
    """Unix seconds of a ``YYYY-MM-DD`` day (UTC midnight)."""
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def window_read(path: Path, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Integer-window read of a file (the reference for pixel alignment)."""
    with rasterio.open(path) as src:
        window = from_bounds(*bounds, transform=src.transform)
        size = round(window.width), round(window.height)
        pixels: np.ndarray = src.read(
            window=Window(round(window.col_off), round(window.row_off), *size)
        )
        return pixels


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    """The error's message, checked to be one line."""
    message = str(error.value)
    assert "\n" not in message
    return message


#: Two BigEarthNet-like product names (their dates, 2017-06-13 and 2017-09-24, in the name) and
#: three bands at 60, 10 and 20 m, for :func:`write_band_product`.
S2_PRODUCT = "S2A_MSIL2A_20170613T101031_87_48"
S2_LATER_PRODUCT = "S2B_MSIL2A_20170924T093020_87_48"
THREE_BANDS = {"B01": 60, "B02": 10, "B05": 20}


def rewrite_tiled(
    path: Path, *, interleave: str = "pixel", photometric: str = "minisblack"
) -> Path:
    """Rewrite a GeoTIFF in place with 16 px deflate tiles (4 bands are not RGBA by default)."""
    with rasterio.open(path) as src:
        profile, pixels = src.profile, src.read()
    profile.update(
        tiled=True, blockxsize=16, blockysize=16, compress="deflate", interleave=interleave
    )
    profile["photometric"] = photometric
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def cut_tiles(path: Path) -> Path:
    """Truncate a tiled GeoTIFF to half its size: the header opens, the last tiles are gone."""
    rewrite_tiled(path)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    return path


def garble_tiles(path: Path, band: int, *, interleave: str = "band") -> Path:
    """Overwrite every tile of ``band`` with 0xFF bytes (the file keeps its size and its tags)."""
    rewrite_tiled(path, interleave=interleave)
    with rasterio.open(path) as src:
        rows, cols = -(-src.height // 16), -(-src.width // 16)
        blocks = [
            (
                int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)),
                int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)),
            )
            for y in range(rows)
            for x in range(cols)
        ]
    with open(path, "r+b") as file:
        for offset, length in blocks:
            file.seek(offset)
            file.write(b"\xff" * length)
    return path
