"""Streaming PCA against a batch reference, the stretch, the scatter map and the preview files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from geossl.embed.preview import (
    PNG_MIN_SIDE,
    PCAAccumulator,
    scatter_canvas,
    stretch_to_uint8,
    write_preview,
)


def _reference_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Components and variances by SVD of the centred data (the textbook PCA)."""
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:k], singular[:k] ** 2 / (len(x) - 1)


def test_streaming_pca_matches_the_batch_svd() -> None:
    rng = np.random.default_rng(0)
    # Anisotropic data far from the origin (the shifted sums must keep the precision).
    x = rng.normal(size=(500, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1]) + 1000.0
    accumulator = PCAAccumulator()
    for chunk in np.array_split(x, 7):
        accumulator.update(chunk.astype(np.float32))
    accumulator.update(np.full((3, 6), np.nan))  # NaN rows (skipped chips) are ignored
    pca = accumulator.fit(3)
    assert pca is not None
    components, variance = _reference_pca(x.astype(np.float32).astype(np.float64), 3)
    for got, want in zip(pca.components, components, strict=True):
        assert abs(float(got @ want)) == pytest.approx(1.0, abs=1e-6)  # same axis, up to sign
        assert got[np.argmax(np.abs(got))] > 0  # deterministic sign
    np.testing.assert_allclose(pca.explained_variance, variance, rtol=1e-5)
    np.testing.assert_allclose(pca.mean, x.mean(axis=0), rtol=1e-6)
    assert pca.num_samples == 500
    scores = pca.transform(x)
    assert scores.shape == (500, 3)
    np.testing.assert_allclose(scores.mean(axis=0), 0.0, atol=1e-3)
    assert pca.explained_variance_ratio.sum() < 1.0


def test_pca_edge_cases() -> None:
    accumulator = PCAAccumulator()
    assert accumulator.fit(3) is None
    accumulator.update(np.ones((1, 2)))
    assert accumulator.fit(3) is None  # one sample: no variance
    accumulator.update(np.array([[2.0, 0.0]]))
    pca = accumulator.fit(3)  # more components than dimensions: zero axes at the end
    assert pca is not None
    assert pca.components.shape == (3, 2)
    assert not pca.components[2].any()


def test_stretch_to_uint8() -> None:
    values = np.array([[0.0, 10.0], [5.0, 20.0], [10.0, 30.0], [np.nan, 40.0]])
    out = stretch_to_uint8(values, np.array([0.0, 20.0]), np.array([10.0, 30.0]))
    assert out.dtype == np.uint8
    assert out[:, 0].tolist() == [0, 128, 255, 0]
    assert out[:, 1].tolist() == [0, 0, 255, 255]


def test_scatter_canvas_places_points() -> None:
    lon = np.array([10.0, 20.0, 15.0, np.nan])
    lat = np.array([40.0, 50.0, 45.0, 0.0])
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    rgb, valid, transform = scatter_canvas(lon, lat, colours, size=200, dot=1)
    assert max(rgb.shape[1:]) == 200
    for i in range(3):
        col, row = (~transform) @ (lon[i], lat[i])
        assert valid[int(row), int(col)]
        assert rgb[:, int(row), int(col)].tolist() == colours[i].tolist()
    assert valid.sum() == 3
    empty_rgb, empty_valid, _ = scatter_canvas(np.array([np.nan]), np.array([0.0]), colours[:1])
    assert not empty_valid.any()
    assert empty_rgb.shape == (3, 1, 1)


def test_write_preview(tmp_path: Path) -> None:
    rgb = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    valid = np.ones((4, 5), bool)
    valid[0, 0] = False
    transform = Affine(100.0, 0.0, 5000.0, 0.0, -100.0, 9000.0)
    png, tif = tmp_path / "p.tmp", tmp_path / "t.tmp"  # formats are explicit, not from the names
    write_preview(
        rgb, valid, png=png, geotiff=tif, crs="EPSG:32618", transform=transform, tags={"k": "v"}
    )
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.mode == "RGBA"
        factor = -(-PNG_MIN_SIDE // 5)
        assert image.size == (5 * factor, 4 * factor)
        pixels = np.asarray(image)
    assert pixels[0, 0, 3] == 0  # transparent where invalid
    assert pixels[-1, -1, :3].tolist() == rgb[:, 3, 4].tolist()
    with rasterio.open(tif) as src:
        assert src.driver == "GTiff"
        assert src.crs.to_epsg() == 32618
        assert src.transform == transform
        np.testing.assert_array_equal(src.read(), rgb)
        assert src.dataset_mask()[0, 0] == 0
        assert src.dataset_mask()[1, 1] == 255
        assert src.tags()["k"] == "v"
