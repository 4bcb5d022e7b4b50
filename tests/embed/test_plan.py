"""The options and output files of a run: checks, output names, overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest

from geossl.embed import EmbedOptions, find_sources, output_paths
from tests.embed.embed_helpers import position_raster, run_embed


def test_options_defaults_and_stride() -> None:
    options = EmbedOptions(bands=[4, 3, 2])  # type: ignore[arg-type]  # a list is kept as a tuple
    assert options.bands == (4, 3, 2)
    assert (options.chip_size, options.chip_stride, options.fmt) == (224, 224, "geoparquet")
    assert EmbedOptions(chip_size=16, stride=4).chip_stride == 4
    with pytest.raises(ValueError, match=r"--batch-size \(batch_size\) must be at least 1"):
        EmbedOptions(batch_size=0)
    with pytest.raises(ValueError, match=r"--workers \(workers\) must be at least 0"):
        EmbedOptions(workers=-1)


def test_output_paths(tmp_path: Path) -> None:
    a = position_raster(tmp_path / "a.tif")
    b = position_raster(tmp_path / "b.tif")
    sources = find_sources([a, b], in_chans=3, chip_size=8, stride=8)
    plan = output_paths(tmp_path / "e.parquet", "geoparquet", sources)
    assert plan.outputs == [tmp_path / "e.parquet"] * 2
    assert plan.previews[1] == (tmp_path / "e_preview" / "b.png", tmp_path / "e_preview" / "b.tif")
    plan = output_paths(tmp_path / "grid", "geotiff", sources, preview=False)
    assert plan.outputs == [tmp_path / "grid" / "a.tif", tmp_path / "grid" / "b.tif"]
    assert plan.previews == []


def test_pca_needs_geotiff(tmp_path: Path) -> None:
    raster = position_raster(tmp_path / "pos.tif")
    with pytest.raises(ValueError, match=r"--pca .* needs --format geotiff"):
        run_embed([raster], tmp_path / "e.parquet", pca=4)


def test_existing_outputs_need_overwrite(tmp_path: Path) -> None:
    raster = position_raster(tmp_path / "pos.tif")
    out = tmp_path / "e.parquet"
    run_embed([raster], out)
    with pytest.raises(FileExistsError, match=r"e\.parquet exists; pass --overwrite"):
        run_embed([raster], out)
    report = run_embed([raster], out, overwrite=True, max_chips=3)
    assert len(gpd.read_parquet(out)) == 3 == report.num_embedded
    run_embed([raster], tmp_path / "grid", fmt="geotiff")
    # A GeoTIFF per raster: the same settings again skip it, other settings need --overwrite.
    again = run_embed([raster], tmp_path / "grid", fmt="geotiff")
    assert (again.units, again.units_done_before, again.outputs) == (1, 1, [])
    with pytest.raises(FileExistsError, match=r"grid/pos.tif exists, made with other settings"):
        run_embed([raster], tmp_path / "grid", fmt="geotiff", stride=4)
    with pytest.raises(FileExistsError, match="is a file"):
        run_embed([raster], out, fmt="geotiff", overwrite=True)
    # A folder without suffix is a GeoParquet dataset; one of GeoTIFFs is not adopted as one.
    with pytest.raises(FileExistsError, match=r"holds other files \(.*\); a GeoParquet dataset"):
        run_embed([raster], tmp_path / "grid", overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "zarr"}, "unknown format 'zarr'"),
        ({"chip_size": 0}, r"--chip-size \(chip_size\) must be at least 1"),
        ({"stride": 0}, r"--stride \(stride\) must be at least 1"),
        ({"max_nodata": 1.5}, r"max_nodata must be in \[0, 1\]"),
        ({"std": [1.0, 0.0, 1.0]}, "std and scale must be positive"),
        ({"mean": [0.0, 0.0]}, "one value per band"),
        ({"max_chips": 0}, "max_chips must be at least 1"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    raster = position_raster(tmp_path / "pos.tif")
    with pytest.raises(ValueError, match=match):
        run_embed([raster], tmp_path / "e.parquet", **kwargs)
