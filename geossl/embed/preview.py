"""PCA of embeddings and the false-colour preview images.

The PCA is fitted on every embedding of a run from streamed sums
([`PCAAccumulator`][geossl.embed.preview.PCAAccumulator]: the embeddings themselves are never held
in memory), so one basis serves all the run's outputs and the colours of two previews can be
compared. The preview maps the first three principal components to red, green and blue, each
stretched linearly from its 2nd to its 98th percentile over the run
([`stretch_to_uint8`][geossl.embed.preview.stretch_to_uint8]).

* Rasters: one pixel per chip (the chip grid,
  [`cell_transform`][geossl.embed.chips.ChipGrid.cell_transform]), written as a georeferenced RGB
  GeoTIFF and as a PNG enlarged with nearest-neighbour sampling so that its longer side is at least
  512 pixels; skipped chips are transparent (PNG) or masked (GeoTIFF).
* fMoW folders (one embedding per image, scattered over the globe): a map of the image locations in
  plate carree (EPSG:4326) with a dot of the image's colour per image
  ([`scatter_canvas`][geossl.embed.preview.scatter_canvas]), also written as a GeoTIFF and a PNG.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from affine import Affine

from geossl.embed.plan import OutputPlan
from geossl.embed.preview_figure import map_figure, raster_figure
from geossl.embed.sources import RasterSource, Source
from geossl.embed.writers import GEOSSL_METADATA_KEY, GridTiffWriter, read_grid_rows
from geossl.utils.io import atomic_output

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
    png: str | os.PathLike[str] | None,
    geotiff: str | os.PathLike[str],
    crs: Any,
    transform: Affine,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a preview as an RGBA PNG (enlarged) and an RGB GeoTIFF with a mask.

    Both paths are written as given (callers pass temporary names, see
    [`geossl.utils.io.atomic_output`][geossl.utils.io.atomic_output]); the formats are explicit, not
    guessed from the names.

    Args:
        rgb: ``uint8 [3, H, W]``.
        valid: ``[H, W]``; False pixels are transparent in the PNG and masked in the GeoTIFF.
        png: the PNG path (None: no PNG; the pipeline draws its figure instead).
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
    if png is not None:
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


#: Percentiles of the PCA scores mapped to 0 and 255 in the previews.
_STRETCH = (2.0, 98.0)


def _write_previews(
    stack: ExitStack,
    sources: Sequence[Source],
    plan: OutputPlan,
    scores: list[Any],
    pca: PCA,
    metadata: Mapping[str, Any],
) -> list[Path]:
    """Stretch the PCA scores with run-wide percentiles and write each source's preview."""
    finite = [
        s.reshape(-1, 3) if isinstance(src, RasterSource) else s[2]
        for src, s in zip(sources, scores, strict=True)
    ]
    values = np.concatenate(finite) if finite else np.empty((0, 3), np.float32)
    values = values[np.isfinite(values).all(axis=1)]
    if len(values):
        low, high = np.percentile(values, _STRETCH, axis=0)
    else:
        low, high = np.zeros(3), np.ones(3)
    tags = {
        GEOSSL_METADATA_KEY: json.dumps(
            {
                **metadata,
                "preview": {
                    "components": [1, 2, 3],
                    "explained_variance_ratio": pca.explained_variance_ratio[:3].tolist(),
                    "stretch_percentiles": list(_STRETCH),
                    "pca_samples": pca.num_samples,
                },
            }
        )
    }
    variance = pca.explained_variance_ratio[:3].tolist()
    written: list[Path] = []
    for source, score, (png, tif) in zip(sources, scores, plan.previews, strict=True):
        png.parent.mkdir(parents=True, exist_ok=True)
        png_tmp = stack.enter_context(atomic_output(png))
        tif_tmp = stack.enter_context(atomic_output(tif))
        if isinstance(source, RasterSource):
            valid = np.isfinite(score).all(axis=-1)
            rgb = stretch_to_uint8(score, low, high).transpose(2, 0, 1)
            crs: Any = source.crs
            transform = source.grid.cell_transform(source.transform)
            raster_figure(source, rgb, valid, variance, png_tmp)
        else:
            lon, lat, vals = score
            colours = stretch_to_uint8(vals, low, high)
            rgb, valid, transform = scatter_canvas(lon, lat, colours)
            crs = "EPSG:4326"
            map_figure(lon, lat, colours, variance, png_tmp, title=source.name)
        write_preview(
            rgb, valid, png=None, geotiff=tif_tmp, crs=crs, transform=transform, tags=tags
        )
        written += [png, tif]
    return written


def _row_batches(path: Path, row_format: str) -> Iterator[pa.RecordBatch]:
    """The rows of a GeoParquet / GeoPackage in batches: source, window, centre, embedding."""
    columns = ["source", "col_off", "row_off", "lon", "lat", "embedding"]
    if row_format == "gpkg":
        import pyogrio

        with pyogrio.open_arrow(
            path, columns=columns, read_geometry=False, batch_size=4096, use_pyarrow=True
        ) as (
            _,
            reader,
        ):
            yield from reader
        return
    import pyarrow.parquet as pq

    # A GeoParquet dataset folder: its parts (names starting with "." or "_" are not rows).
    parts = sorted(p for p in path.glob("*.parquet")) if path.is_dir() else [path]
    for part in parts:
        yield from pq.ParquetFile(part).iter_batches(batch_size=4096, columns=columns)


def _batch_embeddings(column: pa.Array, rows: int) -> npt.NDArray[np.float32]:
    """``[N, D]`` embeddings of a batch: a fixed-size list (Parquet) or float32 BLOBs (GPKG)."""
    if pa.types.is_fixed_size_list(column.type):
        flat = column.flatten().to_numpy()
    else:
        flat = np.frombuffer(b"".join(column.to_pylist()), dtype="<f4")
    return np.asarray(flat, dtype=np.float32).reshape(rows, -1)


def _scores_from_rows(
    path: Path, sources: Sequence[Source], pca: PCA, row_format: str = "geoparquet"
) -> list[Any]:
    """PCA scores of every row of the GeoParquet / GeoPackage, placed per source."""
    index: dict[str, int] = {}
    scores: list[Any] = []
    fmow: dict[int, list[npt.NDArray[Any]]] = {}
    for i, source in enumerate(sources):
        if isinstance(source, RasterSource):
            index[source.row_source] = i
            scores.append(np.full((source.grid.n_rows, source.grid.n_cols, 3), np.nan, np.float32))
        else:
            index.update({str(image): i for image in source.images})
            scores.append(None)
            fmow[i] = []
    for batch in _row_batches(path, row_format):
        names = batch.column(0).to_pylist()
        emb = _batch_embeddings(batch.column(5), len(batch))
        projected = pca.transform(emb)[:, :3]
        col_off = batch.column(1).to_numpy()
        row_off = batch.column(2).to_numpy()
        lon = batch.column(3).to_numpy(zero_copy_only=False)
        lat = batch.column(4).to_numpy(zero_copy_only=False)
        # -1: a row of a dataset part from an earlier run's other inputs (no preview of it here).
        owners = np.array([index.get(name, -1) for name in names])
        for i in np.unique(owners[owners >= 0]):
            sel = owners == i
            source = sources[i]
            if isinstance(source, RasterSource):
                stride = source.grid.stride
                scores[i][row_off[sel] // stride, col_off[sel] // stride] = projected[sel]
            else:
                fmow[i].append(np.column_stack([lon[sel], lat[sel], projected[sel]]))
    for i, parts in fmow.items():
        table = np.concatenate(parts) if parts else np.empty((0, 5))
        scores[i] = (table[:, 0], table[:, 1], table[:, 2:5].astype(np.float32))
    return scores


def _scores_from_grid(path: Path, source: RasterSource, pca: PCA) -> npt.NDArray[np.float32]:
    """PCA scores of a chip-grid GeoTIFF (full embeddings), ``[n_rows, n_cols, 3]``."""
    grid = source.grid
    scores = np.full((grid.n_rows, grid.n_cols, 3), np.nan, np.float32)
    for row0, values in read_grid_rows(path):
        count, rows, cols = values.shape
        flat = values.reshape(count, -1).T
        ok = np.isfinite(flat).all(axis=1)
        out = np.full((len(flat), 3), np.nan, np.float32)
        if ok.any():
            out[ok] = pca.transform(flat[ok])[:, :3]
        scores[row0 : row0 + rows] = out.reshape(rows, cols, 3)
    return scores


def _reduce_grid(
    src: Path, dst: Path, source: RasterSource, pca: PCA, tags: dict[str, str]
) -> None:
    """Write the PCA scores of a full chip-grid GeoTIFF as a new one."""
    k = len(pca.components)
    grid = source.grid
    writer = GridTiffWriter(
        dst,
        n_rows=grid.n_rows,
        n_cols=grid.n_cols,
        count=k,
        crs=source.crs,
        transform=grid.cell_transform(source.transform),
        descriptions=[f"pc_{i + 1}" for i in range(k)],
        tags=tags,
    )
    try:
        for row0, values in read_grid_rows(src):
            count, _, cols = values.shape
            flat = values.reshape(count, -1).T
            ok = np.isfinite(flat).all(axis=1)
            rr, cc = np.divmod(np.flatnonzero(ok), cols)
            writer.write(rr + row0, cc, pca.transform(flat[ok]))
    except BaseException:
        writer.abort()
        raise
    writer.close()
