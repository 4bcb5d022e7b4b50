"""PCA of embeddings and the false-colour preview images.

The PCA is fitted on every embedding of a run from streamed sums (:class:`PCAAccumulator`: the
embeddings themselves are never held in memory), so one basis serves all the run's outputs and the
colours of two previews can be compared. The preview maps the first three principal components to
red, green and blue, each stretched linearly from its 2nd to its 98th percentile over the run
(:func:`stretch_to_uint8`).

* Rasters: one pixel per chip (the chip grid, :meth:`~geossl.export.chips.ChipGrid.cell_transform`),
  written as a georeferenced RGB GeoTIFF and as a PNG enlarged with nearest-neighbour sampling so
  that its longer side is at least 512 pixels; skipped chips are transparent (PNG) or masked
  (GeoTIFF).
* fMoW folders (one embedding per image, scattered over the globe): a map of the image locations in
  plate carree (EPSG:4326) with a dot of the image's colour per image (:func:`scatter_canvas`),
  also written as a GeoTIFF and a PNG.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from affine import Affine

__all__ = [
    "PCA",
    "PCAAccumulator",
    "scatter_canvas",
    "stretch_to_uint8",
    "write_preview",
]

#: The preview PNG is enlarged (nearest neighbour, integer factor) until its longer side reaches
#: this many pixels.
PNG_MIN_SIDE = 512


@dataclass(frozen=True, slots=True)
class PCA:
    """A fitted principal component analysis.

    Attributes:
        mean: ``float64 [D]`` mean embedding.
        components: ``float64 [k, D]`` unit principal axes, by decreasing variance; the sign of
            each is fixed so that its largest loading is positive (deterministic colours).
        explained_variance: ``[k]`` variance along each axis.
        explained_variance_ratio: ``[k]`` share of the total variance.
        num_samples: embeddings the fit saw.
    """

    mean: npt.NDArray[np.float64]
    components: npt.NDArray[np.float64]
    explained_variance: npt.NDArray[np.float64]
    explained_variance_ratio: npt.NDArray[np.float64]
    num_samples: int

    def head(self, k: int) -> PCA:
        """The first ``k`` components.

        Args:
            k: components to keep.

        Returns:
            A PCA with ``components[:k]`` (same mean).
        """
        return PCA(
            mean=self.mean,
            components=self.components[:k],
            explained_variance=self.explained_variance[:k],
            explained_variance_ratio=self.explained_variance_ratio[:k],
            num_samples=self.num_samples,
        )

    def transform(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Project embeddings on the components.

        Args:
            x: ``[N, D]`` embeddings.

        Returns:
            ``float32 [N, k]`` scores ``(x - mean) @ components.T``.
        """
        scores = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T
        return scores.astype(np.float32)


class PCAAccumulator:
    """Streaming mean and covariance of embeddings, for a PCA fitted at the end.

    Keeps ``n``, ``sum(x - s)`` and ``sum((x - s)(x - s)^T)`` in float64 with a shift ``s`` (the
    first batch's mean) that keeps the sums well conditioned; memory is ``O(D^2)`` whatever the
    number of embeddings (32 MB for D = 2048).
    """

    def __init__(self) -> None:
        self.count = 0
        self._shift: npt.NDArray[np.float64] | None = None
        self._sum: npt.NDArray[np.float64] | None = None
        self._outer: npt.NDArray[np.float64] | None = None

    def update(self, x: npt.NDArray[Any]) -> None:
        """Add a batch of embeddings.

        Args:
            x: ``[N, D]`` embeddings (NaN rows are ignored).
        """
        batch = np.asarray(x, dtype=np.float64)
        batch = batch[np.isfinite(batch).all(axis=1)]
        if len(batch) == 0:
            return
        if self._shift is None or self._sum is None or self._outer is None:
            self._shift = batch.mean(axis=0)
            self._sum = np.zeros(batch.shape[1])
            self._outer = np.zeros((batch.shape[1], batch.shape[1]))
        centred = batch - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.count += len(batch)

    def fit(self, n_components: int) -> PCA | None:
        """Fit the PCA from the sums.

        Args:
            n_components: axes to keep; more than the embedding size gives zero axes at the end.

        Returns:
            The PCA, or None when fewer than two embeddings were seen.
        """
        if self.count < 2 or self._shift is None or self._sum is None or self._outer is None:
            return None
        dim = len(self._shift)
        mean_c = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean_c, mean_c)) / (self.count - 1)
        values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
        order = np.argsort(values)[::-1]
        values = np.clip(values[order], 0.0, None)
        vectors = vectors[:, order].T  # [D, D], rows are axes
        k = min(n_components, dim)
        components = np.zeros((n_components, dim))
        components[:k] = vectors[:k]
        variance = np.zeros(n_components)
        variance[:k] = values[:k]
        for row in components[:k]:
            if row[np.argmax(np.abs(row))] < 0:
                row *= -1.0
        total = values.sum()
        ratio = variance / total if total > 0 else np.zeros(n_components)
        return PCA(
            mean=self._shift + mean_c,
            components=components,
            explained_variance=variance,
            explained_variance_ratio=ratio,
            num_samples=self.count,
        )


def stretch_to_uint8(
    values: npt.NDArray[Any], low: npt.NDArray[Any], high: npt.NDArray[Any]
) -> npt.NDArray[np.uint8]:
    """Map values linearly from ``[low, high]`` to ``[0, 255]`` per channel (clipped).

    Args:
        values: ``[..., C]`` values.
        low: ``[C]`` value mapped to 0 (e.g. the 2nd percentile).
        high: ``[C]`` value mapped to 255 (e.g. the 98th percentile).

    Returns:
        ``uint8 [..., C]``; NaN maps to 0.
    """
    span = np.where(high > low, high - low, 1.0)
    scaled = (np.asarray(values, dtype=np.float64) - low) / span * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0)
    result: npt.NDArray[np.uint8] = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return result


def scatter_canvas(
    lon: npt.NDArray[Any],
    lat: npt.NDArray[Any],
    colours: npt.NDArray[np.uint8],
    *,
    size: int = 1024,
    dot: int = 3,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_], Affine]:
    """Draw points on a lon/lat (plate carree) canvas: a map of the samples in their colours.

    The canvas covers the points' bounding box plus a margin, its longer side ``size`` pixels;
    each point is a ``dot x dot`` square (later points drawn over earlier ones).

    Args:
        lon: ``[N]`` longitudes.
        lat: ``[N]`` latitudes.
        colours: ``uint8 [N, 3]``.
        size: longer side of the canvas in pixels.
        dot: side of a point in pixels.

    Returns:
        ``(rgb [3, H, W], valid [H, W], transform)`` with ``transform`` mapping canvas pixels to
        EPSG:4326.
    """
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat, colours = lon[ok], lat[ok], colours[ok]
    if len(lon) == 0:
        return np.zeros((3, 1, 1), np.uint8), np.zeros((1, 1), bool), Affine.identity()
    west, east = float(lon.min()), float(lon.max())
    south, north = float(lat.min()), float(lat.max())
    margin = max(east - west, north - south, 0.01) * 0.05
    west, east = west - margin, east + margin
    south, north = south - margin, north + margin
    res = max(east - west, north - south) / size
    width = max(1, math.ceil((east - west) / res))
    height = max(1, math.ceil((north - south) / res))
    transform = Affine.translation(west, north) @ Affine.scale(res, -res)
    rgb = np.zeros((3, height, width), np.uint8)
    valid = np.zeros((height, width), bool)
    cols = np.clip(((lon - west) / res).astype(int), 0, width - 1)
    rows = np.clip(((north - lat) / res).astype(int), 0, height - 1)
    half = dot // 2
    for dy in range(-half, dot - half):
        for dx in range(-half, dot - half):
            r = np.clip(rows + dy, 0, height - 1)
            c = np.clip(cols + dx, 0, width - 1)
            rgb[:, r, c] = colours.T
            valid[r, c] = True
    return rgb, valid, transform


def write_preview(
    rgb: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.bool_],
    *,
    png: str | os.PathLike[str],
    geotiff: str | os.PathLike[str],
    crs: Any,
    transform: Affine,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a preview as an RGBA PNG (enlarged) and an RGB GeoTIFF with a mask.

    Both paths are written as given (callers pass temporary names, see
    :func:`geossl.utils.io.atomic_output`); the formats are explicit, not guessed from the names.

    Args:
        rgb: ``uint8 [3, H, W]``.
        valid: ``[H, W]``; False pixels are transparent in the PNG and masked in the GeoTIFF.
        png: the PNG path.
        geotiff: the GeoTIFF path.
        crs: the preview's CRS.
        transform: the preview's transform.
        tags: metadata for the GeoTIFF.
    """
    import rasterio
    from PIL import Image

    _, height, width = rgb.shape
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    rgba = np.concatenate([rgb, alpha[None]], axis=0).transpose(1, 2, 0)
    factor = max(1, math.ceil(PNG_MIN_SIDE / max(height, width)))
    if factor > 1:
        rgba = rgba.repeat(factor, axis=0).repeat(factor, axis=1)
    Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(png, format="PNG")
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "photometric": "RGB",
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(geotiff, "w", **profile) as dst:
        dst.write(rgb)
        dst.write_mask(alpha)
        if tags:
            dst.update_tags(**tags)
