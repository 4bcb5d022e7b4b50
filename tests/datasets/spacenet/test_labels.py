"""read_building_labels: GeoJSON building polygons, their CRS and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geossl.datasets.errors import InvalidSampleError
from geossl.datasets.spacenet import (
    SpaceNetTiles,
    read_building_labels,
)
from geossl.synthetic.spacenet import SpaceNetSampleSummary


def test_error_label_not_geojson(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    bad = tmp_path / "labels.geojson"
    bad.write_text("id,geometry\n1,POLYGON((0 0,1 0,1 1,0 0))\n")
    with pytest.raises(InvalidSampleError, match=r"labels\.geojson: not GeoJSON \(not JSON"):
        SpaceNetTiles(pairs=[(sn1.tiles[0].images["3band"], bad)])
    bad.write_text(json.dumps({"type": "Topology", "objects": {}}))
    with pytest.raises(InvalidSampleError, match=r"labels\.geojson: not GeoJSON \(type 'Topology'"):
        read_building_labels(bad)
    unknown_crs = {"type": "name", "properties": {"name": "EPSG:999999"}}
    bad.write_text(json.dumps({"type": "FeatureCollection", "crs": unknown_crs, "features": []}))
    with pytest.raises(InvalidSampleError, match="unreadable GeoJSON crs member"):
        read_building_labels(bad)


def test_non_polygon_features_are_skipped_and_counted(tmp_path: Path) -> None:
    label = tmp_path / "mixed.geojson"
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    features = [
        {"type": "Feature", "properties": {}, "geometry": polygon},
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}},
    ]
    label.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    labels = read_building_labels(label)
    assert len(labels.polygons) == 1
    assert labels.skipped == 2
    assert labels.crs.to_string() == "OGC:CRS84"  # RFC 7946 default
