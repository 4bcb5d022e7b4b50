"""The procedural fMoW scenes: every category has a style, rendering is seeded, the MS bands."""

import numpy as np

from geossl.datasets.fmow.constants import FMOW_CATEGORIES
from geossl.synthetic.fmow_scene import (
    _GENERATORS,
    _REGIONS,
    _category_style,
    _downsample,
    _ms_bands,
    _render,
    _Scene,
)


def _scene(category: str) -> _Scene:
    return _Scene(
        style=_category_style(category),
        region=_REGIONS[0],
        angle=0.3,
        obj_w_m=20.0,
        obj_h_m=12.0,
        tex_freq=np.full((3, 2), 0.05, dtype=np.float32),
        tex_phase=np.zeros(3, dtype=np.float32),
        change_ts=None,
    )


def _draw(scene: _Scene, seed: int, built: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-6, 7, size=(96, 96, 3), dtype=np.int8)
    return _render(
        32,
        40,
        (8, 8, 20, 14),
        1.0,
        scene,
        shift=(0.5, -0.5),
        brightness=1.0,
        greenness=0.7,
        gain=np.ones(3, dtype=np.float32),
        cloud_cover=0,
        built=built,
        rng=rng,
        noise_tile=noise,
    )


def test_every_category_has_a_style_with_a_painter() -> None:
    for category in FMOW_CATEGORIES:
        style = _category_style(category)
        assert style.family in _GENERATORS
        again = _category_style(category)  # independent of any seed
        assert np.array_equal(style.primary, again.primary)
        assert (style.count, style.duty) == (again.count, again.duty)
        assert style.count >= 2


def test_render_is_seeded_and_draws_the_structure() -> None:
    scene = _scene("storage_tank")
    image = _draw(scene, 3)
    assert image.shape == (32, 40, 3)
    assert image.dtype == np.uint8
    assert np.array_equal(image, _draw(scene, 3))
    assert not np.array_equal(image, _draw(scene, 3, built=False))  # construction changes it


def test_multispectral_product_is_coarser_and_11_bit() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    small = _downsample(rgb, 10, 8)
    assert small.shape == (8, 10, 3)
    bands = _ms_bands(small)
    assert bands.shape == (8, 8, 10)
    assert bands.dtype == np.uint16
    assert int(bands.max()) <= 2047
