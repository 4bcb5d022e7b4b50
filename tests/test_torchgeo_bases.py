"""Where geossl derives from a torchgeo base and where not: the facts docs/design.md states.

Section "torchgeo bases: where geossl uses them and where not, and why". Each test pins one claim
of that section, so that a change of either side (geossl or torchgeo) shows up here first.
"""

import tempfile
from pathlib import Path

import pytest
from lightning.pytorch import LightningDataModule
from torchgeo.datamodules import BaseDataModule, NonGeoDataModule
from torchgeo.datasets import GeoDataset, NonGeoDataset
from torchgeo.main import main as torchgeo_main
from torchgeo.samplers import GeoSampler
from torchgeo.trainers import BaseTask

from geossl import datamodules
from geossl.datasets.fmow import FMoW, FMoWLocations, FMoWTemporalPairs
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.datasets.scenes import LabelledScenes
from geossl.datasets.spacenet import SpaceNetChips, SpaceNetTiles
from geossl.datasets.xview import XView
from geossl.samplers import TemporalGeoGridSampler, TemporalGeoPairSampler
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from geossl.synthetic.spacenet import generate_spacenet_sample
from geossl.trainers.classification import FMoWClassificationTask
from geossl.trainers.detection import XViewDetectionTask
from geossl.trainers.pretrain import GeoSSLTask
from geossl.trainers.segmentation import SpaceNetSegmentationTask

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"


def test_design_has_the_section() -> None:
    text = DESIGN.read_text()
    assert "## torchgeo bases: where geossl uses them and where not, and why" in text


def test_datasets_on_nongeo_dataset_except_the_pair_dataset() -> None:
    for cls in (FMoW, FMoWLocations, XView, SpaceNetTiles, SpaceNetChips, LabelledScenes):
        assert issubclass(cls, NonGeoDataset), cls
        assert callable(cls.plot)
    assert issubclass(TimeSeriesRasters, GeoDataset)
    # Indexed by a pair of rows / a pair of queries, not by one integer / one query.
    for pair_cls in (FMoWTemporalPairs, RasterTemporalPairs):
        assert not issubclass(pair_cls, NonGeoDataset | GeoDataset), pair_cls
        assert callable(pair_cls.plot)


def test_a_pair_of_queries_is_not_a_geosampler_item() -> None:
    sample = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=3)
    series = TimeSeriesRasters(sample.root, cache=False)
    sampler = TemporalGeoPairSampler(series, patch_size=32, length=2, seed=0)
    pair = next(iter(sampler))
    # A GeoSampler's consumer indexes the GeoDataset with each item: a pair is not a GeoSlice.
    with pytest.raises(AttributeError, match="'tuple' object has no attribute 'start'"):
        series[pair]  # type: ignore[index]  # mypy already says: a pair is no GeoSlice
    assert RasterTemporalPairs(series)[pair]["image"].shape[0] == 2  # the pair dataset reads it
    for cls in (TemporalGeoPairSampler, TemporalGeoGridSampler):
        assert not issubclass(cls, GeoSampler)


def test_tasks_and_data_modules() -> None:
    assert issubclass(SpaceNetSegmentationTask, BaseTask)
    assert issubclass(XViewDetectionTask, BaseTask)
    assert not issubclass(GeoSSLTask, BaseTask)
    assert not issubclass(FMoWClassificationTask, BaseTask)
    modules = [getattr(datamodules, name) for name in datamodules.__all__]
    modules = [m for m in modules if isinstance(m, type) and issubclass(m, LightningDataModule)]
    assert len(modules) >= 5
    on_torchgeo = {m.__name__ for m in modules if issubclass(m, BaseDataModule)}
    assert on_torchgeo == {"SpaceNetDataModule", "XViewDataModule"}
    assert all(issubclass(m, NonGeoDataModule) for m in modules if m.__name__ in on_torchgeo)


def _torchgeo_fit(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        torchgeo_main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code != 0
    return capsys.readouterr().err


def test_torchgeo_cli_runs_the_spacenet_finetuning_config(tmp_path: Path) -> None:
    # torchgeo's own entry point on geossl's config: the task is a BaseTask, the data module a
    # BaseDataModule; one training and one validation step on a generated SpaceNet-1 sample.
    sample = generate_spacenet_sample(tmp_path / "spacenet", tiles=6, seed=0)
    runs = tmp_path / "runs"
    torchgeo_main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "finetune" / "spacenet-seg.yaml"),
            f"--data.root={sample.root}",
            "--data.patch_size=32",
            "--data.batch_size=2",
            "--data.num_workers=0",
            "--model.backbone=resnet18",
            "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu",
            f"--trainer.logger.init_args.save_dir={runs}",
            f"--trainer.default_root_dir={runs}",
        ]
    )
    assert (runs / "checkpoints" / "last.ckpt").is_file()


def test_torchgeo_cli_refuses_a_pretraining_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tiny pretraining config: GeoSSLTask is no BaseTask.
    config = tmp_path / "pretrain.yaml"
    config.write_text(
        "trainer:\n  fast_dev_run: true\n"
        "model:\n  class_path: geossl.trainers.pretrain.GeoSSLTask\n"
        "  init_args:\n    backbone: resnet18\n"
        "data:\n  class_path: geossl.datamodules.ScenesDataModule\n"
        f"  init_args:\n    root: {tmp_path}\n"
    )
    error = _torchgeo_fit(config, capsys)
    assert "geossl.trainers.pretrain.GeoSSLTask does not correspond to a subclass of BaseTask" in (
        error
    )
