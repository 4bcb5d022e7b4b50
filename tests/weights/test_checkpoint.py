"""A pretraining checkpoint describes itself; checkpoints written before that still load."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.datamodules import FMoWDataModule
from geossl.trainers import GeoSSLTask
from geossl.weights import export_weights, read_weights
from geossl.weights.checkpoint import LEGACY_DEFAULT_LOSSES
from tests.pretrain_helpers import shared_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint_path(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_checkpoint(fmow_sample, tmp_path_factory)


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return loaded


def test_the_checkpoint_records_its_recipe_and_input(checkpoint_path: Path) -> None:
    hp = _load(checkpoint_path)["hyper_parameters"]
    block = hp["input_block"]
    # Supplied by the data module (linked by the CLI), completed by the task when it saved.
    assert block["dataset"] == "fmow"
    assert block["band_names"] == ["red", "green", "blue"]
    assert block["scale"] == pytest.approx(1 / 255)
    assert block["image_size"] == hp["crop_size"]
    assert len(block["mean"]) == len(block["std"]) == 3
    assert hp["losses"]  # resolved, never None
    active = [name for name, weight in hp["losses"].items() if weight > 0]
    assert sorted(hp["loss_options"]) == sorted(active)
    if "co2" in active:  # every option with its default filled in
        assert {"temperature", "symmetric"} <= set(hp["loss_options"]["co2"])


def test_reading_needs_only_the_checkpoint(checkpoint_path: Path) -> None:
    hp = _load(checkpoint_path)["hyper_parameters"]
    _, meta = read_weights(checkpoint_path)
    assert meta.bands == ("red", "green", "blue")
    assert meta.mean == pytest.approx(tuple(hp["input_block"]["mean"]))
    assert meta.dataset == "fmow"
    assert meta.image_size == hp["crop_size"]


def test_the_data_module_supplies_the_block() -> None:
    dm = FMoWDataModule(root="unused", product="ms", bands=[5, 3, 2])
    block = dm.input_block
    assert block["band_names"] == ["red", "green", "blue"]  # WorldView bands 5, 3, 2
    assert block["bands"] == [5, 3, 2]
    assert block["scale"] == pytest.approx(1 / 2047)
    task = GeoSSLTask(backbone="resnet18", crop_size=32, queue_size=64, input_block=block)
    assert task.describe_input_and_recipe()["input_block"]["band_names"] == block["band_names"]
    with pytest.raises(ValueError, match=r"model\.input_block\.band_names has 3 names"):
        GeoSSLTask(backbone="resnet18", in_chans=4, input_block=block)
    with pytest.raises(ValueError, match=r"model\.input_block: unknown keys \['colour'\]"):
        GeoSSLTask(backbone="resnet18", input_block={**block, "colour": 1})


def test_a_checkpoint_written_before_the_input_block_still_loads(
    checkpoint_path: Path, tmp_path: Path
) -> None:
    # What the code wrote before checkpoints described themselves: the losses and options as
    # given (here none: the default), no input block; the input is in the data's parameters.
    old = _load(checkpoint_path)
    hp = old["hyper_parameters"]
    for key in ("input_block", "loss_options"):
        hp.pop(key)
    hp["losses"] = None
    assert old["datamodule_hyper_parameters"]["product"] == "rgb"
    legacy = tmp_path / "legacy.ckpt"
    torch.save(old, legacy)

    _, meta = read_weights(legacy)
    assert meta.bands == ("red", "green", "blue")  # from the data module's product
    assert meta.scale == pytest.approx(1 / 255)
    assert meta.dataset == "fmow"
    assert dict(meta.losses) == LEGACY_DEFAULT_LOSSES
    assert meta.method == "tp_geo"
    exported = export_weights(legacy, tmp_path / "export")
    assert json.loads(exported.metadata.read_text())["method"] == "tp_geo"
    restored = GeoSSLTask.load_from_checkpoint(legacy, map_location="cpu", weights_only=True)
    assert sorted(restored.terms) == ["geo", "tp"]
