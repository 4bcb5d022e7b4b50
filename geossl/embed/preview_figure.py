"""The preview PNGs people look at: the source beside its PCA colours, and the fMoW map.

The georeferenced preview (one pixel per chip, [`geossl.embed.preview`][geossl.embed.preview])
is what GIS tools overlay; a PNG of it alone is a few dozen pixels wide and says nothing about
what the colours are. These figures draw, for a raster, the source image (its first three model
bands, stretched) beside the PCA false colour on the same extent and axes, and for fMoW, the
images as points on longitude / latitude axes; both with a caption naming the components and the
variance they keep.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from geossl.embed.sources import RasterSource

__all__ = ["map_figure", "pca_caption", "raster_figure"]

#: Longer side of the source image drawn beside the PCA colours, in pixels.
SOURCE_SIDE = 768


def pca_caption(variance: Sequence[float]) -> str:
    """The legend of the false colours: which component is which channel, and its variance.

    Example:
        >>> pca_caption([0.5, 0.2, 0.1]).split(" (")[1]
        '50.0 %, 20.0 %, 10.0 % of the variance)'
    """
    shares = ", ".join(f"{100 * v:.1f} %" for v in list(variance)[:3])
    return (
        f"R / G / B = principal components 1 / 2 / 3 of the embeddings ({shares} of the variance)"
    )


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, whatever matplotlib's global backend
    return figure


def _source_rgb(source: RasterSource) -> npt.NDArray[np.float32]:
    """The source's first three model bands (or its one band as grey), decimated, stretched."""
    import rasterio

    scale = max(1.0, max(source.width, source.height) / SOURCE_SIDE)
    shape = (max(1, round(source.height / scale)), max(1, round(source.width / scale)))
    bands = list(source.bands[:3])
    with rasterio.open(source.path) as src:
        data = src.read(bands, out_shape=(len(bands), *shape), masked=True).astype(np.float32)
    image = np.ma.filled(data, np.nan)
    out = np.zeros((*shape, 3), np.float32)
    for k in range(3):
        band = image[min(k, len(bands) - 1)]
        finite = band[np.isfinite(band)]
        if finite.size:
            low, high = np.percentile(finite, (2, 98))
            out[..., k] = np.clip((band - low) / max(high - low, 1e-12), 0, 1)
    return np.nan_to_num(out)


def raster_figure(
    source: RasterSource,
    rgb: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.bool_],
    variance: Sequence[float],
    png: str | os.PathLike[str],
) -> None:
    """Write the source image beside its PCA false colour (one cell per chip), same extent.

    Args:
        source: the raster.
        rgb: ``uint8 [3, rows, cols]`` PCA colours of the chip grid.
        valid: ``[rows, cols]``: chips that were embedded.
        variance: explained variance ratio of the components.
        png: the file to write (written as given: pass a temporary name).
    """
    left, top = source.transform * (0, 0)
    right, bottom = source.transform * (source.width, source.height)
    extent = (left, right, min(bottom, top), max(bottom, top))
    aspect = source.height / max(source.width, 1)
    figure = _figure(12, max(3.5, 6 * aspect + 1))
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    axes[0].imshow(_source_rgb(source), extent=extent, interpolation="bilinear")
    axes[0].set_title(f"{source.name} (bands {', '.join(map(str, source.bands[:3]))})")
    rgba = np.concatenate([rgb, np.where(valid, 255, 0)[None].astype(np.uint8)])
    axes[1].imshow(rgba.transpose(1, 2, 0), extent=extent, interpolation="nearest")
    axes[1].set_title("embeddings, one cell per chip")
    for ax in axes:
        ax.set_xlabel(f"x ({source.crs_label if len(source.crs_label) < 30 else 'map units'})")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("y")
    figure.suptitle(pca_caption(variance), fontsize=10)
    figure.savefig(png, format="png")


def map_figure(
    lon: npt.NDArray[Any],
    lat: npt.NDArray[Any],
    colours: npt.NDArray[np.uint8],
    variance: Sequence[float],
    png: str | os.PathLike[str],
    *,
    title: str,
) -> None:
    """Write the samples as points on longitude / latitude axes, in their PCA colours.

    The extent is the points' with a margin (the whole world when they span most of it); points
    are drawn large enough to be seen at any count.

    Args:
        lon: ``[N]`` longitudes.
        lat: ``[N]`` latitudes.
        colours: ``uint8 [N, 3]``.
        variance: explained variance ratio of the components.
        png: the file to write (written as given: pass a temporary name).
        title: the figure's title (the source's name).
    """
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat, colours = lon[ok], lat[ok], colours[ok]
    figure = _figure(10, 6)
    ax = figure.subplots()
    if len(lon):
        west, east, south, north = lon.min(), lon.max(), lat.min(), lat.max()
        margin = max(east - west, north - south, 0.01) * 0.08
        if east - west > 180:
            west, east, south, north, margin = -180.0, 180.0, -90.0, 90.0, 0.0
        ax.set_xlim(max(-180.0, west - margin), min(180.0, east + margin))
        ax.set_ylim(max(-90.0, south - margin), min(90.0, north + margin))
        size = float(np.clip(4000 / len(lon), 6, 60))
        ax.scatter(lon, lat, c=colours / 255.0, s=size, edgecolors="0.2", linewidths=0.3)
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, linewidth=0.3)
    ax.set_title(f"{title}: {len(lon)} images")
    figure.suptitle(pca_caption(variance), fontsize=10)
    figure.savefig(png, format="png")
