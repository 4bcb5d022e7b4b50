"""export_weights / load_backbone: a real tiny checkpoint through torchgeo's and timm's loaders."""

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, cast

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from geossl.cli import main
from geossl.datamodules import FMoWDataModule
from geossl.models import forward_feature_map
from geossl.trainers import GeoSSLTask
from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.torchgeo_tasks import ClassificationTask, SemanticSegmentationTask
from geossl.weights import ExportedWeights, export_weights, load_backbone, load_state_dict_strict
from tests.pretrain_helpers import shared_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_checkpoint(fmow_sample, tmp_path_factory)


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportedWeights:
    return export_weights(checkpoint, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def task(checkpoint: Path) -> GeoSSLTask:
    """The pretrained GeoSSLTask, as Lightning restores it."""
    return GeoSSLTask.load_from_checkpoint(checkpoint, map_location="cpu").eval()


def backbone_tensors(checkpoint: Path) -> dict[str, Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def assert_same_tensors(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert set(got) >= set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def random_images(seed: int = 0) -> Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_export_writes_four_files_named_by_hash(
    exported: ExportedWeights, checkpoint: Path
) -> None:
    digest = hashlib.sha256(exported.weights.read_bytes()).hexdigest()
    stem = f"resnet18_tp_geo-{digest[:8]}"
    assert exported.weights.name == f"{stem}.pth"
    assert exported.safetensors.name == f"{stem}.safetensors"
    assert exported.checkpoint.name == f"{stem}.ckpt"
    assert exported.metadata.name == f"{stem}.json"
    assert sorted(p.name for p in exported.weights.parent.iterdir()) == sorted(
        [f"{stem}.pth", f"{stem}.safetensors", f"{stem}.ckpt", f"{stem}.json"]
    )  # nothing temporary left behind

    meta = json.loads(exported.metadata.read_text())
    assert meta["format"] == "geossl-weights"
    assert meta["backbone"] == "resnet18"
    assert meta["in_chans"] == 3
    assert meta["num_features"] == 512
    assert meta["bands"] == ["red", "green", "blue"]
    assert meta["normalization"]["scale"] == pytest.approx(1 / 255)
    assert meta["normalization"]["mean"] == pytest.approx(list(IMAGENET_MEAN))
    assert meta["normalization"]["std"] == pytest.approx(list(IMAGENET_STD))
    assert meta["image_size"] == 32  # the pretraining crop size: what the backbone saw
    assert meta["method"] == "tp_geo"
    assert meta["losses"] == {"tp": 1.0, "geo": 1.0}
    assert set(meta["loss_options"]) == {"tp", "geo"}
    assert meta["dataset"]["name"] == "fmow"
    assert meta["dataset"]["product"] == "rgb"
    assert meta["dataset"]["image_size"] == 40
    assert "root" not in meta["dataset"]  # no local paths
    assert meta["global_step"] == 2
    assert meta["pretrain_hparams"]["queue_size"] == 64
    assert meta["sha256"] == digest
    assert meta["source"] == {
        "file": "last.ckpt",
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    }
    assert meta["versions"]["geossl"]
    assert exported.meta.sha256 == digest[:8]


def test_pth_is_a_plain_timm_state_dict(
    exported: ExportedWeights, checkpoint: Path, task: GeoSSLTask
) -> None:
    state = torch.load(exported.weights, map_location="cpu", weights_only=True)
    model = timm.create_model("resnet18", num_classes=0)
    assert list(state) == list(model.state_dict())  # timm's keys, in timm's order, no fc
    model.load_state_dict(state, strict=True)
    assert_same_tensors(state, backbone_tensors(checkpoint))
    model.eval()
    x = random_images()
    with torch.no_grad():
        torch.testing.assert_close(model(x), task.backbone(x), rtol=0, atol=0)


def test_timm_loads_the_safetensors_as_its_pretrained_file(
    exported: ExportedWeights, checkpoint: Path
) -> None:
    # What the export prints for timm users: the .safetensors through pretrained_cfg_overlay.
    model = timm.create_model(
        "resnet18",
        pretrained=True,
        num_classes=0,
        pretrained_cfg_overlay={"file": str(exported.safetensors)},
    )
    assert_same_tensors(dict(model.state_dict()), backbone_tensors(checkpoint))
    # The trap the docs warn about: timm given the .ckpt matches no key and stays random.
    trap = timm.create_model(
        "resnet18",
        pretrained=True,
        num_classes=0,
        pretrained_cfg_overlay={"file": str(exported.checkpoint)},
    )
    assert not torch.equal(trap.state_dict()["conv1.weight"], model.state_dict()["conv1.weight"])


def test_torchgeo_classification_task_loads_the_ckpt(
    exported: ExportedWeights, checkpoint: Path, task: GeoSSLTask
) -> None:
    classifier = ClassificationTask(
        model="resnet18", weights=str(exported.checkpoint), in_channels=3, num_classes=10
    )
    model = cast(Any, classifier.model).eval()  # timm ResNet: forward_features / forward_head
    assert_same_tensors(dict(model.state_dict()), backbone_tensors(checkpoint))
    x = random_images(1)
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(features, task.backbone(x), rtol=0, atol=0)
        assert model(x).shape == (2, 10)


def test_torchgeo_segmentation_task_loads_the_ckpt(
    exported: ExportedWeights, checkpoint: Path, task: GeoSSLTask
) -> None:
    segmenter = SemanticSegmentationTask(
        model="unet",
        backbone="resnet18",
        weights=str(exported.checkpoint),
        in_channels=3,
        num_classes=2,
    )
    encoder = segmenter.model.encoder.eval()
    assert_same_tensors(dict(encoder.state_dict()), backbone_tensors(checkpoint))
    x = random_images(2)
    with torch.no_grad():
        c5 = encoder(x)[-1]
        torch.testing.assert_close(c5, forward_feature_map(task.backbone, x), rtol=0, atol=0)


def test_export_again_refuses_then_overwrites_identically(
    exported: ExportedWeights, checkpoint: Path
) -> None:
    before = exported.weights.read_bytes()
    with pytest.raises(FileExistsError, match=r"exists; pass overwrite=True \(--overwrite\)"):
        export_weights(checkpoint, exported.weights.parent)
    again = export_weights(checkpoint, exported.weights.parent, overwrite=True)
    assert again.weights == exported.weights
    assert again.weights.read_bytes() == before  # deterministic bytes, so a stable hash


def test_an_interrupted_export_leaves_no_file(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = torch.save

    def interrupted(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, str | Path):  # the .ckpt, written after the .pth; not the hashing
            raise KeyboardInterrupt
        save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_weights(checkpoint, out)
    assert list(out.iterdir()) == []  # no .pth without its .ckpt and .json, no temporary file
    monkeypatch.undo()
    exported = export_weights(checkpoint, out)  # so a re-run needs no --overwrite
    assert sorted(p.suffix for p in out.iterdir()) == [".ckpt", ".json", ".pth", ".safetensors"]
    assert exported.weights.is_file()


def test_export_needs_a_pretraining_checkpoint(exported: ExportedWeights, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a geossl pretraining checkpoint"):
        export_weights(exported.checkpoint, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        export_weights(tmp_path / "nope.ckpt", tmp_path)


def test_load_backbone_reads_every_format_to_the_same_weights(
    exported: ExportedWeights, checkpoint: Path, task: GeoSSLTask
) -> None:
    x = random_images(3)
    with torch.no_grad():
        want = task.backbone(x)
    formats = {}
    for path in (checkpoint, exported.weights, exported.safetensors, exported.checkpoint):
        loaded = load_backbone(path)
        meta = loaded.meta
        formats[path.suffix + meta.source_format] = meta.sha256
        assert not loaded.model.training
        assert loaded.model.num_classes == 0
        assert meta.sha256 == exported.meta.sha256  # the same id whichever file was read
        assert (meta.backbone, meta.in_chans, meta.image_size) == ("resnet18", 3, 32)
        assert meta.bands == ("red", "green", "blue")
        assert meta.mean == pytest.approx(IMAGENET_MEAN)
        assert meta.std == pytest.approx(IMAGENET_STD)
        assert meta.scale == pytest.approx(1 / 255)
        assert meta.method == "tp_geo"
        assert meta.has_metadata
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), want, rtol=0, atol=0)
    assert set(formats) == {
        ".ckptgeossl-checkpoint",
        ".pthgeossl-weights",
        ".safetensorsgeossl-weights",
        ".ckptgeossl-weights",
    }


def test_load_backbone_bare_pth_needs_the_backbone(
    exported: ExportedWeights, tmp_path: Path
) -> None:
    bare = tmp_path / "weights.pth"
    shutil.copy(exported.weights, bare)  # no .json next to it
    with pytest.raises(ValueError, match=r"weights\.pth: a bare state dict .*backbone="):
        load_backbone(bare)
    loaded = load_backbone(bare, backbone="resnet18")
    assert loaded.meta.sha256 == exported.meta.sha256  # the file's own hash
    assert not loaded.meta.has_metadata
    assert loaded.meta.method == "unknown"
    assert loaded.meta.image_size == 224  # timm's default without metadata
    with pytest.raises(ValueError, match="holds resnet18 weights, not resnet50"):
        load_backbone(exported.weights, backbone="resnet50")


def test_key_mismatch_is_one_line_naming_the_file(
    exported: ExportedWeights, tmp_path: Path
) -> None:
    state = torch.load(exported.weights, map_location="cpu", weights_only=True)
    missing = {k: v for k, v in state.items() if k != "layer4.1.bn2.weight"}
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1)}
    for name, broken, what in (
        ("missing.pth", missing, r"1 missing \(layer4\.1\.bn2\.weight\)"),
        ("extra.pth", extra, r"1 unexpected \(layer5\.0\.conv1\.weight\)"),
    ):
        path = tmp_path / name
        torch.save(broken, path)
        with pytest.raises(ValueError, match=rf"{name}: keys do not match .*{what}") as info:
            load_backbone(path, backbone="resnet18")
        assert "\n" not in str(info.value)


def test_in_chans_mismatch_is_clear(exported: ExportedWeights, tmp_path: Path) -> None:
    # Metadata that disagrees with the tensors.
    shutil.copy(exported.weights, tmp_path / "w.pth")
    meta = json.loads(exported.metadata.read_text())
    meta["in_chans"] = 4
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"w\.json: in_chans mismatch: .*in_chans=4 .* 3 input"):
        load_backbone(tmp_path / "w.pth")
    # 3-band weights into a 4-band timm model.
    state = torch.load(exported.weights, map_location="cpu", weights_only=True)
    model = timm.create_model("resnet18", num_classes=0, in_chans=4)
    with pytest.raises(ValueError, match=r"w\.pth: in_chans mismatch: .* 3 input bands .*=4"):
        load_state_dict_strict(model, state, source=str(tmp_path / "w.pth"))


def test_modified_weights_do_not_match_their_metadata(
    exported: ExportedWeights, tmp_path: Path
) -> None:
    state = torch.load(exported.weights, map_location="cpu", weights_only=True)
    state["conv1.weight"] = state["conv1.weight"] + 1
    torch.save(state, tmp_path / "w.pth")
    shutil.copy(exported.metadata, tmp_path / "w.json")
    with pytest.raises(ValueError, match=r"w\.json: sha256 mismatch"):
        load_backbone(tmp_path / "w.pth")
    save_file(state, tmp_path / "w.safetensors")  # the modified tensors beside the export's .json
    with pytest.raises(ValueError, match=r"w\.json: sha256 mismatch: w\.safetensors is not"):
        load_backbone(tmp_path / "w.safetensors")


def test_timm_train_checkpoint_with_classifier(tmp_path: Path) -> None:
    model = timm.create_model("resnet18", num_classes=7)
    path = tmp_path / "model_best.pth.tar"
    # timm's train.py: state_dict (with its fc), arch, and argparse args.
    torch.save(
        {
            "epoch": 3,
            "arch": "resnet18",
            "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
            "args": argparse.Namespace(model="resnet18", lr=0.1),
        },
        path,
    )
    loaded = load_backbone(path)
    assert loaded.meta.source_format == "timm-checkpoint"
    assert loaded.meta.backbone == "resnet18"
    assert not any(k.startswith("fc.") for k in loaded.model.state_dict())
    want = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert_same_tensors(dict(loaded.model.state_dict()), want)


class NotAWeight:
    pass


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": NotAWeight()}, path)
    with pytest.raises(ValueError, match=r"evil\.pth: refused: it holds pickled Python") as e:
        load_backbone(path, backbone="resnet18")
    assert "\n" not in str(e.value)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pth"):
        load_backbone(tmp_path / "text.pth", backbone="resnet18")


def test_four_band_bare_file_needs_metadata(tmp_path: Path) -> None:
    model = timm.create_model("resnet18", num_classes=0, in_chans=4)
    path = tmp_path / "ms.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"4-band weights without metadata.*ms\.json"):
        load_backbone(path, backbone="resnet18")
    # A hand-written minimal metadata file is enough.
    (tmp_path / "ms.json").write_text(
        json.dumps(
            {
                "backbone": "resnet18",
                "in_chans": 4,
                "normalization": {"scale": 1 / 2047, "mean": [0.3] * 4, "std": [0.2] * 4},
            }
        )
    )
    loaded = load_backbone(path)
    assert loaded.meta.bands == ("band_1", "band_2", "band_3", "band_4")
    assert loaded.meta.scale == pytest.approx(1 / 2047)
    assert loaded.meta.in_chans == 4
    model.eval()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_size", "224px"), ("losses", ["tp", "geo"]), ("losses", {"tp": "x"})],
)
def test_bad_optional_metadata_is_one_line_naming_the_json(
    exported: ExportedWeights, tmp_path: Path, field: str, value: object
) -> None:
    shutil.copy(exported.weights, tmp_path / "w.pth")
    meta = json.loads(exported.metadata.read_text())
    meta[field] = value  # a hand-edited .json
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"w\.json: invalid weights metadata") as info:
        load_backbone(tmp_path / "w.pth")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("describes_itself", [True, False])
def test_multispectral_checkpoint_metadata(
    checkpoint: Path, tmp_path: Path, describes_itself: bool
) -> None:
    # The same checkpoint as if trained on bands 5, 3, 2 (red, green, blue) of fMoW-full's ms.
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["datamodule_hyper_parameters"].update(product="ms", bands=[5, 3, 2])
    raw["hyper_parameters"].update(mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7])
    block = raw["hyper_parameters"].pop("input_block")  # as checkpoints were before it
    if describes_itself:  # what FMoWDataModule(product="ms", bands=[5, 3, 2]) supplies
        ms = FMoWDataModule(root="unused", product="ms", bands=[5, 3, 2]).input_block
        block.update(ms, mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7])
        raw["hyper_parameters"]["input_block"] = block
    raw["hyper_parameters"].update(losses=None, loss_options={"co2": {"temperature": 0.1}})
    path = tmp_path / "ms.ckpt"
    torch.save(raw, path)
    meta = load_backbone(path).meta
    assert meta.bands == ("red", "green", "blue")
    assert meta.scale == pytest.approx(1 / 2047)
    assert meta.mean == (0.1, 0.2, 0.3)
    assert meta.std == (0.5, 0.6, 0.7)
    assert meta.method == "tp_geo"  # losses=None: GeoSSLTask's default recipe
    assert meta.losses == {"tp": 1.0, "geo": 1.0}
    exported = export_weights(path, tmp_path / "out")
    data = json.loads(exported.metadata.read_text())
    assert data["dataset"]["bands"] == [5, 3, 2]
    assert data["normalization"]["scale"] == pytest.approx(1 / 2047)
    assert set(data["loss_options"]) == {"tp", "geo"}  # options of inactive terms are not listed
    assert data["pretrain_hparams"]["loss_options"] == {"co2": {"temperature": 0.1}}
    # The data module's hyper-parameters are only read from checkpoints without the block.
    assert data["dataset"]["name"] == "fmow"


def test_cli_export_weights(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "weights"
    main(["export", "weights", str(checkpoint), "--output", str(out)])
    printed = capsys.readouterr().out
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".ckpt", ".json", ".pth", ".safetensors"]
    for f in files:
        assert str(f) in printed
    # The usage lines say which file each tool takes (timm: the .safetensors, never the .ckpt).
    assert "pretrained_cfg_overlay=dict(file=" in printed
    assert "not for timm" in printed
    assert "resnet18 (tp_geo, 3 bands, step 2)" in printed

    with pytest.raises(SystemExit) as info:
        main(["export", "weights", str(checkpoint), "--output", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("geossl: error:")
    assert "--overwrite" in err

    main(["export", "weights", str(checkpoint), "--output", str(out), "--overwrite"])
    assert sorted(out.iterdir()) == files

    with pytest.raises(SystemExit):
        main(["export", "weights", str(tmp_path / "missing.ckpt"), "--output", str(out)])
    assert "missing.ckpt" in capsys.readouterr().err


def test_loaded_model_is_a_plain_module(exported: ExportedWeights) -> None:
    loaded = load_backbone(exported.weights, device=torch.device("cpu"))
    assert isinstance(loaded.model, nn.Module)
    assert next(loaded.model.parameters()).device.type == "cpu"
