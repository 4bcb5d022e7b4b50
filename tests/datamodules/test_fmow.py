import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from geossl.datamodules import FMoWDataModule
from geossl.datamodules import fmow as fmow_datamodule
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.fmow import FMoW, read_fmow_image
from geossl.datasets.fmow.encoded import EncodedImages
from geossl.samplers import TemporalPairSampler
from geossl.synthetic.fmow import generate_fmow_sample
from geossl.synthetic.fmow_sentinel import generate_fmow_sentinel_sample


def _module(data_root: Path, tmp_path: Path, **kwargs: Any) -> FMoWDataModule:
    options: dict[str, Any] = {
        "root": str(data_root),
        "image_size": 48,
        "batch_size": 4,
        "num_workers": 0,
        "num_geo_clusters": 4,
        "cache_dir": str(tmp_path / "cache"),
    }
    options.update(kwargs)
    return FMoWDataModule(**options)


def test_training_batch_follows_the_contract(fmow_sample: Path, tmp_path: Path) -> None:
    dm = _module(fmow_sample, tmp_path, val_split="val")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.index is not None
    assert dm.index.from_cache  # prepare_data wrote it, setup read it
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, TemporalPairSampler)
    batch = next(iter(loader))
    assert set(batch) == {"image", "label", "geo_label", "lat", "lon", "time", "location", "index"}
    assert batch["image"].shape == (4, 2, 3, 48, 48)
    assert batch["image"].dtype == torch.uint8
    for key in ("label", "geo_label", "location"):
        assert batch[key].shape == (4,)
        assert batch[key].dtype == torch.int64
    for key in ("lat", "lon"):
        assert batch[key].shape == (4,)
        assert batch[key].dtype == torch.float32
    for key in ("time", "index"):
        assert batch[key].shape == (4, 2)
        assert batch[key].dtype == torch.int64
    assert batch["geo_label"].max() < 4
    # both views come from the same location, at different times where the location allows it
    rows = dm.index.split_rows("train")
    for i, j in batch["index"].tolist():
        assert rows["location_id"].iloc[i] == rows["location_id"].iloc[j]
    # one pair per training location per epoch, last incomplete batch dropped
    locations = rows["location_id"].nunique()
    assert len(loader) == locations // 4
    assert dm.in_chans == 3

    val = dm.val_dataloader()
    assert not isinstance(val, list)
    val_batch = next(iter(val))
    assert val_batch["image"].shape == (4, 3, 48, 48)
    assert val_batch["time"].shape == (4,)


def test_image_pairs_and_workers(fmow_sample: Path, tmp_path: Path) -> None:
    dm = _module(fmow_sample, tmp_path, pair_mode="image", num_workers=1, drop_last=False)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    assert dm.train_dataset is not None
    assert sum(len(b["index"]) for b in loader) == len(dm.train_dataset)
    assert dm.val_dataloader() == []


def test_shared_canvas(fmow_sample: Path, tmp_path: Path) -> None:
    dm = _module(fmow_sample, tmp_path, shared_canvas=True)
    assert dm.pairs_share_canvas
    assert not _module(fmow_sample, tmp_path).pairs_share_canvas
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_dataset is not None
    assert dm.train_dataset.shared_canvas  # the index has the box columns it needs
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 2, 3, 48, 48)


def test_too_many_geo_clusters(fmow_sample: Path, tmp_path: Path) -> None:
    dm = _module(fmow_sample, tmp_path, num_geo_clusters=500)
    with pytest.raises(ValueError, match=r"^data\.num_geo_clusters=500 is larger than"):
        dm.prepare_data()


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    dm = _module(tmp_path / "absent", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="geossl datasets sample fmow --output"):
        dm.prepare_data()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"splits": ["training"]}, "data.splits"),
        ({"splits": []}, "data.splits"),
        ({"product": "pan"}, "data.product"),
        ({"bands": [4]}, "data.bands"),
        ({"product": "ms", "bands": [9]}, "data.bands"),
        ({"image_size": 0}, "data.image_size"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"num_geo_clusters": 0}, "data.num_geo_clusters"),
        ({"pair_mode": "pairs"}, "data.pair_mode"),
        ({"max_bad_fraction": 1.5}, "data.max_bad_fraction"),
        ({"val_split": "holdout"}, "data.val_split"),
        ({"root": ""}, "data.root"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _module(tmp_path, tmp_path, **kwargs)


def test_in_chans(tmp_path: Path) -> None:
    assert _module(tmp_path, tmp_path, product="msrgb").in_chans == 3
    assert _module(tmp_path, tmp_path, product="ms").in_chans == 8
    assert _module(tmp_path, tmp_path, product="ms", bands=[5, 3, 2, 7]).in_chans == 4
    assert _module(tmp_path, tmp_path, bands=[1]).in_chans == 1
    assert _module(tmp_path, tmp_path, product="sentinel").in_chans == 13


def test_fmow_sentinel_pairs(tmp_path: Path) -> None:
    # product="sentinel": the CSV-listed 13-band GeoTIFFs, reflectance x 1e-4, two dates of one
    # location per pair; a band selection reads those bands only.
    root = tmp_path / "fmow-sentinel"
    generate_fmow_sentinel_sample(root, locations=6, seed=2, image_size=(16, 24))
    dm = _module(
        root, tmp_path, product="sentinel", image_size=20, batch_size=2, num_geo_clusters=2
    )
    assert dm.in_chans == 13
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 2, 13, 20, 20)
    assert batch["image"].dtype == torch.float32
    assert float(batch["image"].min()) >= 0.0
    assert float(batch["image"].max()) <= 1.0
    assert float(batch["image"][:, :, 10].max()) < 0.01  # B10 (cirrus) reflectance is near 0
    assert bool((batch["time"][:, 0] != batch["time"][:, 1]).all())
    rgb = _module(root, tmp_path, product="sentinel", bands=[4, 3, 2], image_size=20)
    assert rgb.in_chans == 3
    rgb.setup("fit")
    assert rgb.train_dataset is not None
    pair = rgb.train_dataset[(0, 1)]
    assert pair["image"].shape == (2, 3, 20, 20)
    with pytest.raises(ValueError, match=r"data\.bands .* 1\.\.13"):
        _module(root, tmp_path, product="sentinel", bands=[14])
    with pytest.raises(ValueError, match="fMoW-Sentinel has the splits"):
        _module(root, tmp_path, product="sentinel", val_split="seq")


def test_band_statistics_of_multispectral_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "fmow-full"
    generate_fmow_sample(root, locations=10, seed=1, full=True, image_size=(48, 64))
    dm = _module(root, tmp_path, product="ms", image_size=32)
    mean, std = dm.band_statistics(num_samples=5)
    assert len(mean) == len(std) == 8
    # Naive: the same seeded images, read as the workers read them, pooled with numpy.
    assert dm.index is not None
    rows = dm.index.split_rows("train")
    picks = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:5]
    pixels = []
    sample = rows.iloc[picks.sort().values.numpy()]
    crops = sample[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy(dtype=np.int64)
    for path, (x0, y0, x1, y1) in zip(sample["path"], crops.tolist(), strict=True):
        image = read_fmow_image(root / str(path), (x0, y0, x1, y1), 32).numpy().astype(np.float64)
        pixels.append(image[:, ~np.all(image == 0, axis=0)])  # all-zero pixels: no data
    pooled = np.concatenate(pixels, axis=1)
    np.testing.assert_allclose(mean, pooled.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, pooled.std(axis=1), rtol=1e-6)
    assert len(list((tmp_path / "cache").glob("band-stats-fmow-ms-*.json"))) == 1

    def no_reads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached statistics were read again from the images")

    monkeypatch.setattr(FMoW, "__getitem__", no_reads)
    restarted = _module(root, tmp_path, product="ms", image_size=32)
    assert restarted.band_statistics(num_samples=5) == (mean, std)
    with pytest.raises(AssertionError, match="read again"):  # other bands: another estimate
        _module(root, tmp_path, product="ms", image_size=32, bands=[5, 3, 2]).band_statistics(5)


def _first_batches(dm: FMoWDataModule) -> dict[str, Any]:
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    return dm.on_after_batch_transfer(batch, 0)  # type: ignore[no-any-return]


def test_decode_on_device_gives_the_workers_batch(fmow_sample: Path, tmp_path: Path) -> None:
    # Same seed, same pairs: every key is equal and the pixels agree to PIL's draft decode.
    workers = _first_batches(_module(fmow_sample, tmp_path))
    dm = _module(fmow_sample, tmp_path, decode_on_device=True)
    dm.prepare_data()
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    assert "image" not in raw
    assert isinstance(raw["encoded"], EncodedImages)
    assert len(raw["encoded"]) == 8  # 4 pairs, pair-major
    decoded = dm.on_after_batch_transfer(raw, 0)
    assert set(decoded) == set(workers)
    for key in workers:
        if key != "image":
            assert torch.equal(decoded[key], workers[key]), key
    assert decoded["image"].shape == workers["image"].shape == (4, 2, 3, 48, 48)
    assert decoded["image"].dtype == torch.uint8
    diff = (decoded["image"].float() - workers["image"].float()).abs()
    assert diff.mean() < 1.0
    assert dm.num_decode_failures == 0
    # A band selection applies after the decode; validation batches are left as they are.
    bgr = _first_batches(_module(fmow_sample, tmp_path, decode_on_device=True, bands=[3, 2, 1]))
    assert torch.equal(bgr["image"], decoded["image"].flip(2))
    plain = {"image": torch.zeros(1)}
    assert dm.on_after_batch_transfer(plain, 0) is plain


def _corrupt(root: Path, rows: list[str]) -> None:
    for path in rows:
        (root / path).write_bytes(b"\xff\xd8" + bytes(500))  # a JPEG marker, then nothing valid


def _decoding_on_device(fmow_sample: Path, tmp_path: Path) -> tuple[Path, FMoWDataModule]:
    """A copy of the sample (to corrupt) and its decode-on-device module, set up for fit."""
    root = tmp_path / "fmow-rgb"
    shutil.copytree(fmow_sample, root)
    dm = _module(root, tmp_path, decode_on_device=True)
    dm.prepare_data()
    dm.setup("fit")
    return root, dm


def test_decode_on_device_replaces_corrupt_images(fmow_sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "fmow-rgb"
    shutil.copytree(fmow_sample, root)
    clean = _first_batches(_module(root, tmp_path))
    dm = _module(root, tmp_path, decode_on_device=True)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.index is not None
    paths = dm.index.split_rows("train")["path"].tolist()
    (i0, j0), (i1, j1) = clean["index"][0].tolist(), clean["index"][1].tolist()
    assert len({i0, j0, i1, j1}) == 4
    # Pair 0 loses its second view; pair 1 loses both of its views.
    _corrupt(root, [paths[j0], paths[i1], paths[j1]])
    batch = next(iter(dm.train_dataloader()))
    with pytest.warns(RuntimeWarning, match="cannot decode the image") as record:
        out = dm.on_after_batch_transfer(batch, 0)
    named = " ".join(str(w.message) for w in record)
    assert all(paths[r] in named for r in (j0, i1, j1))
    assert dm.num_decode_failures == 3
    image = out["image"]
    assert torch.equal(image[0, 1], image[0, 0])  # the anchor stands in for its lost view
    assert out["index"][0].tolist() == [i0, i0]
    assert out["time"][0, 1] == out["time"][0, 0]
    for key in out:  # pair 1 is a copy of its nearest intact neighbour, pair 2
        assert torch.equal(out[key][1], out[key][2]), key
    for key in out:  # the other pairs are untouched
        if key != "image":
            assert torch.equal(out[key][2:], clean[key][2:]), key


def test_decode_on_device_replaces_blank_images(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, dm = _decoding_on_device(fmow_sample, tmp_path)
    assert dm.index is not None
    paths = dm.index.split_rows("train")["path"].tolist()
    batch = next(iter(dm.train_dataloader()))
    i0, j0 = batch["index"][0].tolist()
    flat = Image.new("RGB", (64, 64), (128, 128, 128))
    buffer = io.BytesIO()
    flat.save(buffer, "JPEG")
    batch["encoded"].data[1] = buffer.getvalue()  # view 1 of pair 0 decodes to one grey
    with pytest.warns(RuntimeWarning, match="blank image") as record:
        out = dm.on_after_batch_transfer(batch, 0)
    assert paths[j0] in str(record[0].message)
    assert dm.num_decode_failures == 1
    assert torch.equal(out["image"][0, 1], out["image"][0, 0])  # the anchor stands in
    assert out["index"][0].tolist() == [i0, i0]
    dm.teardown("fit")  # the end of the run tells how many were replaced
    assert "1 images failed to decode on the device (or were blank)" in capsys.readouterr().err


def test_decode_on_device_stops_past_the_failure_limit(
    fmow_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dm = _decoding_on_device(fmow_sample, tmp_path)
    assert dm.index is not None
    _corrupt(root, dm.index.split_rows("train")["path"].tolist())
    batch = next(iter(dm.train_dataloader()))
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError, match="no pair of a batch"):
        dm.on_after_batch_transfer(batch, 0)
    monkeypatch.setattr(fmow_datamodule, "MAX_DECODE_FAILURES", 2)
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError, match=r"failed to decode"):
        dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"product": "ms"}, r"data\.decode_on_device decodes JPEGs.*got 'ms'"),
        ({"shared_canvas": True}, r"data\.decode_on_device and data\.shared_canvas"),
    ],
)
def test_decode_on_device_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _module(tmp_path, tmp_path, decode_on_device=True, **kwargs)
