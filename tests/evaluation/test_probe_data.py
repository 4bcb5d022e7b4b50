"""The probe's datasets: torchgeo datasets on disk, their bands and scale, and bad arguments."""

from pathlib import Path

import numpy as np
import pytest

from geossl.evaluation.probe_data import load_probe_data


def test_torchgeo_eurosat_reads_rgb_bands_for_rgb_weights(tmp_path: Path) -> None:
    import rasterio

    base = tmp_path / "ds" / "images" / "remote_sensing" / "otherDatasets" / "sentinel_2" / "tif"
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    rng = np.random.default_rng(1)
    for cls in ("Forest", "River"):
        (base / cls).mkdir(parents=True)
        for i in range(3):
            name = f"{cls}_{i}.tif"
            with rasterio.open(
                base / cls / name,
                "w",
                driver="GTiff",
                width=16,
                height=16,
                count=13,
                dtype="uint16",
                crs="EPSG:32633",
                transform=rasterio.transform.from_origin(500000, 4000000, 10, 10),
            ) as dst:
                dst.write(rng.integers(0, 4000, (13, 16, 16), dtype=np.uint16))
            names[("train", "val", "test")[i]].append(name.replace(".tif", ".jpg"))
    for split, files in names.items():
        (tmp_path / f"eurosat-{split}.txt").write_text("\n".join(files) + "\n")
    data = load_probe_data(tmp_path, "eurosat", in_chans=3)
    assert data.bands == ("B04", "B03", "B02")
    assert data.splits["train"][0]["image"].shape == (3, 16, 16)
    assert data.scale == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="EuroSAT has 13 bands"):
        load_probe_data(tmp_path, "eurosat", in_chans=4)


def test_unknown_dataset_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown --dataset 'bigearthnet'"):
        load_probe_data(tmp_path, "bigearthnet")
    with pytest.raises(FileNotFoundError, match="resisc45 root folder does not exist"):
        load_probe_data(tmp_path / "none", "resisc45")
