"""The preview figures: the source beside its PCA colours, the fMoW map, the caption."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geossl.embed.preview_figure import map_figure, pca_caption
from tests.plot_helpers import assert_readable_png


def test_caption_names_the_components_and_their_variance() -> None:
    caption = pca_caption([0.612, 0.2, 0.05, 0.01])
    assert caption.startswith("R / G / B = principal components 1 / 2 / 3")
    assert "61.2 %, 20.0 %, 5.0 % of the variance" in caption


@pytest.mark.parametrize("n", [3, 2000])
def test_map_points_are_visible_at_any_count(tmp_path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-10, 10, n), rng.uniform(40, 50, n)
    colours = np.full((n, 3), (230, 20, 20), np.uint8)  # red on a white background
    path = tmp_path / "map.png"
    map_figure(lon, lat, colours, [0.5, 0.3, 0.1], path, title="points")
    assert_readable_png(path)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 180) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)
    assert red.sum() > 50 * min(n, 20)  # dots of several pixels each, not single pixels
