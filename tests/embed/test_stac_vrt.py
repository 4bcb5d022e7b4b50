"""The VRT that stacks a STAC item's assets: grid, resampling, nodata, alpha and mask, metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags

from geossl.embed.stac_vrt import read_layer, stac_tags, stack_vrt
from tests.embed.embed_helpers import write_raster

ORIGIN = (600_000.0, 5_400_000.0)


def _grid(size: float) -> Affine:
    return Affine(size, 0.0, ORIGIN[0], 0.0, -size, ORIGIN[1])


def _open_stack(tmp_path: Path, paths: dict[str, Path]) -> rasterio.DatasetReader:
    layers = [read_layer(name, str(path)) for name, path in paths.items()]
    xml = stack_vrt(
        layers, tags={"ACQUISITIONDATETIME": "2024-06-01T10:00:00+00:00"}, stac={"ITEM_ID": "x"}
    )
    vrt = tmp_path / "stack.vrt"
    vrt.write_text(xml)
    return rasterio.open(vrt)


def test_coarser_assets_are_resampled_onto_the_finest_grid(tmp_path: Path) -> None:
    fine = np.arange(8 * 8, dtype=np.uint16).reshape(1, 8, 8)
    coarse = np.arange(4 * 4, dtype=np.uint16).reshape(1, 4, 4) + 1000
    coarse_path = write_raster(tmp_path / "b11.tif", coarse, transform=_grid(20.0))
    fine_path = write_raster(tmp_path / "b04.tif", fine, transform=_grid(10.0))
    # The coarse asset first: the stack still takes the finest grid, and keeps the order given.
    with _open_stack(tmp_path, {"b11": coarse_path, "b04": fine_path}) as stack:
        assert (stack.width, stack.height, stack.count) == (8, 8, 2)
        assert stack.transform == _grid(10.0)
        assert stack.descriptions == ("b11", "b04")
        data = stack.read()
        assert stac_tags(stack) == {"ITEM_ID": "x"}
        assert stack.tags()["ACQUISITIONDATETIME"] == "2024-06-01T10:00:00+00:00"
    np.testing.assert_array_equal(data[0], np.repeat(np.repeat(coarse[0], 2, 0), 2, 1))
    np.testing.assert_array_equal(data[1], fine[0])


def test_nodata_alpha_and_masks_carry_into_the_stack(tmp_path: Path) -> None:
    rgba = np.full((4, 8, 8), 100, np.uint8)
    rgba[3] = 255
    rgba[3, :, :4] = 0  # the left half transparent
    rgba_path = write_raster(tmp_path / "visual.tif", rgba, photometric="RGB", alpha="YES")
    with _open_stack(tmp_path, {"visual": rgba_path}) as stack:
        assert stack.colorinterp[3] == ColorInterp.alpha
        assert MaskFlags.alpha in stack.mask_flag_enums[0]
        assert (stack.dataset_mask()[:, :4] == 0).all()
        assert (stack.dataset_mask()[:, 4:] == 255).all()
    band = np.full((1, 8, 8), 7, np.uint16)
    band[0, 0, 0] = 0
    nodata_path = write_raster(tmp_path / "red.tif", band, nodata=0)
    with _open_stack(tmp_path, {"red": nodata_path}) as stack:
        assert stack.nodatavals == (0.0,)
        assert stack.dataset_mask()[0, 0] == 0
    masked_path = write_raster(tmp_path / "masked.tif", np.full((1, 8, 8), 5, np.uint16))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked_path, "r+") as dst:
        mask = np.full((8, 8), 255, np.uint8)
        mask[:2] = 0
        dst.write_mask(mask)
    with _open_stack(tmp_path, {"masked": masked_path, "red": nodata_path}) as stack:
        assert MaskFlags.per_dataset in stack.mask_flag_enums[0]
        assert (stack.dataset_mask()[:2] == 0).all()
        assert (stack.dataset_mask()[2:] == 255).all()


def test_a_raster_that_is_no_item_has_no_tags_and_bad_layers_are_refused(tmp_path: Path) -> None:
    plain = write_raster(tmp_path / "plain.tif", np.zeros((1, 4, 4), np.uint8))
    with rasterio.open(plain) as dataset:
        assert stac_tags(dataset) == {}
    rotated = write_raster(
        tmp_path / "rotated.tif",
        np.zeros((1, 4, 4), np.uint8),
        transform=Affine(10, 1, 0, 1, -10, 0),
    )
    with pytest.raises(ValueError, match="geotransform is rotated"):
        read_layer("r", str(rotated))
    no_crs = write_raster(tmp_path / "nocrs.tif", np.zeros((1, 4, 4), np.uint8), crs=None)
    with pytest.raises(ValueError, match="no CRS"):
        read_layer("n", str(no_crs))
    with pytest.raises(ValueError, match="no asset to stack"):
        stack_vrt([], tags={}, stac={})
