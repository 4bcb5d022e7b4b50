"""Small GeoTIFF writers and the real time series' location, shared by the raster tests."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

#: The real co-located time series (read-only, never copied): ``landsat_pucallpa`` (8 dates,
#: ``1985.tif``..., EPSG:4326) and ``naip_north_dakota`` (10 dates, EPSG:26914).
REAL_TIMESERIES = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "timeseries"
).resolve()


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
    origin: tuple[float, float] = (485900.0, 5209248.0),
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
