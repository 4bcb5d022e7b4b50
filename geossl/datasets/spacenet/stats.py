"""Per-band statistics of SpaceNet images, for bands without pretrained normalisation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import torch
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.band_stats import BandMoments, BandStatistics, valid_pixels
from geossl.datasets.spacenet.constants import default_scale
from geossl.datasets.spacenet.tiles import SpaceNetTiles

__all__ = ["band_statistics"]


def band_statistics(
    source: SpaceNetTiles | Sequence[str | os.PathLike[str]] | Dataset[dict[str, Any]],
    *,
    bands: Sequence[int] | None = None,
    scale: float | None = None,
) -> BandStatistics:
    r"""Per-band mean / std of the ``[0, 1]`` images, for ``model.mean`` / ``model.std``.

    A band set that pretrained weights know nothing about (SpaceNet-4's single pan band with RGB
    weights and ``adapt_in_chans``) needs the normalisation of its own data: over the valid
    pixels $x_{c,i}$ of every image, $\mu_c = \frac{1}{N_c} \sum_i x_{c,i}$ and
    $\sigma_c = \sqrt{\frac{1}{N_c} \sum_i (x_{c,i} - \mu_c)^2}$ (population std, pooled
    over images in float64 by [`BandMoments`][geossl.datasets.band_stats.BandMoments]; the nodata
    rule is [`valid_pixels`][geossl.datasets.band_stats.valid_pixels]). Compute it on the training
    images only.

    Args:
        source: a list of GeoTIFF paths (scaled with ``scale`` or
            [`default_scale`][geossl.datasets.spacenet.constants.default_scale]; pixels whose bands
            all equal the file's ``nodata`` value are left out), a
            [`SpaceNetTiles`][geossl.datasets.spacenet.tiles.SpaceNetTiles] (its files, bands and
            scale, as paths), or any dataset of samples with ``image`` ``[C, H, W]`` in ``[0, 1]``
            (every pixel counts).
        bands: 1-based bands to read from paths (None for all).
        scale: raw value -> ``[0, 1]`` factor for paths (None for the dtype's default).

    Returns:
        The [`BandStatistics`][geossl.datasets.band_stats.BandStatistics] (``num_samples``: images
        read).

    Raises:
        ValueError: if there is no valid pixel, or the images disagree on the band count.
    """
    if isinstance(source, SpaceNetTiles):  # its files, so that nodata pixels are left out too
        return band_statistics(source.image_paths, bands=source.bands, scale=source.scale)
    moments: BandMoments | None = None
    if isinstance(source, Sequence) and all(isinstance(s, str | os.PathLike) for s in source):
        for path in source:
            with rasterio.open(path) as src:
                data = src.read(list(bands) if bands is not None else None)
                raw = torch.from_numpy(data.astype(np.float64))  # uint16 has few torch ops
                factor = scale if scale is not None else default_scale(src.dtypes[0])
                nodata = src.nodata
            valid = valid_pixels(raw, nodata)
            pixels = (raw[:, valid] * factor).clamp_(0.0, 1.0)
            moments = moments or BandMoments(raw.shape[0])
            moments.update(pixels)
    else:
        dataset: Any = source
        for index in range(len(dataset)):
            image: Tensor = dataset[index]["image"]
            moments = moments or BandMoments(image.shape[0])
            moments.update(image.reshape(image.shape[0], -1))
    if moments is None:
        raise ValueError("band_statistics: no image in the source")
    return moments.result(f"{moments.num_samples} SpaceNet images")
