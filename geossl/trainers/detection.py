"""xView object detection: torchgeo's ObjectDetectionTask with geossl's pretrained trunks.

The GeoSSL paper (Ayush et al., ICCV 2021, section 5.2.1) fine-tunes **RetinaNet with a ResNet-50
FPN backbone**, the full network, with Adam at learning rate 1e-5 and batch 4 on 416 x 416 xView
chips, and reports **AP50** on 146 held-out images (random init 10.75, ImageNet 14.44, MoCo-v2
15.45, MoCo-v2+TP 17.65, MoCo-v2+Geo+TP 17.74).

[`XViewDetectionTask`][geossl.trainers.detection.XViewDetectionTask] is torchgeo's
`ObjectDetectionTask` with these changes, each for a reason:

- **Weights.** torchgeo only knows ImageNet (``weights=True``). Here the detector is built with
  random weights and the trunk (``model.backbone.body``, timm / torchvision ResNet keys) is filled
  strictly from ``--weights`` (``random``, ``imagenet``, a torchgeo name, a geossl export or
  checkpoint) by
  [`load_pretrained_trunk`][geossl.trainers.downstream.DownstreamWeights.load_pretrained_trunk].
- **Normalisation** happens once, in
  [`normalize`][geossl.trainers.downstream.DownstreamWeights.normalize] (the weights' mean / std on
  ``[0, 1]`` input); the detector's own ``GeneralizedRCNNTransform`` is torchgeo's
  ``GeneralizedRCNNTransformNoOp`` (mean 0, std 1, no resize), so 416 chips stay 416 and are not
  normalised twice.
- **Batch norm.** torchgeo always uses ``FrozenBatchNorm2d`` (affine with fixed statistics) for
  RetinaNet and Faster R-CNN, which freezes a *random* trunk at identity statistics. Here
  ``frozen_bn`` defaults to torchvision's rule: frozen for pretrained weights, trainable
  ``BatchNorm2d`` for ``random``. The resolved value is saved with the hyper-parameters so a
  checkpoint reloads with the same layers.
- **Trainable layers** default to 5 (all): the paper fine-tunes the full network (torchgeo: 3).
- **Optimiser:** torchgeo's AdamW + ReduceLROnPlateau, with ``weight_decay`` (default 0, i.e. the
  paper's Adam) and the plateau scheduler in ``mode="max"`` (torchgeo's uses ``"min"`` on a
  metric to maximise, so it would cut the rate while AP improves).
- **Metrics.** torchgeo computes mAP per batch (``metric(preds, target)``) and logs the batch
  mean, which is not the dataset's AP. Here predictions accumulate over the epoch and
  torchmetrics' `MeanAveragePrecision` (COCO protocol,
  pycocotools backend, boxes xyxy) is computed once: ``val_map_50``, ``val_map`` (and the other
  COCO numbers), ``test_map_50``, ``test_map``. ``val_map_50`` is the monitored metric.
- **Labels** are ``0..59``; Faster R-CNN reserves 0 for the background, so its labels are shifted
  by one inside the task (RetinaNet has no background class).

Models: ``retinanet`` (default; torchgeo's design: FPN P2-P7 with P6/P7 from C5, anchors 16-812
px in 3 scales x 3 ratios, GroupNorm head) and ``faster-rcnn`` (FPN P2-P6, anchors 16-256 px, one
octave smaller than torchgeo's 32-512 because xView objects are small: cars are 10-20 px at 0.3 m).
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar, Literal

import torch
import torchvision
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics.detection.mean_ap import MeanAveragePrecision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    LastLevelMaxPool,
    LastLevelP6P7,
)
from torchvision.ops.misc import FrozenBatchNorm2d

from geossl.datasets.xview import XVIEW_NUM_CLASSES
from geossl.errors import NonFiniteLossError
from geossl.trainers.downstream import DownstreamWeights
from geossl.utils.checks import check_range
from geossl.utils.torchgeo_tasks import (
    BACKBONE_LAT_DIM_MAP,
    GeneralizedRCNNTransformNoOp,
    ObjectDetectionTask,
)

__all__ = ["DETECTION_MODELS", "XViewDetectionTask", "build_detector", "map_scalars"]

#: Detector architectures :func:`build_detector` knows.
DETECTION_MODELS: tuple[str, ...] = ("retinanet", "faster-rcnn")

#: RetinaNet anchors per FPN level P2-P7 (torchgeo's: 3 scales an octave apart, from 16 px).
_RETINANET_ANCHORS: tuple[tuple[int, ...], ...] = (
    (16, 20, 25),
    (32, 40, 50),
    (64, 80, 101),
    (128, 161, 203),
    (256, 322, 406),
    (512, 645, 812),
)
#: Faster R-CNN anchors per FPN level P2-P6 (one size each, as torchvision's).
_FASTER_RCNN_ANCHORS: tuple[tuple[int, ...], ...] = ((16,), (32,), (64,), (128,), (256,))
_ASPECT_RATIOS = (0.5, 1.0, 2.0)
_FPN_CHANNELS = 256


def _trunk(backbone: str, in_channels: int, frozen_bn: bool, trainable_layers: int) -> nn.Module:
    """A torchvision ResNet without weights; layers beyond ``trainable_layers`` frozen."""
    norm: type[nn.Module] = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    trunk: nn.Module = torchvision.models.resnet.__dict__[backbone](weights=None, norm_layer=norm)
    if in_channels != 3:
        # torchvision's ResNet has no in_chans argument: a fresh first convolution with the same
        # geometry (the weights, when given, are loaded into it afterwards).
        first: nn.Conv2d = trunk.get_submodule("conv1")  # type: ignore[assignment]
        trunk.conv1 = nn.Conv2d(
            in_channels,
            first.out_channels,
            kernel_size=first.kernel_size,  # type: ignore[arg-type]
            stride=first.stride,  # type: ignore[arg-type]
            padding=first.padding,  # type: ignore[arg-type]
            bias=False,
        )
    # torchvision's rule (backbone_utils._resnet_fpn_extractor): the last ``trainable_layers`` of
    # conv1, layer1..layer4 train, bn1 too when all five do.
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trained.append("bn1")
    for name, parameter in trunk.named_parameters():
        if not name.startswith(tuple(trained)):
            parameter.requires_grad_(False)
    return trunk


def build_detector(
    model: str,
    backbone: str,
    *,
    in_channels: int = 3,
    num_classes: int = XVIEW_NUM_CLASSES,
    trainable_layers: int = 5,
    frozen_bn: bool = True,
    detections_per_img: int = 100,
) -> nn.Module:
    """A torchvision RetinaNet or Faster R-CNN on a ResNet-FPN, with random weights.

    The trunk is ``model.backbone.body`` (an ``IntermediateLayerGetter`` over conv1..layer4 with
    timm's ResNet keys); the transform is torchgeo's ``GeneralizedRCNNTransformNoOp`` (no
    normalisation, no resize: the caller normalises and the chips keep their size).

    Args:
        model: ``"retinanet"`` or ``"faster-rcnn"``.
        backbone: a torchvision ResNet name (``resnet18``, ``resnet50``, ...).
        in_channels: input bands.
        num_classes: object classes (without background; Faster R-CNN gets one more).
        trainable_layers: trunk stages that train, 0-5 (5: all, as in the paper).
        frozen_bn: ``FrozenBatchNorm2d`` (fixed statistics) instead of ``BatchNorm2d``.
        detections_per_img: detections kept per image after NMS.

    Returns:
        The detector (``forward(images, targets)`` returns losses in train mode, detections with
        ``boxes``, ``scores``, ``labels`` in eval mode).

    Raises:
        ValueError: on an unknown model or backbone, or a count out of range.
    """
    _check_detector_arguments(
        model, backbone, in_channels, num_classes, trainable_layers, detections_per_img
    )
    trunk = _trunk(backbone, in_channels, frozen_bn, trainable_layers)
    latent = BACKBONE_LAT_DIM_MAP[backbone]
    stages = [latent // 8, latent // 4, latent // 2, latent]  # C2..C5 channels
    return_layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    # RetinaNet adds P6/P7 from C5, Faster R-CNN a max-pooled level (torchvision's defaults).
    extra: ExtraFPNBlock = (
        LastLevelP6P7(latent, _FPN_CHANNELS) if model == "retinanet" else LastLevelMaxPool()
    )
    fpn = BackboneWithFPN(trunk, return_layers, stages, _FPN_CHANNELS, extra_blocks=extra)
    build = _retinanet if model == "retinanet" else _faster_rcnn
    detector = build(fpn, num_classes, detections_per_img)
    detector.transform = GeneralizedRCNNTransformNoOp()
    return detector


def _check_detector_arguments(
    model: str,
    backbone: str,
    in_channels: int,
    num_classes: int,
    trainable_layers: int,
    detections_per_img: int,
) -> None:
    """Refuse an unknown model or backbone, or a count out of range (see `build_detector`)."""
    if model not in DETECTION_MODELS:
        raise ValueError(f"unknown detection model {model!r}; valid: {list(DETECTION_MODELS)}")
    if backbone not in BACKBONE_LAT_DIM_MAP:
        raise ValueError(
            f"unknown detection backbone {backbone!r}; valid: {sorted(BACKBONE_LAT_DIM_MAP)}"
        )
    check_range("trainable_layers", trainable_layers, low=0, high=5)
    if num_classes < 1 or in_channels < 1 or detections_per_img < 1:
        raise ValueError(
            "num_classes, in_channels and detections_per_img must be >= 1, got "
            f"{num_classes}, {in_channels}, {detections_per_img}"
        )


def _retinanet(fpn: BackboneWithFPN, num_classes: int, detections_per_img: int) -> nn.Module:
    """RetinaNet on ``fpn`` with a GroupNorm head."""
    anchors = AnchorGenerator(_RETINANET_ANCHORS, (_ASPECT_RATIOS,) * len(_RETINANET_ANCHORS))
    head = RetinaNetHead(
        _FPN_CHANNELS,
        anchors.num_anchors_per_location()[0],
        num_classes,
        norm_layer=partial(nn.GroupNorm, 32),
    )
    detector: nn.Module = torchvision.models.detection.RetinaNet(
        fpn,
        num_classes,
        anchor_generator=anchors,
        head=head,
        detections_per_img=detections_per_img,
    )
    return detector


def _faster_rcnn(fpn: BackboneWithFPN, num_classes: int, detections_per_img: int) -> nn.Module:
    """Faster R-CNN on ``fpn`` with a 7 x 7 RoIAlign box head."""
    anchors = AnchorGenerator(_FASTER_RCNN_ANCHORS, (_ASPECT_RATIOS,) * len(_FASTER_RCNN_ANCHORS))
    roi_pool = MultiScaleRoIAlign(
        featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2
    )
    detector: nn.Module = torchvision.models.detection.FasterRCNN(
        fpn,
        num_classes + 1,  # + background (label 0)
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_detections_per_img=detections_per_img,
    )
    return detector


def map_scalars(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """The scalar entries of a `MeanAveragePrecision` result (no class lists)."""
    return {
        name: value.float()
        for name, value in values.items()
        if "classes" not in name and "per_class" not in name and value.numel() == 1
    }


def _make_map(max_detections: int, class_metrics: bool) -> MeanAveragePrecision:
    """COCO mAP of xyxy pixel boxes (pycocotools), up to ``max_detections`` per chip."""
    return MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        backend="pycocotools",
        class_metrics=class_metrics,
        max_detection_thresholds=[1, 10, max_detections],
    )


class XViewDetectionTask(DownstreamWeights, ObjectDetectionTask):
    """Fine-tune a RetinaNet / Faster R-CNN on xView from geossl weights (see the module doc).

    Batches: ``image`` float ``[B, C, H, W]`` in ``[0, 1]``, ``bbox_xyxy`` a list of ``[N_i, 4]``
    pixel boxes, ``label`` a list of ``[N_i]`` classes ``0..num_classes-1``
    ([`geossl.datamodules.xview.XViewDataModule`][geossl.datamodules.xview.XViewDataModule]).

    Args:
        model: ``"retinanet"`` (the paper's) or ``"faster-rcnn"``.
        backbone: ResNet architecture (paper: ``resnet50``).
        weights: ``random``, ``imagenet``, a torchgeo weights name, a geossl weights file or
            checkpoint
            ([`geossl.weights.resolve_init_weights`][geossl.weights.resolve_init_weights]), or
            ``checkpoint`` when reloading a trained model.
        in_channels: input bands (3 for xView).
        num_classes: object classes (60 for xView), without background.
        trainable_layers: trunk stages that train, 0-5 (paper: the full network, 5).
        lr: learning rate (paper: 1e-5).
        patience: epochs without ``val_map_50`` gain before the rate is cut by 10.
        freeze_backbone: freeze the trunk and the FPN (train the heads only).
        adapt_in_chans: adapt the first convolution of weights with another band count.
        mean: per-band mean of the ``[0, 1]`` input (default: the weights').
        std: per-band standard deviation (default: the weights').
        frozen_bn: frozen batch-norm statistics; None = frozen unless ``weights="random"``.
        weight_decay: AdamW weight decay (paper: 0, plain Adam).
        detections_per_img: detections kept per chip, and the mAP's detection limit (COCO: 100).
        class_metrics: also compute per-class AP (slower; logged only as the overall numbers).

    Raises:
        ValueError: on an unknown model or backbone, or weights that do not fit.
    """

    task_name: ClassVar[str] = "xview-det"
    monitor = "val_map_50"
    mode = "max"

    def __init__(
        self,
        model: Literal["retinanet", "faster-rcnn"] = "retinanet",
        backbone: str = "resnet50",
        weights: str = "random",
        in_channels: int = 3,
        num_classes: int = XVIEW_NUM_CLASSES,
        trainable_layers: int = 5,
        lr: float = 1e-5,
        patience: int = 10,
        freeze_backbone: bool = False,
        adapt_in_chans: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        frozen_bn: bool | None = None,
        weight_decay: float = 0.0,
        detections_per_img: int = 100,
        class_metrics: bool = False,
    ) -> None:
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        super().__init__(
            model=model,
            backbone=backbone,
            weights=None,  # torchgeo's own (ImageNet) loading stays off; see configure_models
            in_channels=in_channels,
            num_classes=num_classes,
            trainable_layers=trainable_layers,
            lr=lr,
            patience=patience,
            freeze_backbone=freeze_backbone,
        )

    @property
    def label_offset(self) -> int:
        """1 for Faster R-CNN (label 0 is its background), else 0."""
        return 1 if self.hparams["model"] == "faster-rcnn" else 0

    def configure_models(self) -> None:
        """Build the detector with random weights and load the trunk from ``weights``."""
        hp = self.hparams
        if hp["frozen_bn"] is None:
            # Resolved into the hyper-parameters (which the checkpoint saves), so a reload with
            # weights="checkpoint" builds the same layers. Not in __init__: under LightningCLI,
            # save_hyperparameters records the parsed config, not the constructor's locals.
            hp["frozen_bn"] = hp["weights"] != "random"
        self.model = build_detector(
            hp["model"],
            hp["backbone"],
            in_channels=hp["in_channels"],
            num_classes=hp["num_classes"],
            trainable_layers=hp["trainable_layers"],
            frozen_bn=hp["frozen_bn"],
            detections_per_img=hp["detections_per_img"],
        )
        self.load_pretrained_trunk(
            self.model.backbone.body,
            weights=hp["weights"],
            backbone=hp["backbone"],
            in_channels=hp["in_channels"],
            adapt_in_chans=hp["adapt_in_chans"],
            mean=hp["mean"],
            std=hp["std"],
        )
        if hp["freeze_backbone"]:
            self.model.backbone.requires_grad_(False)

    def configure_metrics(self) -> None:
        """COCO mAP for validation and test, accumulated over the epoch."""
        limit = self.hparams["detections_per_img"]
        self.val_map_metric = _make_map(limit, self.hparams["class_metrics"])
        self.test_map_metric = _make_map(limit, self.hparams["class_metrics"])

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW (weight decay ``weight_decay``) and ReduceLROnPlateau on ``val_map_50`` (max).

        Returns:
            The optimiser and the scheduler.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = AdamW(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        scheduler = ReduceLROnPlateau(optimizer, mode="max", patience=self.hparams["patience"])
        return {
            "optimizer": optimizer,
            # not strict: epochs without validation (check_val_every_n_epoch > 1) skip the update
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "strict": False},
        }

    def _targets(self, batch: dict[str, Any], offset: int = 0) -> list[dict[str, Tensor]]:
        return [
            {"boxes": boxes.float().reshape(-1, 4), "labels": labels.long() + offset}
            for boxes, labels in zip(batch["bbox_xyxy"], batch["label"], strict=True)
        ]

    def detect(self, image: Tensor) -> list[dict[str, Tensor]]:
        """Detections of a batch of ``[0, 1]`` images (eval mode), labels ``0..num_classes-1``.

        Args:
            image: ``[B, C, H, W]`` in ``[0, 1]``.

        Returns:
            Per image ``boxes`` ``[K, 4]`` (pixels, xyxy), ``scores`` ``[K]``, ``labels`` ``[K]``.
        """
        detections: list[dict[str, Tensor]] = self.model(self.normalize(image))
        offset = self.label_offset
        return [{**d, "labels": d["labels"] - offset} for d in detections] if offset else detections

    def training_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Detector losses on a batch; logs ``train_loss`` and each term.

        Raises:
            NonFiniteLossError: when a loss is NaN or infinite (before the backward pass).
        """
        image = batch["image"]
        batch_size = image.shape[0]
        losses: dict[str, Tensor] = self.model(
            self.normalize(image), self._targets(batch, self.label_offset)
        )
        loss = torch.stack(list(losses.values())).sum()
        if not torch.isfinite(loss):
            terms = {k: float(v) for k, v in losses.items()}
            raise NonFiniteLossError(
                f"{self.task_name}: non-finite loss at step {self.global_step}: {terms}"
            )
        self.log("train_loss", loss, batch_size=batch_size, prog_bar=True)
        self.log_dict({f"train_{k}": v for k, v in losses.items()}, batch_size=batch_size)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate the batch's detections into the validation mAP."""
        self.val_map_metric.update(self.detect(batch["image"]), self._targets(batch))

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate the batch's detections into the test mAP."""
        self.test_map_metric.update(self.detect(batch["image"]), self._targets(batch))

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> list[dict[str, Tensor]]:
        """Detections of a batch (labels ``0..num_classes-1``)."""
        return self.detect(batch["image"])

    def _log_map(self, metric: MeanAveragePrecision, prefix: str) -> None:
        if metric.update_count == 0:  # e.g. an empty split: nothing to score
            return
        values = map_scalars(metric.compute())
        metric.reset()
        self.log_dict({f"{prefix}{k}": v for k, v in values.items()}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Log ``val_map_50``, ``val_map`` and the other COCO numbers of the epoch."""
        self._log_map(self.val_map_metric, "val_")

    def on_test_epoch_end(self) -> None:
        """Log ``test_map_50``, ``test_map`` and the other COCO numbers."""
        self._log_map(self.test_map_metric, "test_")
