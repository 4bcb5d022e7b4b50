"""geossl's datasets as torchgeo citizens: ``NonGeoDataset`` bases and torchgeo-style ``plot``."""

from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.fmow import (
    FMOW_CATEGORIES,
    FMoW,
    FMoWLocations,
    FMoWTemporalPairs,
    build_fmow_index,
)
from geossl.datasets.plotting import format_time, image_figure, mask_figure, rgb_image
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.datasets.xview import XVIEW_CLASS_NAMES, XView, XViewChipParams
from geossl.samplers import TemporalGeoPairSampler
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from tests.xview_helpers import shared_xview_sample

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fmow_rows(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    cache = tmp_path_factory.mktemp("fmow-index")
    index = build_fmow_index(
        fmow_sample,
        splits=["train"],
        num_geo_clusters=2,
        cache_dir=cache,
        workers=1,
        progress=False,
    )
    return index.table


def test_rgb_image_scales_each_dtype_to_unit_range() -> None:
    as_uint8 = rgb_image(torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(3, 1, 1))
    assert as_uint8.shape == (1, 1, 3)
    assert as_uint8.ravel().tolist() == pytest.approx([0.0, 0.2, 1.0])
    unit = torch.full((3, 2, 2), 0.5)
    assert (rgb_image(unit) == 0.5).all()  # already in [0, 1]: kept
    raw = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2) * 100.0  # raw numbers: stretched
    stretched = rgb_image(raw)
    assert stretched.min() == 0.0
    assert stretched.max() == 1.0
    grey = rgb_image(torch.rand(1, 4, 5))
    assert grey.shape == (4, 5, 3)
    assert (grey[..., 0] == grey[..., 2]).all()
    picked = rgb_image(torch.arange(8.0).reshape(8, 1, 1) / 10, channels=(4, 2, 1))
    assert picked.ravel().tolist() == pytest.approx([0.4, 0.2, 0.1])


def test_figure_helpers() -> None:
    rgb = rgb_image(torch.rand(3, 4, 4))
    figure = image_figure([rgb, rgb, rgb], ["a", "b", "c"], show_titles=True, suptitle="s")
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 3
    assert [ax.get_title() for ax in figure.axes] == ["a", "b", "c"]
    assert figure.get_suptitle() == "s"
    untitled = image_figure([rgb], ["a"], show_titles=False)
    assert untitled.axes[0].get_title() == ""
    sample = {"image": torch.rand(3, 4, 4), "mask": torch.eye(4, dtype=torch.int64)}
    assert len(mask_figure(sample, "m").axes) == 1
    assert len(mask_figure({**sample, "prediction": sample["mask"]}, "m").axes) == 2
    assert format_time(0) == "1970-01-01"


def test_fmow_is_a_nongeo_dataset_with_plot(fmow_sample: Path, fmow_rows: pd.DataFrame) -> None:
    dataset = FMoW(fmow_sample, fmow_rows, image_size=32)
    assert isinstance(dataset, NonGeoDataset)
    assert str(dataset).splitlines()[:2] == ["FMoW Dataset", "    type: NonGeoDataset"]
    sample = dataset[0]
    figure = dataset.plot(sample, suptitle="fMoW")
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    title = figure.axes[0].get_title()
    assert title.startswith(FMOW_CATEGORIES[int(sample["label"])])
    assert format_time(sample["time"]) in title
    assert figure.get_suptitle() == "fMoW"
    predicted = dataset.plot({**sample, "prediction": torch.tensor(0)})
    assert f"prediction: {FMOW_CATEGORIES[0]}" in predicted.axes[0].get_title()
    assert dataset.plot(sample, show_titles=False).axes[0].get_title() == ""


def test_fmow_ms_plot_shows_the_red_green_blue_bands(
    fmow_sample: Path, fmow_rows: pd.DataFrame
) -> None:
    dataset = FMoW(fmow_sample, fmow_rows, image_size=32)
    assert dataset._rgb_channels(3) == (0, 1, 2)
    assert dataset._rgb_channels(8) == (4, 2, 1)  # all 8 ms bands: red, green, blue
    dataset.bands = [2, 3, 5, 7]
    assert dataset._rgb_channels(4) == (2, 1, 0)


def test_fmow_locations_plot_one_axis_per_acquisition(
    fmow_sample: Path, fmow_rows: pd.DataFrame
) -> None:
    dataset = FMoWLocations(fmow_sample, fmow_rows, image_size=32, max_views=4)
    assert isinstance(dataset, NonGeoDataset)
    sample = dataset[0]
    figure = dataset.plot(sample)
    assert len(figure.axes) == int(sample["views"].sum())
    dates = [
        format_time(t) for t, seen in zip(sample["time"], sample["views"], strict=True) if seen
    ]
    assert [ax.get_title().splitlines()[-1] for ax in figure.axes] == dates


def test_fmow_pairs_plot_both_views_with_their_dates(
    fmow_sample: Path, fmow_rows: pd.DataFrame
) -> None:
    pairs = FMoWTemporalPairs(fmow_sample, fmow_rows, image_size=32)
    # Indexed by (i, j), not by one integer: not NonGeoDataset's contract (docs/design.md).
    assert not isinstance(pairs, NonGeoDataset)
    sample = pairs[(0, 1)]
    figure = pairs.plot(sample)
    assert len(figure.axes) == 2
    titles = [ax.get_title() for ax in figure.axes]
    assert [t.splitlines()[-1] for t in titles] == [format_time(t) for t in sample["time"]]
    with pytest.raises(ValueError, match="decoded"):
        pairs.plot({k: v for k, v in sample.items() if k != "image"})


def test_xview_is_a_nongeo_dataset_with_boxes_drawn(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = shared_xview_sample(tmp_path_factory).root
    dataset = XView(root, "all", XViewChipParams(chip_size=128, crops_per_image=2))
    assert isinstance(dataset, NonGeoDataset)
    sample = next(dataset[i] for i in range(len(dataset)) if len(dataset[i]["bbox_xyxy"]))
    figure = dataset.plot(sample)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    assert len(ax.patches) == len(sample["bbox_xyxy"])
    assert ax.texts[0].get_text() == XVIEW_CLASS_NAMES[int(sample["label"][0])]
    x0, y0, x1, y1 = sample["bbox_xyxy"][0].tolist()
    box = ax.patches[0]
    assert isinstance(box, Rectangle)
    assert box.get_bbox().bounds == pytest.approx((x0, y0, x1 - x0, y1 - y0))
    with_predictions = dataset.plot(
        {**sample, "prediction_bbox_xyxy": sample["bbox_xyxy"][:1]}, show_titles=False
    )
    assert len(with_predictions.axes) == 2
    assert len(with_predictions.axes[1].patches) == 1
    assert not with_predictions.axes[0].texts


def test_raster_pairs_plot_both_views_with_their_dates(tmp_path: Path) -> None:
    root = generate_raster_timeseries_sample(tmp_path, num_dates=3).root
    series = TimeSeriesRasters(root, cache=False)
    pairs = RasterTemporalPairs(series)
    sampler = TemporalGeoPairSampler(series, patch_size=32, length=1, seed=0)
    sample = pairs[next(iter(sampler))]
    figure = pairs.plot(sample, suptitle="rasters")
    assert len(figure.axes) == 2
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"view {v}: {format_time(sample['time'][v])}" for v in range(2)]
    assert figure.get_suptitle() == "rasters"
