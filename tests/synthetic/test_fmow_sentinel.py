"""The fMoW-Sentinel sample generator: the real layout, the time series rules, failed downloads."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from geossl.datasets.fmow.sentinel import fmow_sentinel_path
from geossl.synthetic.fmow_sentinel import (
    _interval_bounds,
    generate_fmow_sentinel_sample,
    sentinel_bands,
)

CATEGORIES = ["airport", "crop_field", "lake_or_pond", "solar_farm"]


@pytest.fixture(scope="module")
def sentinel_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fMoW-Sentinel sample."""
    root = tmp_path_factory.mktemp("sentinel") / "fmow-sentinel"
    generate_fmow_sentinel_sample(
        root, locations=10, seed=0, image_size=(16, 32), categories=CATEGORIES
    )
    return root


def _ids(frame: pd.DataFrame) -> list[tuple[str, int, int]]:
    """``(category, location_id, image_id)`` of every CSV row."""
    return [
        (str(c), int(loc), int(img))
        for c, loc, img in zip(
            frame["category"].tolist(),
            frame["location_id"].tolist(),
            frame["image_id"].tolist(),
            strict=True,
        )
    ]


def test_sample_has_the_real_layout(sentinel_sample: Path) -> None:
    for split, name in (("train", "train.csv"), ("val", "val.csv"), ("test", "test_gt.csv")):
        frame = pd.read_csv(sentinel_sample / name)
        assert list(frame.columns) == [
            "category",
            "location_id",
            "image_id",
            "timestamp",
            "polygon",
        ]
        for category, location, image in _ids(frame):
            rel = fmow_sentinel_path(split, category, location, image)
            assert rel == (
                f"{split}/{category}/{category}_{location}/{category}_{location}_{image}.tif"
            )
            assert (sentinel_sample / rel).is_file()
    path = next(sentinel_sample.glob("train/*/*/*.tif"))
    with rasterio.open(path) as src:
        assert src.count in (1, 13)  # 1: a failed download, left out of the CSV


def test_time_series_follows_the_fmow_sentinel_rules(sentinel_sample: Path) -> None:
    # fMoW dates (image_id < 100) from 2015-07 on, plus the midpoint of each of the nine 6-month
    # intervals that has no fMoW date (image_id = 100 + interval); composites share one grid.
    frame = pd.read_csv(sentinel_sample / "train.csv")
    epoch = pd.Timestamp(0, tz="UTC")
    frame["ts"] = (pd.to_datetime(frame["timestamp"], utc=True) - epoch) // pd.Timedelta(seconds=1)
    intervals = _interval_bounds()
    assert len(intervals) == 9
    for (category, location), rows in frame.groupby(["category", "location_id"]):
        assert isinstance(category, str)
        fmow = rows.loc[rows["image_id"] < 100, "ts"].tolist()
        assert all(intervals[0][0] <= t < intervals[-1][1] for t in fmow)
        for _, row in rows.loc[rows["image_id"] >= 100].iterrows():
            lo, hi = intervals[row["image_id"] - 100]
            assert row["ts"] == (lo + hi) // 2
            assert not any(lo <= t < hi for t in fmow)
        folder = sentinel_sample / "train" / category / f"{category}_{location}"
        grids = set()
        for tif in folder.glob("*.tif"):
            with rasterio.open(tif) as src:
                grids.add((src.width, src.height, tuple(src.transform), src.crs.to_epsg()))
        assert len(grids) == 1, "the composites of one location must share one grid"
        assert grids.pop()[3] == 4326


def test_failed_downloads_are_single_band_and_unlisted(tmp_path: Path) -> None:
    summary = generate_fmow_sentinel_sample(
        tmp_path / "s", locations=4, image_size=(8, 12), failed_fraction=0.5, categories=CATEGORIES
    )
    assert summary.num_failed > 0
    listed = set()
    for split, name in (("train", "train.csv"), ("val", "val.csv"), ("test", "test_gt.csv")):
        if (tmp_path / "s" / name).is_file():
            for category, location, image in _ids(pd.read_csv(tmp_path / "s" / name)):
                listed.add(fmow_sentinel_path(split, category, location, image))
    files = {p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.tif")}
    unlisted = files - listed
    assert len(unlisted) == summary.num_failed
    for rel in unlisted:
        with rasterio.open(tmp_path / "s" / rel) as src:
            assert src.count == 1


def test_sample_is_deterministic(tmp_path: Path) -> None:
    a = generate_fmow_sentinel_sample(tmp_path / "a", locations=3, image_size=(8, 12), seed=5)
    b = generate_fmow_sentinel_sample(tmp_path / "b", locations=3, image_size=(8, 12), seed=5)
    assert a.num_images == b.num_images
    assert (tmp_path / "a" / "train.csv").read_bytes() == (
        tmp_path / "b" / "train.csv"
    ).read_bytes()
    for path in (tmp_path / "a").rglob("*.tif"):
        with (
            rasterio.open(path) as x,
            rasterio.open(tmp_path / "b" / path.relative_to(tmp_path / "a")) as y,
        ):
            assert np.array_equal(x.read(), y.read())


def test_sample_refuses_bad_arguments_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="locations"):
        generate_fmow_sentinel_sample(tmp_path / "x", locations=0)
    with pytest.raises(ValueError, match="unknown splits"):
        generate_fmow_sentinel_sample(tmp_path / "x", split_fractions={"seq": 1.0})
    with pytest.raises(ValueError, match="unknown fMoW categories"):
        generate_fmow_sentinel_sample(tmp_path / "x", categories=["volcano"])
    generate_fmow_sentinel_sample(tmp_path / "y", locations=2, image_size=(8, 8))
    (tmp_path / "y" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_fmow_sentinel_sample(tmp_path / "y", locations=2, image_size=(8, 8))
    generate_fmow_sentinel_sample(tmp_path / "y", locations=2, image_size=(8, 8), overwrite=True)
    assert (tmp_path / "y" / "mine.txt").read_text() == "keep"


def test_spectral_model_of_vegetation() -> None:
    green = np.zeros((1, 1, 3), dtype=np.uint8)
    green[..., 1] = 200  # vegetation: bright NIR, dark SWIR; B10 (cirrus) near zero
    grey = np.full((1, 1, 3), 120, dtype=np.uint8)
    veg, bare = sentinel_bands(green)[:, 0, 0], sentinel_bands(grey)[:, 0, 0]
    assert veg.dtype == np.uint16
    assert veg.shape == (13,)
    nir, red, swir = 7, 3, 11
    assert veg[nir] > 2 * veg[red]
    assert veg[nir] > bare[nir]
    assert veg[swir] < bare[swir]
    assert veg[10] < 50
    assert bare[10] < 50
