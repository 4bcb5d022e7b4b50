"""Per-band statistics of SpaceNet images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from torchgeo.datasets import SpaceNet1

from geossl.datasets.spacenet import (
    SpaceNetChips,
    SpaceNetTiles,
    band_statistics,
)
from geossl.synthetic.spacenet import SpaceNetSampleSummary


def test_band_statistics(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    paths = [t.images["3band"] for t in sn1.tiles]
    stats = band_statistics(paths)
    pixels = np.concatenate([rasterio.open(p).read().reshape(3, -1) / 255.0 for p in paths], axis=1)
    assert stats.num_pixels == (pixels.shape[1],) * 3
    assert stats.num_samples == 4
    assert stats.mean == pytest.approx(tuple(pixels.mean(axis=1)), rel=1e-9)
    assert stats.std == pytest.approx(tuple(pixels.std(axis=1)), rel=1e-7)
    tiles = SpaceNetTiles(sn1.dataset_dir / "train", image_glob="3band/*.tif")
    assert band_statistics(tiles).mean == pytest.approx(stats.mean)
    chips = SpaceNetChips(SpaceNet1(sn1.root))
    assert band_statistics(chips).std == pytest.approx(stats.std, rel=1e-6)
    # nodata pixels are left out
    with rasterio.open(paths[0]) as src:
        data, profile = src.read(), src.profile
    data[:, :10, :] = 0
    profile["nodata"] = 0
    masked = tmp_path / "nodata.tif"
    with rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
    assert band_statistics([masked]).num_pixels == (406 * 439 - 10 * 439,) * 3
    with pytest.raises(ValueError, match="no image in the source"):
        band_statistics([])
