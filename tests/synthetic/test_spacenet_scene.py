"""The SpaceNet drawing: buildings apart and inside the chip, products of each collection."""

import numpy as np
from rasterio.transform import Affine

from geossl.synthetic.spacenet_scene import (
    _pixel_to_world,
    _place_buildings,
    _products,
    _render,
)


def test_buildings_are_apart_inside_the_chip_and_off_the_roads() -> None:
    rng = np.random.default_rng(0)
    buildings, partial, roads = _place_buildings(rng, 12, 120, 160, 0.5)
    assert 0 < len(buildings) <= 12
    assert len(partial) == len(buildings)
    for i, a in enumerate(buildings):
        minx, miny, maxx, maxy = a.bounds
        assert (minx, miny) >= (0, 0)
        assert maxx <= 160
        assert maxy <= 120
        assert not any(a.intersects(road) for road in roads)
        assert not any(a.intersects(b) for b in buildings[i + 1 :])


def test_products_have_the_collections_shapes_and_dtypes() -> None:
    rng = np.random.default_rng(1)
    transform = Affine(1e-5, 0.0, 10.0, 0.0, -1e-5, 50.0)
    buildings, _, roads = _place_buildings(rng, 6, 118, 157, 0.5)
    world = [_pixel_to_world(b, transform) for b in buildings]
    scene = _render(rng, (120, 160), transform, world, roads, 0.5)
    assert int((scene.roofs > 0).sum()) > 0
    sn1 = _products(rng, "spacenet1", scene, (118, 157))
    assert sn1["3band"].shape == (3, 118, 157)
    assert sn1["3band"].dtype == np.uint8
    assert sn1["8band"].shape == (8, 30, 40)  # the whole canvas, 4x coarser
    sn2 = _products(rng, "spacenet2", scene, (120, 160))
    assert {k: v.shape[0] for k, v in sn2.items()} == {
        "RGB-PanSharpen": 3,
        "MUL": 8,
        "MUL-PanSharpen": 8,
        "PAN": 1,
    }
    assert all(v.dtype == np.uint16 and int(v.max()) <= 2047 for v in sn2.values())
