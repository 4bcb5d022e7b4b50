"""Cloud-optimised GeoTIFF (COG) copies of the chip-grid GeoTIFFs (``geossl embed --cog``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["convert_to_cog"]


def convert_to_cog(path: Path) -> None:
    """Rewrite a GeoTIFF in place as a COG through GDAL's COG driver.

    Tiles of 512 pixels, deflate with the floating-point predictor, and overviews resampled
    with NEAREST, so every overview pixel is the embedding of a real chip (an average of
    embeddings is not one). Band descriptions, nodata and the ``geossl`` tag are kept. The copy
    is written next to ``path`` and renamed over it (``path`` is the run's temporary name).

    Args:
        path: the GeoTIFF.

    Example:
        >>> import tempfile, numpy as np, rasterio
        >>> from rasterio.transform import from_origin
        >>> folder = tempfile.TemporaryDirectory()
        >>> grid = Path(folder.name) / "grid.tif"
        >>> profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 2,
        ...            "dtype": "float32", "crs": "EPSG:32631",
        ...            "transform": from_origin(500_000, 5_000_000, 224, 224)}
        >>> with rasterio.open(grid, "w", **profile) as dst:
        ...     dst.write(np.ones((2, 8, 8), np.float32))
        ...     dst.update_tags(geossl="{}")
        >>> convert_to_cog(grid)
        >>> with rasterio.open(grid) as src:
        ...     print(src.tags()["geossl"], src.profile["blockxsize"])
        {} 512
        >>> folder.cleanup()
    """
    import rasterio.shutil

    copy = path.with_name(f"{path.name}.cog")
    try:
        rasterio.shutil.copy(
            path,
            copy,
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            BLOCKSIZE="512",
            RESAMPLING="NEAREST",
            BIGTIFF="IF_SAFER",
        )
        os.replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)
