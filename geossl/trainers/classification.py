"""fMoW classification from a pretrained backbone: linear probe or full fine-tuning.

The protocols of the GeoSSL paper's fMoW table (Ayush et al., ICCV 2021, Table 1): a ResNet-50
pretrained without labels, then either a linear classifier on frozen features ("frozen") or the
whole network trained ("fine-tuned"), 62 categories, top-1 accuracy on fMoW val. The temporal
variant averages the backbone features of a location's acquisitions before the classifier.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
)

from geossl.datasets.fmow.constants import FMOW_CATEGORIES
from geossl.evaluation.classification import classification_report, report_metrics
from geossl.models.backbones import create_backbone, get_num_features
from geossl.trainers.downstream import DownstreamWeights
from geossl.trainers.schedule import warmup_cosine_scheduler
from geossl.transforms import functional as VF
from geossl.utils.checks import check_at_least, check_fraction, check_range

__all__ = ["FMoWClassificationTask"]

_MODES = ("finetune", "linear")
_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("cosine", "step", "constant")


class FMoWClassificationTask(DownstreamWeights, LightningModule):
    """Linear probe or fine-tuning of a pretrained backbone on fMoW's 62 categories.

    Model: ``logits = W mean_t f(x_t) + b``, with ``f`` the timm backbone's pooled features and
    the mean over the valid acquisitions ``t`` of a location (one image without ``temporal``).

    - ``mode="linear"``: ``f`` is frozen and kept in eval mode (batch-norm statistics included),
      only the linear layer trains (initialised N(0, 0.01), bias 0, as in MoCo's protocol).
    - ``mode="finetune"``: everything trains.

    Training batches get a random resized crop (scale ``[min_scale, 1]``) and horizontal and
    vertical flips, batched on the device; evaluation uses the images as served.

    Logged: ``{train,val,test}_loss``, ``{val,test}_top1``, ``{val,test}_top5`` (micro
    accuracy) and ``{val,test}_macro_f1`` (torchmetrics, macro over the classes present); after
    ``trainer.test``, `test_report` holds the per-class report and `test_confusion`
    the ``[K, K]`` confusion matrix.

    Args:
        backbone: timm architecture (``resnet50`` as in the paper).
        weights: ``random``, ``imagenet``, a torchgeo weights name or a weights file
            ([`geossl.weights.resolve`][geossl.weights.resolve]).
        in_channels: input bands.
        num_classes: classes (62 for fMoW).
        mode: ``"linear"`` or ``"finetune"``.
        optimizer: ``"sgd"`` (momentum) or ``"adamw"``.
        lr: learning rate (for the batch size of the config; not rescaled).
        momentum: SGD momentum.
        weight_decay: weight decay.
        lr_schedule: ``"cosine"`` (per step, after ``warmup_epochs`` of linear warm-up), ``"step"``
            (x0.1 at each of ``lr_milestones`` epochs) or ``"constant"``.
        lr_milestones: epochs of the ``step`` schedule.
        warmup_epochs: linear warm-up epochs of the cosine schedule.
        label_smoothing: cross-entropy label smoothing.
        augment: random resized crop and flips on training batches.
        min_scale: smallest crop area fraction of the random resized crop.
        adapt_in_chans: adapt the weights' first convolution to ``in_channels``.
        mean: per-band mean of ``[0, 1]`` inputs (default: the weights').
        std: per-band standard deviation (default: the weights').
        class_names: names of the classes in label order (default: fMoW's 62).

    Raises:
        ValueError: for invalid arguments, naming the ``model.<key>`` to fix.
    """

    task_name = "fmow-cls"

    def __init__(
        self,
        backbone: str = "resnet50",
        weights: str = "random",
        in_channels: int = 3,
        num_classes: int = 62,
        mode: str = "finetune",
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        lr_schedule: str = "cosine",
        lr_milestones: list[int] | None = None,
        warmup_epochs: int = 0,
        label_smoothing: float = 0.0,
        augment: bool = True,
        min_scale: float = 0.08,
        adapt_in_chans: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        checks = [
            (mode in _MODES, f"model.mode must be one of {list(_MODES)}, got {mode!r}"),
            (optimizer in _OPTIMIZERS, f"model.optimizer must be one of {list(_OPTIMIZERS)}"),
            (lr_schedule in _SCHEDULES, f"model.lr_schedule must be one of {list(_SCHEDULES)}"),
            (lr > 0 and math.isfinite(lr), f"model.lr must be positive, got {lr}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_range("model.weight_decay", weight_decay, low=0)
        check_at_least("model.num_classes", num_classes, 2)
        check_range("model.min_scale", min_scale, low=0, high=1, low_open=True)
        check_fraction("model.label_smoothing", label_smoothing, high_open=True)
        check_range("model.warmup_epochs", warmup_epochs, low=0)
        names = list(class_names) if class_names is not None else None
        if names is None and num_classes == len(FMOW_CATEGORIES):
            names = list(FMOW_CATEGORIES)
        if names is not None and len(names) != num_classes:
            raise ValueError(f"model.class_names has {len(names)} names for {num_classes} classes")
        self.class_names: list[str] = names or [f"class_{k}" for k in range(num_classes)]
        self.save_hyperparameters()
        self.test_report: dict[str, Any] | None = None
        self.test_confusion: Tensor | None = None
        self.configure_models()
        self.configure_metrics()

    def configure_models(self) -> None:
        """Build the backbone (weights loaded strictly), the classifier and the augmentation."""
        hp = self.hparams
        self.backbone = create_backbone(hp["backbone"], in_chans=hp["in_channels"])
        self.load_pretrained_trunk(
            self.backbone,
            weights=hp["weights"],
            backbone=hp["backbone"],
            in_channels=hp["in_channels"],
            adapt_in_chans=hp["adapt_in_chans"],
            mean=hp["mean"],
            std=hp["std"],
        )
        self.classifier = nn.Linear(get_num_features(self.backbone), hp["num_classes"])
        if hp["mode"] == "linear":
            nn.init.normal_(self.classifier.weight, std=0.01)
            nn.init.zeros_(self.classifier.bias)
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def configure_metrics(self) -> None:
        """top-1 / top-5 accuracy and macro F1 for val and test; for test, the report's metrics."""
        k = self.hparams["num_classes"]

        def collection(prefix: str) -> MetricCollection:
            return MetricCollection(
                {
                    "top1": MulticlassAccuracy(k, top_k=1, average="micro"),
                    "top5": MulticlassAccuracy(k, top_k=min(5, k), average="micro"),
                    "macro_f1": MulticlassF1Score(k, average="macro"),
                },
                prefix=prefix,
            )

        self.val_metrics = collection("val_")
        self.test_metrics = collection("test_")
        # Per-class scores and the confusion matrix (classification_report's torchmetrics).
        self.test_report_metrics = report_metrics(k)

    @property
    def linear(self) -> bool:
        """Whether the backbone is frozen (linear probe)."""
        return bool(self.hparams["mode"] == "linear")

    def train(self, mode: bool = True) -> "FMoWClassificationTask":
        """Switch train/eval mode, keeping a frozen backbone in eval mode (fixed BN statistics)."""
        super().train(mode)
        if self.linear:
            self.backbone.eval()
        return self

    def features(self, image: Tensor, views: Tensor | None = None) -> Tensor:
        """Backbone features of normalised images.

        Args:
            image: ``[B, C, H, W]``, or ``[B, T, C, H, W]`` (acquisitions of a location).
            views: ``bool [B, T]``, which acquisitions are real (all when None).

        Returns:
            ``[B, D]``: pooled features, averaged over the valid acquisitions.
        """
        if image.ndim == 4:
            return self._encode(image)
        b, t = image.shape[:2]
        flat = self._encode(image.flatten(0, 1)).view(b, t, -1)
        if views is None:
            return flat.mean(dim=1)
        weights = views.to(flat.dtype).unsqueeze(-1)  # [B, T, 1]
        return (flat * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def _encode(self, image: Tensor) -> Tensor:
        if self.linear:
            with torch.no_grad():
                return self.backbone(image).detach()  # type: ignore[no-any-return]
        return self.backbone(image)  # type: ignore[no-any-return]

    def forward(self, image: Tensor, views: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]`` of normalised ``image`` (see `features`)."""
        return self.classifier(self.features(image, views))  # type: ignore[no-any-return]

    def _augment(self, image: Tensor) -> Tensor:
        """Random resized crop and flips on ``[N, C, H, W]`` in ``[0, 1]`` (same output size).

        torchvision's ``RandomResizedCrop`` rule and both flips (p = 0.5 each), in one batched
        ``grid_sample`` with every draw on the device
        ([`geossl.transforms.functional`][geossl.transforms.functional]).
        """
        n, _, height, width = image.shape
        crops = VF.sample_resized_crops(
            n, height, width, (self.hparams["min_scale"], 1.0), device=image.device
        )
        flips = torch.rand((2, n), device=image.device) < 0.5  # [2, N] horizontal, vertical
        return VF.warp_views(image, crops, flips[0], (height, width), vflipped=flips[1])

    def _prepare(self, batch: dict[str, Tensor], train: bool) -> Tensor:
        """The batch's images as normalised floats, augmented in training."""
        image = batch["image"]
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        if train and self.hparams["augment"]:
            if image.ndim == 5:
                image = self._augment(image.flatten(0, 1)).view(image.shape)
            else:
                image = self._augment(image)
        return self.normalize(image)

    def _step(self, batch: dict[str, Tensor], train: bool) -> tuple[Tensor, Tensor]:
        logits = self(self._prepare(batch, train), batch.get("views"))
        loss = F.cross_entropy(
            logits, batch["label"], label_smoothing=self.hparams["label_smoothing"]
        )
        return loss, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on an augmented batch."""
        loss, _ = self._step(batch, train=True)
        batch_size = len(batch["label"])
        self.log("train_loss", loss, batch_size=batch_size)
        # Lightning turns every prog_bar value into a number at the end of every step (.item():
        # on a GPU the CPU would wait for the whole step). The bar's copy is read only on the
        # steps whose metrics Lightning's loggers read anyway.
        every = max(1, int(getattr(self._trainer, "log_every_n_steps", 1)))
        if self.global_step % every == 0:
            loss_on_host = loss.detach().cpu()
            self.log("loss", loss_on_host, batch_size=batch_size, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss and metrics on a validation batch."""
        loss, logits = self._step(batch, train=False)
        size = len(batch["label"])
        self.val_metrics.update(logits, batch["label"])
        self.log("val_loss", loss, batch_size=size)
        self.log_dict(self.val_metrics, batch_size=size, prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss, metrics and confusion matrix on a test batch."""
        loss, logits = self._step(batch, train=False)
        size = len(batch["label"])
        self.test_metrics.update(logits, batch["label"])
        self.test_report_metrics.update(logits, batch["label"])
        self.log("test_loss", loss, batch_size=size)
        self.log_dict(self.test_metrics, batch_size=size)

    def on_test_epoch_start(self) -> None:
        """Start a fresh report (scores and confusion matrix)."""
        self.test_report_metrics.reset()

    def on_test_epoch_end(self) -> None:
        """Keep the confusion matrix and the per-class report of this test run."""
        scores = self.test_report_metrics.compute()
        self.test_confusion = scores["confusion"].cpu()
        self.test_report = classification_report(scores, self.class_names)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities ``[B, num_classes]``."""
        logits = self(self._prepare(batch, train=False), batch.get("views"))
        probabilities: Tensor = logits.softmax(dim=-1)
        return probabilities

    def configure_optimizers(self) -> Any:
        """SGD or AdamW over the trainable parameters, with the configured schedule."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["lr_schedule"] == "constant":
            return optimizer
        if hp["lr_schedule"] == "step":
            milestones: Sequence[int] = hp["lr_milestones"] or []
            step = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": step, "interval": "epoch"},
            }
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        warmup = min(total - 1, round(total * float(hp["warmup_epochs"]) / epochs))
        # The pretraining schedule (torch's SequentialLR: linear warm-up, then cosine to 0).
        cosine = warmup_cosine_scheduler(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
