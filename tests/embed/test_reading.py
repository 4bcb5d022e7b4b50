"""The block reader: batches across blocks and workers, early stop, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from tests.embed.embed_helpers import output_files, position_raster, run_embed, write_raster


def test_batches_across_blocks_and_workers_give_the_same_rows(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(1, 255, size=(3, 50, 70), dtype=np.uint8)
    data[:, 20:40, 10:50] = 0
    raster = write_raster(tmp_path / "r.tif", data, nodata=0)
    a = run_embed([raster], tmp_path / "a.parquet", scale=1 / 255, batch_size=3, workers=2)
    b = run_embed([raster], tmp_path / "b.parquet", scale=1 / 255, batch_size=1000, workers=0)
    assert a.num_embedded == b.num_embedded > 0
    assert a.num_skipped_nodata == b.num_skipped_nodata > 0
    ta, tb = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert ta.drop(["embedding"]).equals(tb.drop(["embedding"]))
    np.testing.assert_allclose(
        np.stack(ta["embedding"].to_numpy(zero_copy_only=False)),
        np.stack(tb["embedding"].to_numpy(zero_copy_only=False)),
        rtol=1e-6,
    )


def test_max_chips_stops_early(tmp_path: Path) -> None:
    raster = position_raster(tmp_path / "pos.tif")  # 15 chips of 8 x 8
    other = position_raster(tmp_path / "other.tif")
    report = run_embed([raster, other], tmp_path / "e.parquet", max_chips=17)
    assert report.num_chips == report.num_embedded == 17
    assert pq.read_table(tmp_path / "e.parquet")["source"].to_pylist()[-2:] == [str(other)] * 2
    report = run_embed([raster], tmp_path / "grid", fmt="geotiff", max_chips=2)
    with rasterio.open(tmp_path / "grid" / "pos.tif") as src:
        assert np.isfinite(src.read(1)).sum() == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_raster_is_a_one_line_error_naming_it(tmp_path: Path, workers: int) -> None:
    data = np.random.default_rng(0).integers(1, 255, size=(3, 64, 64), dtype=np.uint8)
    good = write_raster(tmp_path / "good.tif", data, compress="deflate")
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])  # header, half the tiles
    out = tmp_path / "out" / "e.parquet"
    with pytest.raises(ValueError, match=r"damaged\.tif: cannot read chip row \d") as info:
        run_embed([damaged], out, scale=1 / 255, chip_size=16, workers=workers)
    assert "\n" not in str(info.value)
    assert "IReadBlock failed" in str(info.value)  # GDAL's reason, not "see previous exception"
    assert output_files(tmp_path / "out") == []
