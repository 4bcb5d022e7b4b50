"""SpaceNetTiles and SpaceNetChips as torchgeo NonGeoDatasets, with the mask overlaid in plot."""

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from torchgeo.datasets import NonGeoDataset, SpaceNet1

from geossl.datasets.spacenet import SpaceNetChips, SpaceNetTiles
from geossl.synthetic.spacenet import SpaceNetSampleSummary

matplotlib.use("Agg")


def _overlay(figure: Figure, axis: int = 0) -> np.ndarray:
    """The RGBA mask layer drawn over the image of ``axis``."""
    images = figure.axes[axis].get_images()
    assert len(images) == 2  # the image, then the mask
    return np.asarray(images[1].get_array())


def test_tiles_plot_overlays_the_mask(sn1: SpaceNetSampleSummary) -> None:
    tiles = SpaceNetTiles(sn1.dataset_dir / "train", image_glob="3band/*.tif")
    assert isinstance(tiles, NonGeoDataset)
    sample = tiles[0]
    figure = tiles.plot(sample, suptitle="SpaceNet")
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    overlay = _overlay(figure)
    assert ((overlay[..., 3] > 0) == (sample["mask"].numpy() == 1)).all()
    assert sample["tile_id"] in figure.axes[0].get_title()
    assert len(tiles.plot({**sample, "prediction": sample["mask"]}).axes) == 2


def test_chips_plot_skips_padding(sn1: SpaceNetSampleSummary) -> None:
    chips = SpaceNetChips(SpaceNet1(sn1.root), pad_multiple=32)
    assert isinstance(chips, NonGeoDataset)
    sample = chips[0]
    figure = chips.plot(sample, show_titles=False)
    assert len(figure.axes) == 1
    assert figure.axes[0].get_title() == ""
    overlay = _overlay(figure)
    assert ((overlay[..., 3] > 0) == (sample["mask"].numpy() == 1)).all()
    assert (sample["mask"] == chips.ignore_index).any()  # padded pixels exist, not drawn
