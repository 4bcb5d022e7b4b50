"""GeoTIFF runs: one raster per work unit, sharded, skipped when done, optionally COG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geossl.embed.dataset import Shard
from tests.embed.embed_helpers import run_embed, write_raster


@pytest.fixture
def rasters(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    return [
        write_raster(tmp_path / "in" / f"{name}.tif", rng.integers(1, 255, (3, 32, 24), np.uint8))
        for name in ("a", "b", "c")
    ]


def _grids(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tif"))}


def test_shards_split_the_rasters_and_a_rerun_skips(rasters: list[Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    run_embed(rasters, whole, fmt="geotiff", preview=False)
    sharded = tmp_path / "sharded"
    first = run_embed(rasters, sharded, fmt="geotiff", shard=Shard(0, 2))
    assert sorted(p.name for p in first.outputs) == ["a.tif", "c.tif"]  # positions 0 and 2
    assert first.previews == []  # one shard's PCA would colour its rasters alone
    second = run_embed(rasters, sharded, fmt="geotiff", shard=Shard(1, 2))
    assert [p.name for p in second.outputs] == ["b.tif"]
    for name in ("a.tif", "b.tif", "c.tif"):
        with rasterio.open(whole / name) as left, rasterio.open(sharded / name) as right:
            np.testing.assert_array_equal(left.read(), right.read())
    before = _grids(sharded)
    again = run_embed(rasters, sharded, fmt="geotiff", preview=False)
    assert (again.units, again.units_done_before, again.outputs) == (3, 3, [])
    assert _grids(sharded) == before
    os.utime(rasters[1], ns=(10**18, 10**18))  # b changed since: redone, with --overwrite
    with pytest.raises(FileExistsError, match=r"b\.tif exists, made with other settings or from"):
        run_embed(rasters, sharded, fmt="geotiff", preview=False)
    redone = run_embed(rasters, sharded, fmt="geotiff", preview=False, overwrite=True)
    assert [p.name for p in redone.outputs] == ["b.tif"]


def test_pca_is_neither_sharded_nor_skipped(rasters: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--pca fits one PCA on the whole run"):
        run_embed(rasters, tmp_path / "g", fmt="geotiff", pca=2, shard=Shard(0, 2))
    run_embed(rasters, tmp_path / "g", fmt="geotiff", pca=2)
    with pytest.raises(FileExistsError, match=r"a\.tif exists; pass --overwrite"):
        run_embed(rasters, tmp_path / "g", fmt="geotiff", pca=2)


def test_cog_output(rasters: list[Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    run_embed(rasters[:1], plain, fmt="geotiff", preview=False)
    cog = tmp_path / "cog"
    run_embed(rasters[:1], cog, fmt="geotiff", preview=False, cog=True)
    with rasterio.open(plain / "a.tif") as left, rasterio.open(cog / "a.tif") as right:
        np.testing.assert_array_equal(left.read(), right.read())
        assert right.tags()["geossl"] == left.tags()["geossl"]
        assert right.descriptions == left.descriptions
        assert right.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert not [p for p in cog.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="--cog writes cloud-optimised GeoTIFFs"):
        run_embed(rasters[:1], tmp_path / "e.parquet", cog=True)
