"""``geossl embed``: the command line over ``embed_rasters``, its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from geossl.cli import main
from geossl.weights import read_weights
from tests.embed.embed_helpers import write_raster


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    pytest.importorskip("geossl.weights", reason="geossl.weights not available")
    timm = pytest.importorskip("timm")
    path = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    return path


def test_cli_embed(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raster = write_raster(tmp_path / "rgb.tif", np.full((3, 40, 40), 90, np.uint8))
    out = tmp_path / "e.parquet"
    args = ["embed", "--weights", str(weights), "--backbone", "test_resnet", str(raster)]
    main([*args, "--output", str(out), "--chip-size", "32", "--stride", "16", "--workers", "1"])
    summary = capsys.readouterr().out
    assert "embedded 4 of 4 chips from 1 source(s)" in summary
    assert "chips/s" in summary
    assert str(out) in summary
    meta = json.loads(pq.read_schema(out).metadata[b"geossl"])
    assert meta["model"]["backbone"] == "test_resnet"
    assert meta["model"]["weights"] == str(weights.resolve())
    assert meta["model"]["sha256"] == read_weights(weights, backbone="test_resnet")[1].sha256_full
    assert len(meta["model"]["sha256"]) == 64
    assert meta["bands"] == [1, 2, 3]  # resolved: the same list as in the GeoTIFF tags
    assert (meta["chip_size"], meta["stride"]) == (32, 16)
    with pytest.raises(SystemExit) as info:
        main([*args, "--output", str(out), "--chip-size", "32"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"geossl: error: {out} exists; pass --overwrite to replace it"
    )


def _four_bands(path: Path) -> None:
    write_raster(path, np.zeros((4, 8, 8), np.uint16))  # uint8 would be RGBA (alpha left out)


def _no_crs(path: Path) -> None:
    write_raster(path, np.zeros((3, 8, 8), np.uint8), crs=None)


def _text(path: Path) -> None:
    path.write_text("not a raster")


def _rgb(path: Path) -> None:
    write_raster(path, np.zeros((3, 8, 8), np.uint8))


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (_four_bands, [], "the raster has 4 band(s) but the weights take 3"),
        (_no_crs, [], "the raster has no CRS"),
        (_text, [], "not a raster that GDAL can read"),
        (_rgb, ["--bands", "3,x"], "--bands takes band indexes"),
    ],
)
def test_cli_errors_are_one_line_naming_the_file(
    tmp_path: Path,
    weights: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], None],
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "input.tif"
    make(path)
    with pytest.raises(SystemExit) as info:
        main(
            [
                *("embed", "--weights", str(weights), "--backbone", "test_resnet", str(path)),
                *("--output", str(tmp_path / "e.parquet"), *extra),
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("geossl: error:")
    assert message in err
    if "--bands" not in extra:
        assert str(path) in err


def test_cli_formats_are_the_library_formats() -> None:
    # The front-end lists the formats without importing torch; the library is their home.
    from geossl.cli.embed import _FORMATS
    from geossl.embed.plan import FORMATS

    assert _FORMATS == FORMATS


@pytest.mark.parametrize(
    ("extra", "nodata", "message"),
    [
        # 0 used to mean "the weights' chip size" (``args.chip_size or default``).
        (["--chip-size", "0"], None, "--chip-size (chip_size) must be at least 1, got 0"),
        # test_resnet embeds in 256 dimensions: 600 components used to be 600 bands.
        (["--format", "geotiff", "--pca", "600"], None, "--pca 600: the embeddings have only"),
        # Every pixel nodata: used to exit 0 with an empty GeoParquet.
        (["--chip-size", "8"], 0.0, "nothing to embed in {path}: all 4 chips have more than"),
    ],
)
def test_cli_refuses_silently_wrong_results(
    tmp_path: Path,
    weights: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    nodata: float | None,
    message: str,
) -> None:
    path = write_raster(tmp_path / "input.tif", np.zeros((3, 16, 16), np.uint8), nodata=nodata)
    out = tmp_path / ("grid" if "geotiff" in extra else "e.parquet")
    with pytest.raises(SystemExit) as info:
        main(
            [
                *("embed", "--weights", str(weights), "--backbone", "test_resnet", str(path)),
                *("--output", str(out), "--workers", "0", *extra),
            ]
        )
    assert info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert line.startswith("geossl: error: ")
    assert message.format(path=path) in line
    assert not out.exists() or not any(out.iterdir())  # nothing written under a final name


def _stac_items(tmp_path: Path) -> Path:
    """An ItemCollection of one item with three single-band GeoTIFF assets (relative hrefs)."""
    assets = {}
    for k, name in enumerate(("red", "green", "blue")):
        write_raster(tmp_path / f"{name}.tif", np.full((1, 32, 32), 40 * (k + 1), np.uint8))
        assets[name] = {"href": f"{name}.tif", "type": "image/tiff; application=geotiff"}
    item: dict[str, object] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "LC09_017029_20240602",
        "geometry": None,
        "links": [],
        "properties": {"datetime": "2024-06-02T15:40:00Z"},
        "assets": assets,
    }
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def test_cli_embeds_stac_items(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = _stac_items(tmp_path)
    out = tmp_path / "e.parquet"
    args = ["embed", "--weights", str(weights), "--backbone", "test_resnet", "--stac", str(items)]
    main([*args, "--assets", "red,green,blue", "--output", str(out), "--chip-size", "16"])
    assert "embedded 4 of 4 chips from 1 source(s)" in capsys.readouterr().out
    table = pq.read_table(out, columns=["item_id", "source", "datetime"]).to_pylist()
    assert {row["item_id"] for row in table} == {"LC09_017029_20240602"}
    assert {row["source"] for row in table} == {
        ",".join(str(tmp_path / f"{name}.tif") for name in ("red", "green", "blue"))
    }
    assert {row["datetime"].isoformat() for row in table} == {"2024-06-02T15:40:00+00:00"}
    with pytest.raises(SystemExit) as info:
        main([*args, "--assets", "red,nir", "--output", str(tmp_path / "f.parquet")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"geossl: error: {items}: item 'LC09_017029_20240602' has no asset 'nir'; "
        "its assets: red, green, blue"
    )
    with pytest.raises(SystemExit):
        main(["embed", "--weights", str(weights), "--output", str(tmp_path / "g.parquet")])
    assert "nothing to embed: give rasters or fMoW folders" in capsys.readouterr().err
