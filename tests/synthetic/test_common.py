"""The generators' shared pieces: the one GeoTIFF writer, the output folder, the plan checks."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from geossl.datasets.fmow.constants import FMOW_SPLITS
from geossl.synthetic.common import (
    _check_range,
    _split_counts,
    check_plan_arguments,
    prepare_sample_folder,
    write_geotiff,
)

UTM = Affine(2.0, 0.0, 485900.0, 0.0, -2.0, 5209248.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_geotiff_keeps_crs_transform_dtype_and_pixels(tmp_path: Path, dtype: type) -> None:
    pixels: np.ndarray[Any, Any] = np.arange(3 * 5 * 7, dtype=dtype).reshape(3, 5, 7)
    write_geotiff(tmp_path / "a.tif", pixels, 32614, UTM)
    with rasterio.open(tmp_path / "a.tif") as src:
        assert src.crs.to_epsg() == 32614
        assert src.transform == UTM
        assert src.dtypes == (np.dtype(dtype).name,) * 3
        assert (src.count, src.height, src.width) == (3, 5, 7)
        assert np.array_equal(src.read(), pixels)


def test_geotiff_tags_band_names_and_creation_options(tmp_path: Path) -> None:
    pixels = np.ones((2, 64, 64), dtype=np.uint8)
    write_geotiff(
        tmp_path / "b.tif",
        pixels,
        4326,
        Affine(1e-5, 0.0, 10.0, 0.0, -1e-5, 50.0),
        tags={"TIFFTAG_DATETIME": "2016:05:01 00:00:00"},
        band_names=("red", "green"),
        nodata=0,
        tiled=True,
        blockxsize=32,
        blockysize=32,
        compress="deflate",
    )
    with rasterio.open(tmp_path / "b.tif") as src:
        assert src.crs.to_epsg() == 4326
        assert src.tags()["TIFFTAG_DATETIME"] == "2016:05:01 00:00:00"
        assert src.descriptions == ("red", "green")
        assert src.nodata == 0
        assert src.block_shapes == [(32, 32), (32, 32)]
        assert src.compression is not None
        assert src.compression.name.lower() == "deflate"


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    pixels = np.zeros((1, 4, 4), dtype=np.uint8)
    with pytest.raises(IndexError, match="band index"):  # fails after the pixels are written
        write_geotiff(tmp_path / "c.tif", pixels, 4326, UTM, band_names=("a", "b"))
    assert list(tmp_path.iterdir()) == []
    write_geotiff(tmp_path / "d.tif", pixels + 7, 4326, UTM)
    with pytest.raises(IndexError, match="band index"):
        write_geotiff(tmp_path / "d.tif", pixels, 4326, UTM, band_names=("a", "b"))
    assert [p.name for p in tmp_path.iterdir()] == ["d.tif"]  # the old file is kept, whole
    with rasterio.open(tmp_path / "d.tif") as src:
        assert int(src.read().max()) == 7


def test_sample_folder_is_created_refused_or_cleared_of_its_own_entries(tmp_path: Path) -> None:
    root = prepare_sample_folder(tmp_path / "new" / "sample", False, ["train"])
    assert root.is_dir()
    (root / "train").mkdir()
    (root / "train" / "x.tif").write_bytes(b"x")
    (root / "manifest.json").write_text("[]")
    (root / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_sample_folder(root, False, ["train"])
    prepare_sample_folder(root, True, ["train", "manifest.json", "absent"])
    assert sorted(p.name for p in root.iterdir()) == ["mine.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="not a folder"):
        prepare_sample_folder(tmp_path / "file", True, [])


def test_plan_arguments_are_checked_and_normalised() -> None:
    fractions, cats = check_plan_arguments(5, {"train": 1.0}, FMOW_SPLITS, ["airport"])
    assert fractions == {"train": 1.0}
    assert cats == ("airport",)
    assert len(check_plan_arguments(1, {"val": 2.0}, FMOW_SPLITS, None)[1]) == 62
    with pytest.raises(ValueError, match="locations"):
        check_plan_arguments(0, {"train": 1.0}, FMOW_SPLITS, None)
    with pytest.raises(ValueError, match="unknown splits"):
        check_plan_arguments(3, {"seq": 1.0}, ("train", "val"), None)
    with pytest.raises(ValueError, match="sum to > 0"):
        check_plan_arguments(3, {"train": 0.0}, FMOW_SPLITS, None)
    with pytest.raises(ValueError, match="non-empty sequence"):
        check_plan_arguments(3, {"train": 1.0}, FMOW_SPLITS, "airport")
    with pytest.raises(ValueError, match="unknown fMoW categories"):
        check_plan_arguments(3, {"train": 1.0}, FMOW_SPLITS, ["volcano"])


def test_range_check_and_split_counts() -> None:
    assert _check_range("size", (16, 32), 16) == (16, 32)
    for bad in [(8, 32), (32, 16), (16,), (16.0, 32), (True, 32)]:
        with pytest.raises(ValueError, match="size"):
            _check_range("size", bad, 16)  # type: ignore[arg-type]
    counts = _split_counts(10, {"train": 0.7, "val": 0.15, "test": 0.075, "seq": 0.075})
    assert sum(counts.values()) == 10
    assert all(counts[s] >= 1 for s in FMOW_SPLITS)
    assert _split_counts(3, {"train": 1.0}) == {"train": 3, "val": 0, "test": 0, "seq": 0}
