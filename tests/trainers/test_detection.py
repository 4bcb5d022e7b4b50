"""XViewDetectionTask: trunk weights, no double normalisation, label shift, AP50, CLI fit + test."""

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from geossl.errors import NonFiniteLossError
from geossl.trainers.detection import XViewDetectionTask, build_detector, map_scalars
from geossl.trainers.downstream import FROM_CHECKPOINT
from geossl.weights import ExportedWeights, export_weights
from tests.pretrain_helpers import shared_tiny_checkpoint
from tests.xview_helpers import shared_xview_sample

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "xview_det_tiny.yaml"
PRESET = REPO / "configs" / "finetune" / "xview-det.yaml"


@pytest.fixture(scope="module")
def exported(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportedWeights:
    checkpoint = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    return export_weights(checkpoint, tmp_path_factory.mktemp("export"))


class StubDetector(nn.Module):
    """Returns fixed detections (eval) or fixed losses (train) and records its inputs."""

    def __init__(self, detections: list[dict[str, Tensor]], loss: float = 1.0) -> None:
        super().__init__()
        self.detections = detections
        self.loss = loss
        self.seen: list[Any] = []

    def forward(self, images: Tensor, targets: Any = None) -> Any:
        self.seen.append((images, targets))
        if self.training:
            return {"classification": torch.tensor(self.loss), "bbox_regression": torch.tensor(0.5)}
        return self.detections


def tiny_task(**kwargs: Any) -> XViewDetectionTask:
    return XViewDetectionTask(backbone="resnet18", **kwargs)


def batch_of(boxes: list[list[float]], labels: list[int], size: int = 64) -> dict[str, Any]:
    return {
        "image": torch.rand(1, 3, size, size),
        "bbox_xyxy": [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)],
        "label": [torch.tensor(labels, dtype=torch.long)],
    }


# ------------------------------------------------------------------------------------- model


def test_detector_transform_neither_resizes_nor_normalises() -> None:
    model = build_detector("retinanet", "resnet18", num_classes=60).eval()
    image = torch.rand(3, 128, 128) * 5 - 2  # not in [0, 1]: any rescaling would show
    transform: Any = model.transform
    images, _ = transform([image])
    assert images.image_sizes == [(128, 128)]
    torch.testing.assert_close(images.tensors[0], image, rtol=0, atol=0)
    big = torch.rand(3, 416, 416)
    assert transform([big])[0].image_sizes == [(416, 416)]


def test_unknown_model_or_backbone_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown detection model 'yolo'.*retinanet"):
        build_detector("yolo", "resnet18")
    with pytest.raises(ValueError, match=r"unknown detection backbone 'vit_b'.*resnet50"):
        build_detector("retinanet", "vit_b")


def test_random_trunk_trains_batch_norm_pretrained_trunk_freezes_it(
    exported: ExportedWeights,
) -> None:
    random_task = tiny_task()
    assert random_task.hparams["frozen_bn"] is False
    assert isinstance(random_task.model.backbone.body.bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in random_task.model.backbone.body.parameters())
    pretrained = tiny_task(weights=str(exported.weights))
    assert pretrained.hparams["frozen_bn"] is True
    assert isinstance(pretrained.model.backbone.body.bn1, FrozenBatchNorm2d)
    partial = tiny_task(trainable_layers=3)
    body = partial.model.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    frozen = tiny_task(freeze_backbone=True)
    assert not any(p.requires_grad for p in frozen.model.backbone.parameters())
    assert all(p.requires_grad for p in frozen.model.head.parameters())


def test_trunk_tensors_equal_the_exported_weights(exported: ExportedWeights) -> None:
    task = tiny_task(weights=str(exported.weights))
    want: dict[str, Tensor] = torch.load(exported.weights, map_location="cpu", weights_only=True)
    got = task.model.backbone.body.state_dict()
    want = {k: v for k, v in want.items() if not k.endswith("num_batches_tracked")}
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    mean, std = exported.meta.mean, exported.meta.std
    torch.testing.assert_close(task.get_buffer("input_mean").flatten(), torch.tensor(mean))
    torch.testing.assert_close(task.get_buffer("input_std").flatten(), torch.tensor(std))
    assert task.init_weights_info is not None
    assert task.init_weights_info["kind"] == "file"


def test_images_are_normalised_once_with_the_task_statistics() -> None:
    task = tiny_task(mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0]).eval()
    stub = StubDetector(
        [
            {
                "boxes": torch.zeros(0, 4),
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.long),
            }
        ]
    )
    task.model = stub
    image = torch.rand(2, 3, 16, 16)
    task.detect(image)
    seen = stub.seen[0][0]
    want = (image - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(seen, want)


def test_faster_rcnn_labels_are_shifted_past_the_background() -> None:
    task = tiny_task(model="faster-rcnn")
    assert task.model.roi_heads.box_predictor.cls_score.out_features == 61
    detections = [
        {
            "boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
        }
    ]
    task.model = StubDetector(detections)
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    task.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    batch = batch_of([[1, 1, 5, 5]], [0])
    task.train()
    task.training_step(batch, 0)
    assert int(task.model.seen[-1][1][0]["labels"][0]) == 1  # class 0 -> Faster R-CNN's 1
    task.eval()
    assert int(task.detect(batch["image"])[0]["labels"][0]) == 0
    retina = tiny_task()
    retina.model = StubDetector(detections)
    retina.eval()
    assert int(retina.detect(batch["image"])[0]["labels"][0]) == 1  # RetinaNet: no shift


def test_non_finite_loss_stops_before_the_backward_pass() -> None:
    task = tiny_task()
    task.model = StubDetector([], loss=math.nan)
    task.train()
    with pytest.raises(NonFiniteLossError, match="xview-det: non-finite loss"):
        task.training_step(batch_of([[1, 1, 5, 5]], [0]), 0)


def test_plateau_scheduler_maximises_val_map_50() -> None:
    task = tiny_task(trainable_layers=2, lr=1e-4, weight_decay=0.01)
    config: Any = task.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["monitor"] == "val_map_50"
    assert scheduler.mode == "max"
    group = config["optimizer"].param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-4, 0.01)
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    assert sum(p.numel() for p in group["params"]) == trainable


# ---------------------------------------------------------------------------------------- AP


def run_test_epoch(
    task: XViewDetectionTask, batch: dict[str, Any], preds: list[dict[str, Tensor]]
) -> dict[str, float]:
    logged: dict[str, float] = {}

    def log_dict(values: dict[str, Tensor], **kwargs: Any) -> None:
        logged.update({name: float(value) for name, value in values.items()})

    task.log_dict = log_dict  # type: ignore[method-assign,assignment]
    task.model = StubDetector(preds)
    task.eval()
    task.test_step(batch, 0)
    task.on_test_epoch_end()
    return logged


def test_ap50_perfect_predictions_score_one() -> None:
    boxes = [[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 15.0]]
    preds = [
        {
            "boxes": torch.tensor(boxes),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([3, 7]),
        }
    ]
    logged = run_test_epoch(tiny_task(), batch_of(boxes, [3, 7]), preds)
    assert logged["test_map_50"] == pytest.approx(1.0)
    assert logged["test_map"] == pytest.approx(1.0)


def test_ap50_of_shifted_boxes_has_the_known_value() -> None:
    truth = [[10.0, 10.0, 20.0, 20.0], [40.0, 40.0, 50.0, 50.0]]
    # box 1 shifted 2 px: IoU 8 / 12 = 0.67, a hit at 0.5, a miss at 0.75;
    # box 2 shifted 6 px: IoU 4 / 16 = 0.25, a false positive, and its object is missed
    preds = [
        {
            "boxes": torch.tensor([[12.0, 10.0, 22.0, 20.0], [46.0, 40.0, 56.0, 50.0]]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    logged = run_test_epoch(tiny_task(), batch_of(truth, [0, 0]), preds)
    # precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points
    assert logged["test_map_50"] == pytest.approx(51 / 101)
    assert logged["test_map_75"] == pytest.approx(0.0)
    # the task's metric averages the classes that have ground truth or predictions
    two_classes = [{**preds[0], "labels": torch.tensor([0, 1])}]
    logged = run_test_epoch(tiny_task(), batch_of(truth, [0, 1]), two_classes)
    assert logged["test_map_50"] == pytest.approx(0.5)  # class 0: AP 1, class 1: AP 0


def test_map_scalars_drops_the_class_lists() -> None:
    values = {
        "map": torch.tensor(0.5),
        "classes": torch.tensor([3]),
        "map_per_class": torch.tensor(-1.0),
    }
    assert set(map_scalars(values)) == {"map"}


# --------------------------------------------------------------------------------------- CLI


def test_fit_and_test_through_lightning_cli(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sample = shared_xview_sample(tmp_path_factory)
    cli = LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=[
            "--config",
            str(TINY),
            "--data.init_args.root",
            str(sample.root),
            "--data.init_args.cache_dir",
            str(tmp_path / "cache"),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ],
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    assert isinstance(cli.model, XViewDetectionTask)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"]))
    assert math.isfinite(float(metrics["train_classification"]))
    assert "val_map_50" in metrics
    callback = cli.trainer.checkpoint_callback
    assert callback is not None
    best = Path(getattr(callback, "best_model_path", ""))
    assert best.is_file()
    tested = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path=str(best), verbose=False
    )
    assert 0.0 <= tested[0]["test_map_50"] <= 1.0
    assert "test_map" in tested[0]

    saved = torch.load(best, map_location="cpu", weights_only=True)
    assert saved["geossl_task"] == "xview-det"
    assert saved["geossl_init_weights"]["kind"] == "random"
    reloaded = XViewDetectionTask.load_from_checkpoint(
        best, map_location="cpu", weights=FROM_CHECKPOINT
    )
    state = {k: v for k, v in saved["state_dict"].items()}
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert isinstance(reloaded.model.backbone.body.bn1, nn.BatchNorm2d)  # random: trained BN


def test_preset_parses_with_the_papers_recipe() -> None:
    import yaml

    config = yaml.safe_load(PRESET.read_text())
    model = config["model"]["init_args"]
    data = config["data"]["init_args"]
    assert config["model"]["class_path"] == "geossl.trainers.detection.XViewDetectionTask"
    assert (model["model"], model["backbone"], model["lr"], data["batch_size"]) == (
        "retinanet",
        "resnet50",
        1e-5,
        4,
    )
    assert (data["chip_size"], data["crops_per_image"], data["max_overlap"]) == (416, 100, 0.25)
    task = XViewDetectionTask(**{**model, "backbone": "resnet18"})
    assert task.hparams["trainable_layers"] == 5
