"""fMoW images as embedding inputs: the context crop, footprint, time and skip reasons."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import shapely

from geossl.embed.fmow_items import read_fmow_item
from geossl.embed.sources import FMoWSource, RasterSource, find_sources
from geossl.synthetic.fmow import generate_fmow_sample


def _find(inputs: list[Path]) -> list[RasterSource | FMoWSource]:
    return find_sources(inputs, in_chans=3, chip_size=8, stride=8)


@pytest.fixture(scope="module")
def fmow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmow") / "fmow-rgb"
    generate_fmow_sample(root, locations=6, seed=0, image_size=(32, 48), images_per_location=(1, 2))
    return root


def test_read_fmow_item(fmow_root: Path) -> None:
    (source,) = _find([fmow_root])
    assert isinstance(source, FMoWSource)
    image = source.images[0]
    item = read_fmow_item(image, 16, None, 1 / 255)
    assert not isinstance(item, str)
    meta = json.loads(image.with_suffix(".json").read_text())
    assert item.pixels.shape == (3, 16, 16)
    assert item.pixels.min() >= 0.0
    assert item.pixels.max() <= 1.0
    assert item.footprint.equals(shapely.from_wkt(meta["raw_location"]))
    assert item.datetime == datetime.fromisoformat(meta["timestamp"].replace("Z", "+00:00"))
    assert item.crs is None  # a JPEG


def test_read_fmow_item_reasons(fmow_root: Path, tmp_path: Path) -> None:
    (source,) = _find([fmow_root])
    assert isinstance(source, FMoWSource)
    image = tmp_path / "x_0_rgb.jpg"
    image.write_bytes(source.images[0].read_bytes())
    meta = json.loads(source.images[0].with_suffix(".json").read_text())
    json_path = image.with_suffix(".json")
    json_path.write_text("{not json")
    assert read_fmow_item(image, 16, None, 1 / 255) == "invalid json"
    json_path.write_text(json.dumps({**meta, "raw_location": "POLYGON EMPTY"}))
    assert read_fmow_item(image, 16, None, 1 / 255) == "no footprint"
    # A footprint across the antimeridian becomes a MultiPolygon within [-180, 180].
    wkt = "POLYGON ((179.99 -17, 180.01 -17, 180.01 -17.01, 179.99 -17.01, 179.99 -17))"
    json_path.write_text(json.dumps({**meta, "raw_location": wkt}))
    item = read_fmow_item(image, 16, None, 1 / 255)
    assert not isinstance(item, str)
    assert isinstance(item.footprint, shapely.MultiPolygon)
    assert item.footprint.area == pytest.approx(0.02 * 0.01)
    image.write_bytes(b"\xff\xd8 truncated")
    json_path.write_text(json.dumps(meta))
    assert read_fmow_item(image, 16, None, 1 / 255) == "unreadable image"
