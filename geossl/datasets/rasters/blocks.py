"""Whether a GeoTIFF's tiles are all inside the file: a check on its tags, no pixel read."""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = ["truncated_blocks"]


def truncated_blocks(src: Any) -> str:
    """``""`` when every band's last tile (or strip) ends inside the file, else the problem.

    Only the TIFF tags are read (``BLOCK_OFFSET_x_y`` and ``BLOCK_SIZE_x_y`` of the TIFF metadata
    domain): cheap enough for every file of a large stack. Other drivers, and sparse files whose
    last block is absent, pass.

    Args:
        src: an open rasterio dataset.

    Returns:
        The problem, e.g. ``"its last tile ends at byte 40,825 of a 20,412-byte file"``.

    Example:
        >>> import tempfile, numpy as np, rasterio
        >>> path = tempfile.mkdtemp() + "/a.tif"
        >>> profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8"}
        >>> with rasterio.open(path, "w", tiled=True, blockxsize=16, blockysize=16, **profile) as f:
        ...     f.write(np.ones((1, 32, 32), dtype=np.uint8))
        >>> with rasterio.open(path) as src:
        ...     truncated_blocks(src)
        ''
    """
    if src.driver != "GTiff":
        return ""
    try:
        size = os.path.getsize(src.name)
    except OSError:
        return ""
    end = 0
    for band in range(1, src.count + 1):
        block_height, block_width = src.block_shapes[band - 1]
        last_x = math.ceil(src.width / block_width) - 1
        last_y = math.ceil(src.height / block_height) - 1
        offset = src.get_tag_item(f"BLOCK_OFFSET_{last_x}_{last_y}", "TIFF", bidx=band)
        length = src.get_tag_item(f"BLOCK_SIZE_{last_x}_{last_y}", "TIFF", bidx=band)
        if offset and length:
            end = max(end, int(offset) + int(length))
    if end > size:
        what = "tile" if src.profile.get("tiled") else "strip"
        return f"its last {what} ends at byte {end:,} of a {size:,}-byte file"
    return ""
