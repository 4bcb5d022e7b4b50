"""The torchgeo-style weights API: GeoSSLWeights, from_file, resnet18/50, strict loading."""

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
import torchgeo.models
from safetensors.torch import save_file
from torch import Tensor
from torchgeo.models import ResNet50_Weights
from torchvision.models._api import Weights, WeightsEnum

from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.torchgeo_tasks import ClassificationTask, SemanticSegmentationTask
from geossl.weights import (
    ExportedWeights,
    GeoSSLWeights,
    LocalWeights,
    LocalWeightsEnum,
    build_transforms,
    export_weights,
    load_state_dict_strict,
    pretrain_method,
    read_weights,
    resnet18,
    resnet50,
)
from tests.pretrain_helpers import shared_tiny_checkpoint


@pytest.fixture(scope="module")
def exported(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportedWeights:
    checkpoint = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    return export_weights(checkpoint, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def state(exported: ExportedWeights) -> dict[str, Tensor]:
    loaded: dict[str, Tensor] = torch.load(exported.weights, map_location="cpu", weights_only=True)
    return loaded


def assert_same_tensors(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert set(got) >= set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_gassl_entry_is_torchgeos() -> None:
    ours, theirs = GeoSSLWeights.FMOW_RGB_GASSL, ResNet50_Weights.FMOW_RGB_GASSL
    assert ours.url == theirs.url  # not a URL of our own: torchgeo's published file
    assert ours.transforms is theirs.transforms
    assert ours.meta.items() >= theirs.meta.items()
    assert ours.meta["bands"] == ["red", "green", "blue"]
    assert ours.meta["scale"] == pytest.approx(1 / 255)
    assert ours.meta["mean"] == list(IMAGENET_MEAN)
    assert ours.meta["image_size"] == 224
    assert list(GeoSSLWeights.__members__) == ["FMOW_RGB_GASSL"]


def test_from_file_is_a_torchgeo_weights(
    exported: ExportedWeights, state: dict[str, Tensor]
) -> None:
    weights = GeoSSLWeights.from_file(exported.weights)
    # A WeightsEnum member, like torchgeo's ResNet50_Weights.FMOW_RGB_GASSL (what its tasks take).
    assert isinstance(weights, WeightsEnum)
    assert isinstance(weights, LocalWeightsEnum)
    assert isinstance(weights.value, Weights)
    assert isinstance(weights.value, LocalWeights)
    assert weights.url == str(exported.weights.resolve())
    meta = weights.meta
    assert (meta["model"], meta["in_chans"], meta["ssl_method"]) == ("resnet18", 3, "tp_geo")
    assert meta["dataset"] == "fmow"
    assert meta["bands"] == ["red", "green", "blue"]
    assert meta["sha256"] == exported.meta.sha256
    assert meta["geossl_meta"] == exported.meta
    assert_same_tensors(weights.get_state_dict(progress=True), state)


def test_transforms_resize_scale_and_normalise(exported: ExportedWeights) -> None:
    transforms = GeoSSLWeights.from_file(exported.weights).transforms
    raw = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    before = raw.clone()
    out = transforms(raw)
    resized = F.interpolate(raw.float(), size=(32, 32), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (resized / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    assert torch.equal(raw, before)  # not in place
    floats = raw.float()
    torch.testing.assert_close(transforms(floats), out)
    assert torch.equal(floats, raw.float())


def test_resnet18_loads_every_tensor(exported: ExportedWeights, state: dict[str, Tensor]) -> None:
    weights = GeoSSLWeights.from_file(exported.weights)
    for source in (weights, exported.weights, str(exported.weights), exported.checkpoint):
        model = resnet18(weights=source, num_classes=0)
        assert_same_tensors(dict(model.state_dict()), state)
        assert not any(k.startswith("fc.") for k in model.state_dict())
    # With a new classifier: every backbone tensor from the file, only fc at its init.
    model = resnet18(weights=exported.weights, num_classes=10)
    assert model.state_dict()["fc.weight"].shape == (10, 512)
    assert_same_tensors(dict(model.state_dict()), state)
    # No weights: timm's model, randomly initialised.
    assert resnet18(num_classes=0).state_dict()["conv1.weight"].shape == (64, 3, 7, 7)


def test_torchgeo_resnet18_accepts_local_weights(
    exported: ExportedWeights, state: dict[str, Tensor]
) -> None:
    model = torchgeo.models.resnet18(weights=GeoSSLWeights.from_file(exported.weights))
    assert_same_tensors(dict(model.state_dict()), state)


def test_torchgeo_tasks_accept_local_weights(
    exported: ExportedWeights, state: dict[str, Tensor]
) -> None:
    # torchgeo's own code paths: ClassificationTask loads a WeightsEnum member with
    # get_state_dict(progress=True) into its timm model, SemanticSegmentationTask into the smp
    # encoder; a plain Weights was refused there (TypeError).
    weights = GeoSSLWeights.from_file(exported.weights)
    classifier = ClassificationTask(model="resnet18", weights=weights, num_classes=10)
    assert_same_tensors(dict(classifier.model.state_dict()), state)
    segmenter = SemanticSegmentationTask(
        model="unet", backbone="resnet18", weights=weights, num_classes=2
    )
    assert_same_tensors(dict(segmenter.model.encoder.state_dict()), state)


def test_builder_errors(exported: ExportedWeights, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="these are resnet18 weights, not resnet50"):
        resnet50(weights=exported.weights)
    with pytest.raises(ValueError, match=r"in_chans mismatch: .*3 input bands .*in_chans=4"):
        resnet18(weights=exported.weights, in_chans=4)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        GeoSSLWeights.from_file(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="weights must be"):
        resnet18(weights=3)
    bare = tmp_path / "bare.pth"
    bare.write_bytes(exported.weights.read_bytes())
    with pytest.raises(ValueError, match="backbone="):
        GeoSSLWeights.from_file(bare)
    weights = GeoSSLWeights.from_file(bare, backbone="resnet18")  # ImageNet RGB defaults
    assert weights.meta["mean"] == list(IMAGENET_MEAN)
    assert weights.meta["ssl_method"] == "unknown"


def test_load_state_dict_strict_messages() -> None:
    model = timm.create_model("resnet18", num_classes=0)
    good = dict(model.state_dict())
    load_state_dict_strict(model, good, source="f.pth")

    missing = {k: v for k, v in good.items() if not k.startswith("layer4.")}
    with pytest.raises(ValueError, match=r"f\.pth: keys do not match timm 'resnet18': \d+ missing"):
        load_state_dict_strict(model, missing, source="f.pth")
    with pytest.raises(ValueError, match=r"1 unexpected \(fc\.weight\)"):
        load_state_dict_strict(model, {**good, "fc.weight": torch.zeros(2, 512)}, source="f")
    shape = {**good, "bn1.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"shape mismatch .*bn1\.weight \(3,\) vs \(64,\)"):
        load_state_dict_strict(model, shape, source="f")

    # A new classifier may be missing when allowed (and only it).
    with_fc = timm.create_model("resnet18", num_classes=5)
    load_state_dict_strict(with_fc, good, source="f", allow_missing=("fc.",))
    with pytest.raises(ValueError, match=r"2 missing \(fc\.weight, fc\.bias\)"):
        load_state_dict_strict(with_fc, good, source="f")


def test_read_torchgeo_task_checkpoints(tmp_path: Path) -> None:
    # A (fine-tuned) ClassificationTask checkpoint: hyper_parameters["model"], keys model.<key>.
    task = ClassificationTask(model="resnet18", in_channels=3, num_classes=10)
    path = tmp_path / "classification.ckpt"
    torch.save(
        {
            "hyper_parameters": {"model": "resnet18", "in_channels": 3, "num_classes": 10},
            "state_dict": task.state_dict(),
        },
        path,
    )
    state, meta = read_weights(path)
    assert meta.source_format == "lightning-checkpoint"
    assert meta.backbone == "resnet18"
    assert not meta.has_metadata
    backbone = {k: v for k, v in task.model.state_dict().items() if not k.startswith("fc.")}
    assert list(state) == list(backbone)  # the head is dropped, nothing else
    assert_same_tensors(state, backbone)

    # The other layout torchgeo's extract_backbone reads: backbone + model.backbone.model.<key>.
    path = tmp_path / "backbone.ckpt"
    torch.save(
        {
            "hyper_parameters": {"backbone": "resnet18"},
            "state_dict": {f"model.backbone.model.{k}": v for k, v in backbone.items()},
        },
        path,
    )
    state, meta = read_weights(path)
    assert_same_tensors(state, backbone)

    # A SemanticSegmentationTask checkpoint: the smp encoder of a ResNet has timm's keys.
    segmenter = SemanticSegmentationTask(model="unet", backbone="resnet18", num_classes=2)
    path = tmp_path / "segmentation.ckpt"
    torch.save(
        {"hyper_parameters": dict(segmenter.hparams), "state_dict": segmenter.state_dict()}, path
    )
    state, meta = read_weights(path)
    assert meta.backbone == "resnet18"
    assert_same_tensors(state, dict(segmenter.model.encoder.state_dict()))
    assert set(state) == set(backbone)

    path = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"lr": 0.1}, "state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match=r"other\.ckpt: unknown Lightning checkpoint"):
        read_weights(path)


def test_read_timm_files(tmp_path: Path) -> None:
    model = timm.create_model("resnet18")  # with its ImageNet-style fc
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "model.safetensors"
    save_file(dict(model.state_dict()), str(path))
    state, meta = read_weights(path, backbone="resnet18")
    assert meta.source_format == "state-dict"
    assert set(state) == set(backbone)  # safetensors sorts the keys
    assert_same_tensors(state, backbone)
    # DistributedDataParallel's "module." prefix.
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in backbone.items()}, ddp)
    state, _ = read_weights(ddp, backbone="resnet18")
    assert_same_tensors(state, backbone)
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5000'"):
        read_weights(ddp, backbone="resnet5000")
    with pytest.raises(ValueError, match=r"no input-layer weight of timm 'vit_tiny_patch16_224'"):
        read_weights(ddp, backbone="vit_tiny_patch16_224")


def test_damaged_safetensors_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"conv1.weight": torch.zeros(4, 3, 7, 7)}, str(path))
    for name, data in (("short", b"abc"), ("cut", path.read_bytes()[:-10])):
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name}\.safetensors: not a safetensors") as info:
            read_weights(broken, backbone="resnet18")
        assert "\n" not in str(info.value)


def test_build_transforms_needs_normalisation(tmp_path: Path) -> None:
    path = tmp_path / "ms.pth"
    torch.save(timm.create_model("resnet18", num_classes=0, in_chans=4).state_dict(), path)
    _, meta = read_weights(path, backbone="resnet18")
    assert not meta.has_normalization
    with pytest.raises(ValueError, match="normalisation is unknown"):
        build_transforms(meta)
    with pytest.raises(ValueError, match="normalisation is unknown"):
        GeoSSLWeights.from_file(path, backbone="resnet18")
    # Building the model needs no normalisation.
    assert resnet18(weights=path, num_classes=0).state_dict()["conv1.weight"].shape[1] == 4


def test_pretrain_method_names() -> None:
    assert pretrain_method(None) == "tp_geo"
    assert pretrain_method({"moco": 1.0}) == "moco"
    assert pretrain_method({"tp": 1.0, "geo": 0.0, "co2": 10.0}) == "tp_co2"


def test_raster_checkpoint_meta_takes_the_data_scale_and_band_names(tmp_path: Path) -> None:
    from geossl.weights.checkpoint import _geossl_checkpoint_meta

    data: dict[str, Any] = {
        "paths": ["s2/"],
        "patch_size": 64,
        "scale": 1e-4,
        "band_names": ["B02", "B03", "B04", "B08"],
    }
    checkpoint: dict[str, Any] = {
        "hyper_parameters": {"backbone": "resnet18", "mean": [0.1] * 4, "std": [0.2] * 4},
        "datamodule_hyper_parameters": data,
    }
    meta = _geossl_checkpoint_meta(tmp_path / "x.ckpt", checkpoint, 4, "0" * 64)
    assert meta.scale == pytest.approx(1e-4)
    assert meta.bands == ("B02", "B03", "B04", "B08")
    assert meta.dataset == "rasters"
    uint8 = {**data, "scale": None, "band_names": None}
    meta = _geossl_checkpoint_meta(
        tmp_path / "x.ckpt", {**checkpoint, "datamodule_hyper_parameters": uint8}, 4, "0" * 64
    )
    assert meta.scale == pytest.approx(1 / 255)
    assert meta.bands == ("band_1", "band_2", "band_3", "band_4")
