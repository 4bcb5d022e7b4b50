"""Helpers for the embedding tests: small generated rasters, a transparent stand-in model, a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from geossl.embed import EmbedOptions, EmbedReport, embed_rasters

REAL_SCENES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "scenes"

#: A UTM 18N transform with non-square pixels (10 m x 20 m) and a non-round origin.
UTM_TRANSFORM = Affine(10.0, 0.0, 500_123.0, 0.0, -20.0, 4_400_456.0)

#: The identity normalisation: values are scaled to [0, 1] and left there.
IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


class BandMean(nn.Module):
    """A stand-in backbone: the mean of each band of the chip (``[B, C, H, W] -> [B, C]``).

    With :func:`position_raster` and the identity normalisation, the embedding of a chip tells
    which window was read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * self.scale


def write_raster(
    path: Path,
    data: np.ndarray[Any, Any],
    *,
    crs: str | None = "EPSG:32618",
    transform: Affine = UTM_TRANSFORM,
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
    **profile: Any,
) -> Path:
    """Write ``data`` ``[C, H, W]`` as a tiled GeoTIFF."""
    count, height, width = data.shape
    options: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": transform,
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
        **profile,
    }
    if crs is not None:
        options["crs"] = crs
    if nodata is not None:
        options["nodata"] = nodata
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def position_raster(path: Path, width: int = 40, height: int = 24, **kwargs: Any) -> Path:
    """A uint16 raster whose band 1 is the column, band 2 the row and band 3 is 512.

    With ``scale=1/1024`` a chip's band means are ``(col_off + (w - 1) / 2) / 1024`` and
    ``(row_off + (h - 1) / 2) / 1024`` when the chip lies inside the raster.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    data = np.stack([cols, rows, np.full_like(cols, 512)]).astype(np.uint16)
    return write_raster(path, data, **kwargs)


def real_scenes() -> Path:
    """The real scenes folder, or skip the test."""
    if not REAL_SCENES.is_dir():
        pytest.skip(f"real data not found at {REAL_SCENES} (CI has it at ../shared/data/real)")
    return REAL_SCENES


#: position_raster values to [0, 1].
POS_SCALE = 1 / 1024

#: Arguments of :func:`run_embed` that go to ``embed_rasters`` itself, not to its options.
_CALL_ARGUMENTS = ("mean", "std", "scale", "model_info")


def run_embed(inputs: list[Path], output: Path, **kwargs: Any) -> EmbedReport:
    """``embed_rasters`` with the tests' defaults: BandMean, identity normalisation, 8 px chips.

    ``model``, ``mean``, ``std``, ``scale`` and ``model_info`` go to the call, every other keyword
    to :class:`~geossl.embed.EmbedOptions`.
    """
    model = kwargs.pop("model", None) or BandMean()
    call: dict[str, Any] = {"mean": IDENTITY["mean"], "std": IDENTITY["std"], "scale": POS_SCALE}
    options: dict[str, Any] = {"chip_size": 8, "progress": False}
    for key, value in kwargs.items():
        (call if key in _CALL_ARGUMENTS else options)[key] = value
    return embed_rasters(model, inputs, output, options=EmbedOptions(**options), **call)


def output_files(folder: Path) -> list[str]:
    """The files under ``folder``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
