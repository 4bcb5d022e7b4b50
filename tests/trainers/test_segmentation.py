"""SpaceNetSegmentationTask: strict encoder loading, band adaptation, metrics, CLI fit + test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from torch import Tensor
from torch.utils.data import DataLoader

from geossl.datamodules.spacenet import _TrainTransform, pad_collate
from geossl.datasets.spacenet import IGNORE_INDEX, SpaceNetTiles, band_statistics
from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample
from geossl.trainers.downstream import FROM_CHECKPOINT
from geossl.trainers.segmentation import SpaceNetSegmentationTask, segmentation_metrics
from tests.conftest import REAL_DATA, REPO

TINY = REPO / "tests" / "conf" / "spacenet_seg_tiny.yaml"
PRESET = REPO / "configs" / "finetune" / "spacenet-seg.yaml"
SN4 = REAL_DATA / "spacenet4_atlanta"
MEAN, STD = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def sn1(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    # 4 chips: the tiny config's fractions leave 2 for training, 1 for val and 1 for test
    return generate_spacenet_sample(tmp_path_factory.mktemp("sn1"), tiles=4, seed=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """A geossl-style export of a resnet18 trunk: ``.pth`` state dict + ``.json`` metadata."""
    torch.manual_seed(1234)
    state = timm.create_model("resnet18", num_classes=0).state_dict()
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "resnet18_tp_geo-test.pth"
    torch.save(state, path)
    meta = {
        "format": "geossl-weights",
        "backbone": "resnet18",
        "in_chans": 3,
        "normalization": {"scale": 1 / 255, "mean": MEAN, "std": STD},
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path, state


def assert_encoder_equals(task: SpaceNetSegmentationTask, state: dict[str, Tensor]) -> None:
    encoder = task.model.encoder.state_dict()
    assert set(encoder) == set(state)
    for key, value in state.items():
        assert torch.equal(encoder[key], value), key


# -------------------------------------------------------------------------------------------------
# metrics
# -------------------------------------------------------------------------------------------------


def test_metrics_on_a_hand_made_mask_pair() -> None:
    target = torch.tensor(
        [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [IGNORE_INDEX, IGNORE_INDEX, 0, 0]]
    )
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]])
    # 14 valid pixels. Building: TP 3, FP 1 (0,1), FN 1 (1,2); background: TP 9, FP 1, FN 1.
    # The two predicted buildings on ignored pixels count nowhere.
    metrics = segmentation_metrics()
    values = {k: float(v) for k, v in metrics(pred[None], target[None]).items()}
    assert values["building_iou"] == pytest.approx(3 / 5)
    assert values["building_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert values["miou"] == pytest.approx((3 / 5 + 9 / 11) / 2)
    assert values["pixel_accuracy"] == pytest.approx(12 / 14)
    # torchgeo's JaccardIndex(average="micro") would say 12 / 16 = 0.75: not the paper's mIoU
    assert values["miou"] != pytest.approx(12 / 16)


def test_metrics_accumulate_over_the_epoch() -> None:
    metrics = segmentation_metrics()
    empty = torch.zeros(1, 4, 4, dtype=torch.long)  # a chip without buildings, predicted right
    built = torch.ones(1, 4, 4, dtype=torch.long)
    half = built.clone()
    half[..., 2:] = 0
    metrics.update(empty, empty)
    metrics.update(half, built)
    values = {k: float(v) for k, v in metrics.compute().items()}
    # building: TP 8, FN 8; background: TP 16, FP 8 -> confusion over all 32 pixels
    assert values["building_iou"] == pytest.approx(8 / 16)
    assert values["miou"] == pytest.approx((8 / 16 + 16 / 24) / 2)
    only_background = segmentation_metrics()
    only_background.update(empty, empty)
    result = only_background.compute()
    assert float(result["miou"]) == 1.0  # building absent from target and prediction: left out
    assert float(result["building_iou"]) == 0.0


# -------------------------------------------------------------------------------------------------
# weights
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["unet", "deeplabv3+", "pspnet"])
def test_encoder_tensors_equal_the_exported_weights(
    exported: tuple[Path, dict[str, Tensor]], model: str
) -> None:
    path, state = exported
    task = SpaceNetSegmentationTask(model=model, backbone="resnet18", weights=str(path))  # type: ignore[arg-type]
    assert_encoder_equals(task, state)
    assert task.get_buffer("input_mean").flatten().tolist() == pytest.approx(MEAN)
    assert task.get_buffer("input_std").flatten().tolist() == pytest.approx(STD)
    assert task.init_weights_info is not None
    assert task.init_weights_info["kind"] == "file"
    if model == "pspnet":  # loaded but unused by smp's PSPNet (encoder_depth 3): frozen
        assert not any(p.requires_grad for p in task.model.encoder.layer4.parameters())
        assert all(p.requires_grad for p in task.model.encoder.layer2.parameters())
    random = SpaceNetSegmentationTask(model=model, backbone="resnet18")  # type: ignore[arg-type]
    assert not torch.equal(random.model.encoder.conv1.weight, state["conv1.weight"])


def test_pan_band_needs_explicit_adaptation_and_normalisation(
    exported: tuple[Path, dict[str, Tensor]],
) -> None:
    path, state = exported
    with pytest.raises(ValueError, match="adapt_in_chans=true"):
        SpaceNetSegmentationTask(backbone="resnet18", weights=str(path), in_channels=1)
    with pytest.raises(ValueError, match=r"give model\.mean and model\.std"):
        SpaceNetSegmentationTask(
            backbone="resnet18", weights=str(path), in_channels=1, adapt_in_chans=True
        )
    task = SpaceNetSegmentationTask(
        backbone="resnet18",
        weights=str(path),
        in_channels=1,
        adapt_in_chans=True,
        mean=[0.22],
        std=[0.13],
    )
    conv1 = task.model.encoder.conv1.weight
    assert conv1.shape == (64, 1, 7, 7)
    # timm's rule: one band from three = the sum of the RGB kernels
    assert torch.allclose(conv1, state["conv1.weight"].sum(dim=1, keepdim=True))
    rest = {k: v for k, v in state.items() if k != "conv1.weight"}
    encoder = task.model.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in rest.items())
    assert task.init_weights_info is not None
    assert task.init_weights_info["adapted_from"] == 3
    with pytest.raises(ValueError, match="need 1 values"):
        SpaceNetSegmentationTask(
            backbone="resnet18",
            weights=str(path),
            in_channels=1,
            adapt_in_chans=True,
            mean=[0.2, 0.2],
            std=[0.1, 0.1],
        )


def test_forward_normalises_the_unit_interval_input() -> None:
    task = SpaceNetSegmentationTask(backbone="resnet18", mean=MEAN, std=STD).eval()
    x = torch.rand(1, 3, 64, 64)
    expected = task.model(
        (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    )
    assert torch.allclose(task(x), expected, atol=1e-5)
    assert task(x).shape == (1, 2, 64, 64)


def test_hparams_keep_the_downstream_arguments() -> None:
    task = SpaceNetSegmentationTask(backbone="resnet18", weights="random", mean=MEAN, std=STD)
    for key in ("weights", "backbone", "in_channels", "adapt_in_chans", "mean", "std", "model"):
        assert key in task.hparams, key
    assert task.hparams["weights"] == "random"
    for key in ("task", "num_classes", "num_labels", "num_filters"):  # fixed by this task
        assert key not in task.hparams
    assert task.task_name == "spacenet-seg"
    scheduler = task.configure_optimizers()["lr_scheduler"]
    assert scheduler["monitor"] == "val_miou"  # type: ignore[index]
    assert scheduler["scheduler"].mode == "max"  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "psanet"}, "model.model must be one of"),
        ({"loss": "jaccard"}, "model.loss must be"),
        ({"class_weights": [1.0]}, "class_weights needs 2 values"),
        ({"in_channels": 0}, "in_channels must be >= 1"),
    ],
)
def test_argument_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpaceNetSegmentationTask(backbone="resnet18", **kwargs)  # type: ignore[arg-type]


def test_focal_loss_and_class_weights_skip_padding() -> None:
    logits = torch.randn(2, 2, 8, 8)
    mask = torch.randint(0, 2, (2, 8, 8))
    mask[:, :, 6:] = IGNORE_INDEX
    for kwargs in ({"loss": "focal"}, {"class_weights": [0.3, 0.7]}):
        task = SpaceNetSegmentationTask(backbone="resnet18", **kwargs)
        loss = task.criterion(logits, mask)
        assert math.isfinite(float(loss))
        changed = logits.clone()
        changed[:, :, :, 6:] = 100.0  # the padded pixels' logits do not matter
        assert torch.allclose(task.criterion(changed, mask), loss)


# -------------------------------------------------------------------------------------------------
# training through LightningCLI
# -------------------------------------------------------------------------------------------------


def test_cli_fit_test_and_reload(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    cli = LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=[
            "--config",
            str(TINY),
            "--data.init_args.root",
            str(sn1.root),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
        save_config_callback=None,
    )
    assert isinstance(cli.model, SpaceNetSegmentationTask)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2
    assert "val_miou" in cli.trainer.callback_metrics
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    for name in ("test_miou", "test_building_iou", "test_building_f1", "test_loss"):
        assert math.isfinite(results[0][name]), name
    assert 0.0 <= results[0]["test_miou"] <= 1.0

    best = Path(cli.trainer.checkpoint_callback.best_model_path)  # type: ignore[union-attr]
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    assert checkpoint["geossl_task"] == "spacenet-seg"
    assert checkpoint["geossl_init_weights"]["kind"] == "random"
    reloaded = SpaceNetSegmentationTask.load_from_checkpoint(best, weights=FROM_CHECKPOINT)
    trained = SpaceNetSegmentationTask.load_from_checkpoint(best)  # resolves "random" again
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(x), trained.eval()(x), atol=1e-6)
    assert reloaded.init_weights_info == checkpoint["geossl_init_weights"]


def test_preset_parses_and_names_this_task(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    cli = LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=[
            "--config",
            str(PRESET),
            "--data.init_args.root",
            str(sn1.root),
            "--model.init_args.backbone",
            "resnet18",
            "--trainer.accelerator",
            "cpu",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ],
        run=False,
        save_config_callback=None,
    )
    assert isinstance(cli.model, SpaceNetSegmentationTask)
    assert cli.model.hparams["model"] == "unet"
    assert cli.datamodule.in_chans == 3


# -------------------------------------------------------------------------------------------------
# the real SpaceNet-4 pan tile
# -------------------------------------------------------------------------------------------------


def test_real_spacenet4_pan_tile_few_steps(
    exported: tuple[Path, dict[str, Tensor]], tmp_path: Path
) -> None:
    if not SN4.is_dir():
        pytest.skip(f"real SpaceNet-4 tile not available ({SN4} is absent)")
    tiles = SpaceNetTiles(pairs=[(SN4 / "sample_geotiff.tif", SN4 / "geotiff_labels.geojson")])
    stats = band_statistics(tiles)  # the pan band's own normalisation
    path, state = exported
    task = SpaceNetSegmentationTask(
        backbone="resnet18",
        weights=str(path),  # RGB weights on one band: explicit adaptation
        in_channels=1,
        adapt_in_chans=True,
        mean=list(stats.mean),
        std=list(stats.std),
        lr=1e-3,
    )
    assert torch.allclose(
        task.model.encoder.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True)
    )
    crops = _TrainTransform(64, augment=True, ignore_index=IGNORE_INDEX)
    tile = tiles[0]
    train: list[dict[str, Tensor]] = [
        crops({"image": tile["image"], "mask": tile["mask"]}) for _ in range(4)
    ]
    # evaluate on a 256 x 256 window with buildings (the whole 900 x 900 tile is slow on a CPU)
    window = {"image": tile["image"][:, 400:656, 0:256], "mask": tile["mask"][400:656, 0:256]}
    assert int(window["mask"].sum()) > 1000
    whole: list[dict[str, Tensor]] = [window]
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    train_loader: DataLoader[dict[str, Tensor]] = DataLoader(
        train,  # type: ignore[arg-type]
        batch_size=2,
        collate_fn=pad_collate,
    )
    test_loader: DataLoader[dict[str, Tensor]] = DataLoader(
        whole,  # type: ignore[arg-type]
        batch_size=1,
        collate_fn=pad_collate,
    )
    trainer.fit(task, train_dataloaders=train_loader)
    result = trainer.test(task, dataloaders=test_loader, verbose=False)[0]
    for name in ("test_miou", "test_building_iou", "test_building_f1", "test_loss"):
        assert math.isfinite(result[name]), name
    assert 0.0 <= result["test_miou"] <= 1.0
