"""RasterTimeSeriesDataModule: batches in the pair contract, geo clusters, workers, errors."""

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import from_bounds

from geossl.cli.pretrain_cli import run_pretrain
from geossl.datamodules import RasterTimeSeriesDataModule
from geossl.datasets.errors import BadDatasetError
from geossl.datasets.rasters import TimeSeriesRasters
from geossl.samplers import TemporalGeoPairSampler
from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from tests.raster_helpers import (
    S2_BANDS,
    cut_tiles,
    garble_tiles,
    one_line,
    real_bigearthnet,
    real_stack,
    scene,
    write_tif,
)

REPO = Path(__file__).resolve().parents[2]
RASTERS_TINY = REPO / "tests" / "conf" / "rasters_tiny.yaml"

KEYS = {"image", "time", "index", "location", "lat", "lon", "geo_label", "label", "bounds"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    root = tmp_path_factory.mktemp("rasters") / "stack"
    return generate_raster_timeseries_sample(root, num_dates=4, tiles=2, size=(96, 160))


def _module(paths: Any, **kwargs: Any) -> RasterTimeSeriesDataModule:
    options: dict[str, Any] = {
        "paths": paths,
        "patch_size": 32,
        "batch_size": 4,
        "num_workers": 0,
        "num_geo_clusters": 3,
        "length": 12,
        "geo_cluster_points": 200,
        "pin_memory": False,
    }
    options.update(kwargs)
    return RasterTimeSeriesDataModule(**options)


def test_training_batch_follows_the_contract(stack: RasterSampleSummary) -> None:
    dm = _module(str(stack.root))
    assert dm.in_chans == 4
    assert dm.num_geo_clusters == 3
    assert dm.pairs_share_canvas
    dm.setup("fit")
    assert dm.centroids is not None
    assert dm.centroids.shape == (3, 3)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, TemporalGeoPairSampler)
    batches = list(loader)
    assert len(batches) == 3
    batch = batches[0]
    assert set(batch) == KEYS
    assert batch["image"].shape == (4, 2, 4, 32, 32)
    assert batch["image"].dtype == torch.uint8
    for key in ("label", "geo_label", "location"):
        assert batch[key].shape == (4,)
        assert batch[key].dtype == torch.int64
    for key in ("time", "index"):
        assert batch[key].shape == (4, 2)
        assert batch[key].dtype == torch.int64
    assert (batch["index"][:, 0] != batch["index"][:, 1]).all()
    assert (batch["time"][:, 0] != batch["time"][:, 1]).all()
    assert batch["lat"].dtype == batch["lon"].dtype == torch.float32
    assert batch["bounds"].shape == (4, 4)
    assert (batch["label"] == -1).all()
    labels = torch.cat([b["geo_label"] for b in batches])
    assert labels.min() >= 0
    assert labels.max() < 3
    assert dm.crs.to_epsg() == 32614


def test_bands_select_channels(stack: RasterSampleSummary) -> None:
    dm = _module([str(stack.root)], bands=[1, 2, 3], batch_size=2, length=2)
    assert dm.in_chans == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 2, 3, 32, 32)


def test_workers_give_the_same_batches(stack: RasterSampleSummary) -> None:
    serial = [b["image"] for b in _module(str(stack.root)).train_dataloader()]
    dm = _module(str(stack.root), num_workers=2, persistent_workers=False)
    dm.setup("fit")
    assert dm.rasters is not None
    dm.rasters[dm.rasters.query((485900.0, 5209184.0, 485964.0, 5209248.0), 0)]  # parent opens
    parallel = [b["image"] for b in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_geo_clusters_are_seeded(stack: RasterSampleSummary) -> None:
    a, b = _module(str(stack.root)), _module(str(stack.root))
    a.setup()
    b.setup()
    assert a.centroids is not None
    assert b.centroids is not None
    assert (a.centroids == b.centroids).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"paths": []}, "data.paths"),
        ({"bands": [0, 1]}, "data.bands"),
        ({"patch_size": 0}, "data.patch_size"),
        ({"length": 0}, "data.length"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"max_nodata_fraction": 2.0}, "data.max_nodata_fraction"),
        ({"scale": 0.0}, "data.scale"),
        ({"shared_canvas": False}, "data.shared_canvas"),
        ({"band_names": ["B02", "B02"]}, "data.band_names"),
        ({"band_names": ["B02"], "bands": [1]}, "data.band_names"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    options = {"paths": "somewhere", **kwargs}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _module(**options)


def test_too_many_geo_clusters_name_the_key(stack: RasterSampleSummary) -> None:
    dm = _module(str(stack.root), num_geo_clusters=500, geo_cluster_points=50)
    with pytest.raises(ValueError, match=r"data\.num_geo_clusters"):
        dm.setup()


def test_real_landsat_batch() -> None:
    dm = _module(str(real_stack("landsat_pucallpa")), patch_size=64, num_geo_clusters=8)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 2, 4, 64, 64)
    assert (batch["lat"] < -8).all()  # Pucallpa, Peru
    assert (batch["geo_label"] < 8).all()


# -------------------------------------------------------------------------------------------------
# band statistics
# -------------------------------------------------------------------------------------------------


def _naive_statistics(
    dm: RasterTimeSeriesDataModule, num_samples: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The same seeded patches read with rasterio, masked and pooled with numpy."""
    assert dm.rasters is not None
    assert dm.train_sampler is not None
    rasters = dm.rasters
    boxes, dates = dm.train_sampler.draw(num_samples, torch.Generator().manual_seed(dm.seed))
    paths = [str(p) for p in rasters.index["filepath"]]
    pixels, dropped = [], 0
    for box, date in zip(boxes, dates[:, 0], strict=True):
        (path,) = [p for p, d in zip(paths, rasters.file_dates, strict=True) if d == date]
        with rasterio.open(path) as src:
            raw = src.read(window=from_bounds(*box, transform=src.transform))  # [C, h, w]
        keep = ~np.all(raw == 0, axis=0)  # nodata 0 in every band
        dropped += int((~keep).sum())
        pixels.append(raw[:, keep].astype(np.float64) / 255.0)
    pooled = np.concatenate(pixels, axis=1)
    return pooled.mean(axis=1), pooled.std(axis=1), dropped


def test_band_statistics_match_numpy_and_leave_nodata_out(tmp_path: Path) -> None:
    # One file per date (the naive reader reads one file), with nodata wedges and a cloudy date.
    single = generate_raster_timeseries_sample(tmp_path / "stack", num_dates=4)
    dm = _module(str(single.root), cache_dir=str(tmp_path / "cache"), max_nodata_fraction=0.5)
    mean, std = dm.band_statistics(num_samples=64)
    want_mean, want_std, dropped = _naive_statistics(dm, 64)
    assert dropped > 0  # the sample has nodata wedges: they must not count
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(std, want_std, rtol=1e-6)
    assert len(list((tmp_path / "cache").glob("band-stats-rasters-*.json"))) == 1


def test_band_statistics_are_cached_across_restarts(
    stack: RasterSampleSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(tmp_path / "cache")
    first = _module(str(stack.root), cache_dir=cache).band_statistics(num_samples=16)
    restarted = _module(str(stack.root), cache_dir=cache)
    restarted.setup("fit")

    def no_reads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached statistics were read again from the rasters")

    monkeypatch.setattr(TimeSeriesRasters, "__getitem__", no_reads)
    assert restarted.band_statistics(num_samples=16) == first
    with pytest.raises(AssertionError, match="read again"):  # another sample size: recomputed
        restarted.band_statistics(num_samples=17)
    # Default cache folder: .geossl in the first path.
    assert not (stack.root / ".geossl").exists()


def test_single_date_pairs_error_names_the_data_key(tmp_path: Path) -> None:
    write_tif(tmp_path / "west_20200101.tif", scene(0, (4, 64, 32)))
    write_tif(tmp_path / "east_20200601.tif", scene(1, (4, 64, 32)), origin=(485964.0, 5209248.0))
    with pytest.raises(ValueError, match=r"no valid pair: .*data\.single_date_pairs=true"):
        _module(str(tmp_path), patch_size=8).setup()
    dm = _module(str(tmp_path), patch_size=8, single_date_pairs=True, num_geo_clusters=2)
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(batch["index"][:, 0], batch["index"][:, 1])
    assert torch.equal(batch["image"][:, 0], batch["image"][:, 1])


def test_real_bigearthnet_pretrains_through_the_cli(tmp_path: Path) -> None:
    # 6 BigEarthNet patches: 12 one-band files each at 10/20/60 m, each patch another place at
    # one date, so no temporal pair exists: single_date_pairs makes that explicit. The statistics
    # of the 12 bands are estimated (model.mean / model.std not given).
    root = real_bigearthnet()
    args = [
        "--config",
        str(RASTERS_TINY),
        "--data.paths",
        str(root),
        "--data.band_names",
        "[" + ", ".join(S2_BANDS) + "]",
        "--data.scale",
        "1e-4",
        "--data.nodata",
        "0",
        "--data.patch_size",
        "64",
        "--data.batch_size",
        "2",
        "--data.num_geo_clusters",
        "2",
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--model.mean",
        "null",
        "--model.std",
        "null",
        "--model.normalization_samples",
        "12",
        "--trainer.max_steps",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
    ]
    with pytest.raises(ValueError, match=r"no valid pair: .*data\.single_date_pairs=true"):
        run_pretrain(args)
    cli = run_pretrain([*args, "--data.single_date_pairs", "true"])
    assert cli.trainer.global_step == 1
    assert cli.model.hparams["in_chans"] == 12
    mean, std = cli.model.hparams["mean"], cli.model.hparams["std"]
    assert len(mean) == len(std) == 12
    assert all(0.0 < m < 1.0 for m in mean)  # reflectance x 1e-4
    assert (mean, std) == cli.datamodule.band_statistics(12)  # the cached estimate


def test_corrupt_files_are_skipped_counted_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(generate_raster_timeseries_sample(tmp_path / "s", num_dates=5).files)
    cut = cut_tiles(Path(files[1]))  # found when indexing: its last tiles lie past its end
    unreadable = garble_tiles(Path(files[3]), band=1, interleave="pixel")  # found by validity
    late = garble_tiles(Path(files[4]), band=4)  # band 4 only: found when a patch is read
    dm = _module(str(tmp_path / "s"), length=8, geo_cluster_points=50)
    with pytest.warns(RuntimeWarning, match=rf"{unreadable.name}: unreadable tiles"):
        dm.setup("fit")
    assert dm.rasters is not None
    assert dm.rasters.skipped.bad_by_reason == {"truncated file": 1, "unreadable tiles": 1}
    table = re.sub(r"[\s│┃]", "", capsys.readouterr().err)
    assert "2of5filesskipped" in table
    assert str(cut).replace(" ", "") in table
    assert str(unreadable).replace(" ", "") in table
    with pytest.warns(RuntimeWarning, match=rf"{late.name}: unreadable tiles"):
        mean, std = dm.band_statistics(num_samples=64)  # the failed patches are left out
    assert len(mean) == len(std) == 4
    batches = list(dm.train_dataloader())  # the bad file is excluded: no traceback, no warning
    assert len(batches) == 2
    dm.teardown("fit")
    assert f"naming its file): unreadable tiles: 1 (e.g. {late})" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError) as error:
        _module(str(tmp_path / "s"), max_bad_fraction=0.3).setup("fit")
    assert "2 of 5 raster files are bad (40% > max_bad_fraction=0.3)" in one_line(error)


def _rgba_stack(folder: Path, dates: int = 3) -> list[Path]:
    """uint8 RGBA GeoTIFFs (band 4 tagged alpha: 0 on the left quarter, else 255), no nodata."""
    paths = []
    for day in range(dates):
        pixels = scene(day, shape=(4, 64, 96))
        pixels[3] = 255
        pixels[3, :, :24] = 0
        path = write_tif(folder / f"scene_2020010{day + 1}.tif", pixels, nodata=None)
        with rasterio.open(path, "r+") as dst:
            dst.colorinterp = [
                rasterio.enums.ColorInterp.red,
                rasterio.enums.ColorInterp.green,
                rasterio.enums.ColorInterp.blue,
                rasterio.enums.ColorInterp.alpha,
            ]
        paths.append(path)
    return paths


def test_an_alpha_band_is_a_mask_to_pretrain_as_to_embed(tmp_path: Path) -> None:
    # A 4-band uint8 GeoTIFF tagged RGBA was 4 bands to pretrain and RGB + alpha to embed.
    from geossl.embed.sources import RasterSource, find_sources

    paths = _rgba_stack(tmp_path / "rgba")
    dm = _module(str(tmp_path / "rgba"), num_geo_clusters=2, geo_cluster_points=50, length=4)
    assert dm.in_chans == 3
    (source,) = find_sources([paths[0]], in_chans=3, chip_size=32, stride=32)
    assert isinstance(source, RasterSource)
    assert dm.rasters is not None
    assert tuple(dm.rasters.band_indexes or ()) == source.bands == (1, 2, 3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[2] == 3
    # The alpha band masks: no patch is drawn over the transparent quarter (10% nodata allowed).
    left = dm.rasters.extent[0] + (24 - 4) * dm.rasters.res[0]
    assert (batch["bounds"][:, 0] >= left).all()
    # Named bands are the user's choice: the alpha band is then read as data.
    assert _module(str(tmp_path / "rgba"), bands=[1, 2, 3, 4]).in_chans == 4
