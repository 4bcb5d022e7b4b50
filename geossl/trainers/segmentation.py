"""SpaceNet building segmentation: a torchgeo SemanticSegmentationTask with a geossl trunk.

The GeoSSL paper (Ayush et al., ICCV 2021) fine-tunes PSANet with a ResNet-50 backbone
on SpaceNet-1 and reports the mean IoU over the two classes (background, building): random
74.93, ImageNet 75.23, MoCo-v2 78.05, MoCo-v2 + TP 78.48. PSANet is neither in torchgeo nor in
segmentation_models_pytorch; the default here is U-Net (torchgeo's default; its decoder reads all
five stages of the encoder, so every pretrained tensor matters), with DeepLabV3+ (dilated ResNet,
ASPP, the closest in spirit to PSANet's dilated ResNet-50 with a context module) and PSPNet as
options. Numbers are therefore comparable between weights, not to the paper's absolute values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import segmentation_models_pytorch as smp
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    MulticlassAccuracy,
    MulticlassJaccardIndex,
)

from geossl.datasets.spacenet.constants import IGNORE_INDEX
from geossl.trainers.downstream import DownstreamWeights
from geossl.utils.checks import check_at_least
from geossl.utils.torchgeo_tasks import SemanticSegmentationTask

__all__ = ["NUM_CLASSES", "SEGMENTATION_MODELS", "SpaceNetSegmentationTask", "segmentation_metrics"]

#: Background (0) and building (1).
NUM_CLASSES = 2

#: Decoders: smp architectures that take a timm-key ResNet encoder.
SEGMENTATION_MODELS = ("unet", "deeplabv3+", "pspnet")

#: smp's PSPNet uses the encoder up to this stage (``encoder_depth=3``, output stride 8).
_PSPNET_DEPTH = 3


def segmentation_metrics(ignore_index: int | None = IGNORE_INDEX) -> MetricCollection:
    r"""The SpaceNet metrics, on predicted labels ``[B, H, W]`` (argmax of the logits).

    Every metric accumulates a confusion count over the whole epoch (all pixels of all chips)
    and computes once, so a chip without buildings does not count as a 0 or 1 on its own.
    Pixels whose target equals ``ignore_index`` (padding) are left out. With TP, FP, FN counted
    for class c over the epoch:

    - ``miou``: $\frac{1}{2} \sum_{c \in \{0, 1\}} \frac{TP_c}{TP_c + FP_c + FN_c}$,
      the mean IoU over background and building, the GeoSSL paper's SpaceNet metric
      (torchmetrics ``MulticlassJaccardIndex(average="macro")``; a class absent from both target
      and prediction is left out of the mean). torchgeo's own ``JaccardIndex`` uses
      ``average="micro"`` ($\sum_c TP_c / \sum_c (TP_c + FP_c + FN_c)$, dominated by the
      background): not the paper's number.
    - ``building_iou``: $TP_1 / (TP_1 + FP_1 + FN_1)$ (``BinaryJaccardIndex``; 0 when there
      is no building in target and prediction).
    - ``building_f1``: the pixel F1 of the building class,
      $2 TP_1 / (2 TP_1 + FP_1 + FN_1)$ (``BinaryF1Score``). Not the SpaceNet challenge's F1, which
      matches polygons at IoU >= 0.5.
    - ``pixel_accuracy``: correct pixels / pixels (``MulticlassAccuracy(average="micro")``).

    Args:
        ignore_index: target value to leave out (None: none).

    Returns:
        A `MetricCollection` called as ``metrics(pred_labels, target)``.
    """
    # validate_args=False: the inputs are argmax labels and masks of 0 / 1 / ignore_index by
    # construction, and the validation runs torch.unique on every batch (a device sync on GPU)
    common: dict[str, Any] = {"ignore_index": ignore_index, "validate_args": False}
    return MetricCollection(
        {
            "miou": MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="macro", **common),
            "building_iou": BinaryJaccardIndex(**common),
            "building_f1": BinaryF1Score(**common),
            "pixel_accuracy": MulticlassAccuracy(
                num_classes=NUM_CLASSES, average="micro", **common
            ),
        }
    )


class SpaceNetSegmentationTask(DownstreamWeights, SemanticSegmentationTask):
    """Building segmentation (2 classes) with a strictly loaded pretrained encoder.

    The model is an smp ``Unet`` / ``DeepLabV3Plus`` / ``PSPNet`` built without weights; its
    encoder (smp's ResNet, timm's keys) then receives ``weights`` through
    [`load_pretrained_trunk`][geossl.trainers.downstream.DownstreamWeights.load_pretrained_trunk],
    strictly (every encoder tensor from the weights, or an error). torchgeo's own ``weights``
    handling reads only a weights enum or a Lightning checkpoint (``extract_backbone``: a bare
    ``.pth`` or a geossl export raises ``KeyError``), cannot adapt the band count and ignores the
    weights' normalisation, hence this class. With ``pspnet`` (smp's defaults: encoder_depth 3,
    upsampling 8) stages ``layer3`` / ``layer4`` are loaded but unused, and frozen so that DDP sees
    no unused trainable parameters.

    Input: ``image`` float ``[B, C, H, W]`` in ``[0, 1]`` (H, W multiples of 32 for unet /
    deeplabv3+, of 8 for pspnet);
    [`forward`][geossl.trainers.segmentation.SpaceNetSegmentationTask.forward] normalises it with
    ``mean`` / ``std`` (the weights' own when not given; per-band statistics of the data, e.g.
    [`band_statistics`][geossl.datasets.spacenet.stats.band_statistics], for a pan band with RGB
    weights).
    Output: logits ``[B, 2, H, W]``. ``mask`` is int64 ``[B, H, W]`` with 0 / 1 and
    ``ignore_index`` on padding.

    Logged: ``train_loss``, ``{train,val,test}_{miou,building_iou,building_f1,pixel_accuracy}``
    ([`segmentation_metrics`][geossl.trainers.segmentation.segmentation_metrics]), ``val_loss``,
    ``test_loss``. Optimiser: AdamW with ``ReduceLROnPlateau`` on ``val_miou`` (`monitor`,
    maximised).

    Args:
        model: ``"unet"`` (default), ``"deeplabv3+"`` or ``"pspnet"``.
        backbone: timm / smp ResNet name (``resnet50`` as in the paper; ``resnet18`` for tests).
        weights: ``random``, ``imagenet``, a torchgeo weights name, a weights file
            ([`geossl.weights.resolve`][geossl.weights.resolve]), or ``"checkpoint"`` when reloading
            a trained model.
        in_channels: bands of the images.
        adapt_in_chans: allow weights with another band count (first convolution adapted by
            [`adapt_first_conv`][geossl.weights.adapt_first_conv]: the kernels summed for 1 band,
            repeated and scaled by 3 / N for N bands); ``mean`` / ``std`` must then be given.
        mean: per-band mean of the ``[0, 1]`` input (default: the weights').
        std: per-band standard deviation of the ``[0, 1]`` input (default: the weights').
        loss: ``"ce"`` (cross-entropy) or ``"focal"`` (smp's FocalLoss); both skip
            ``ignore_index``.
        class_weights: cross-entropy weights of background and building.
        ignore_index: mask value left out of the loss and metrics (padding); None for none.
        lr: AdamW learning rate.
        patience: ReduceLROnPlateau patience (epochs).
        freeze_backbone: freeze the encoder (decoder-only fine-tuning).
        freeze_decoder: freeze the decoder (head-only fine-tuning).

    Raises:
        ValueError: on an unknown model or loss, wrong ``class_weights`` length, or a weights
            problem (band mismatch without ``adapt_in_chans``, key / shape mismatch, unknown
            normalisation).
    """

    task_name: ClassVar[str] = "spacenet-seg"
    monitor = "val_miou"
    mode = "max"

    #: Keep every constructor argument in ``hparams`` (torchgeo drops ``weights``, which may be a
    #: WeightsEnum there; here it is a string and reloading needs it), but not the arguments of
    #: torchgeo's constructor that this one fixes: load_from_checkpoint passes hparams back here.
    ignore: Sequence[str] | str | None = ("task", "num_classes", "num_labels", "num_filters")

    def __init__(
        self,
        model: Literal["unet", "deeplabv3+", "pspnet"] = "unet",
        backbone: str = "resnet50",
        weights: str = "random",
        in_channels: int = 3,
        adapt_in_chans: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        loss: Literal["ce", "focal"] = "ce",
        class_weights: list[float] | None = None,
        ignore_index: int | None = IGNORE_INDEX,
        lr: float = 1e-3,
        patience: int = 10,
        freeze_backbone: bool = False,
        freeze_decoder: bool = False,
    ) -> None:
        if model not in SEGMENTATION_MODELS:
            raise ValueError(
                f"model.model must be one of {list(SEGMENTATION_MODELS)}, got {model!r}"
            )
        if loss not in ("ce", "focal"):
            raise ValueError(f"model.loss must be 'ce' or 'focal', got {loss!r}")
        if class_weights is not None and len(class_weights) != NUM_CLASSES:
            raise ValueError(
                f"model.class_weights needs {NUM_CLASSES} values (background, building), "
                f"got {class_weights}"
            )
        check_at_least("model.in_channels", in_channels, 1)
        super().__init__(
            model=cast(Any, model),  # torchgeo's Literal has no "pspnet"; configure_models does
            backbone=backbone,
            weights=weights,
            in_channels=in_channels,
            task="multiclass",
            num_classes=NUM_CLASSES,
            loss=cast(Any, loss),
            class_weights=class_weights,
            ignore_index=ignore_index,
            lr=lr,
            patience=patience,
            freeze_backbone=freeze_backbone,
            freeze_decoder=freeze_decoder,
        )

    # ---------------------------------------------------------------------------------------------
    # configuration
    # ---------------------------------------------------------------------------------------------

    def configure_models(self) -> None:
        """Build the smp model without weights, then load ``weights`` into its encoder strictly."""
        name: str = self.hparams["model"]
        backbone: str = self.hparams["backbone"]
        in_channels: int = self.hparams["in_channels"]
        common: dict[str, Any] = {
            "encoder_name": backbone,
            "encoder_weights": None,
            "in_channels": in_channels,
            "classes": NUM_CLASSES,
        }
        if name == "unet":
            self.model = smp.Unet(**common)
        elif name == "deeplabv3+":
            self.model = smp.DeepLabV3Plus(**common)
        else:
            self.model = smp.PSPNet(encoder_depth=_PSPNET_DEPTH, **common)
        encoder: nn.Module = self.model.encoder
        self.load_pretrained_trunk(
            encoder,
            weights=str(self.hparams["weights"]),
            backbone=backbone,
            in_channels=in_channels,
            adapt_in_chans=bool(self.hparams["adapt_in_chans"]),
            mean=self.hparams["mean"],
            std=self.hparams["std"],
        )
        if name == "pspnet":  # stages PSPNet's forward never reaches
            for stage in ("layer3", "layer4"):
                for param in getattr(encoder, stage).parameters():
                    param.requires_grad = False
        if self.hparams["freeze_backbone"]:
            for param in encoder.parameters():
                param.requires_grad = False
        if self.hparams["freeze_decoder"]:
            for param in self.model.decoder.parameters():
                param.requires_grad = False

    def configure_losses(self) -> None:
        """Cross-entropy (optionally class-weighted) or focal loss, skipping ``ignore_index``."""
        ignore_index: int | None = self.hparams["ignore_index"]
        if self.hparams["loss"] == "focal":
            self.criterion: nn.Module = smp.losses.FocalLoss(
                mode="multiclass", ignore_index=ignore_index, normalized=True
            )
            return
        weights = self.hparams["class_weights"]
        self.criterion = nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
            ignore_index=ignore_index if ignore_index is not None else -100,
        )

    def configure_metrics(self) -> None:
        """`segmentation_metrics` for train, val and test."""
        metrics = segmentation_metrics(self.hparams["ignore_index"])
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW (``lr``) and ReduceLROnPlateau on ``val_miou`` (max, ``patience`` epochs).

        Returns:
            The optimiser and the scheduler.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = AdamW(params, lr=self.hparams["lr"])
        scheduler = ReduceLROnPlateau(optimizer, mode="max", patience=self.hparams["patience"])
        return {
            "optimizer": optimizer,
            # not strict: a run without a validation split (data.val_fraction=0) or epochs without
            # validation keep the learning rate instead of failing at the epoch end
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "strict": False},
        }

    # ---------------------------------------------------------------------------------------------
    # steps
    # ---------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, 2, H, W]`` of ``[0, 1]`` images ``[B, C, H, W]`` (normalised here)."""
        logits: Tensor = self.model(self.normalize(x))
        return logits

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        image, mask = batch["image"], batch["mask"].long()
        batch_size = image.shape[0]
        logits = self(image)
        loss: Tensor = self.criterion(logits, mask)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        metrics(logits.argmax(dim=1), mask)
        self.log(f"{stage}_loss", loss, batch_size=batch_size)
        self.log_dict(metrics, batch_size=batch_size)
        return loss

    def training_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Loss of a training batch; logs ``train_loss`` and the training metrics."""
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Logs ``val_loss`` and ``val_miou`` etc."""
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Logs ``test_loss``, ``test_miou``, ``test_building_iou``, ``test_building_f1`` etc."""
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities ``[B, 2, H, W]``."""
        probabilities: Tensor = self(batch["image"]).softmax(dim=1)
        return probabilities
