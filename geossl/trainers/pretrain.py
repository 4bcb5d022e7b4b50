"""GeoSSLTask: MoCo-v2 with temporal positives and the geo-location pretext, as loss terms.

One LightningModule trains every recipe of Geography-aware SSL (Ayush et al., ICCV 2021,
https://arxiv.org/abs/2011.09980): ``losses={"moco": 1}`` is MoCo-v2, ``{"tp": 1}`` uses temporal
positives, ``{"moco": 1, "geo": 1}`` adds the geo-location pretext, ``{"tp": 1, "geo": 1}`` (the
default) is the paper's full method. Each key of ``losses`` names a registered :class:`LossTerm`.

How a step works (:meth:`GeoSSLTask.training_step`):

1. EMA-update the key encoder (and every term's own EMA parts) with ``momentum``.
2. Draw the augmented views the active terms ask for: ``"query"`` (view 0), ``"same"`` (another
   augmentation of view 0) and ``"temporal"`` (view 1, the other acquisition), see
   :data:`VIEW_SOURCES`.
3. Encode them once into :class:`StepOutputs`: query-encoder outputs (``q_raw``, ``q``), key-encoder
   outputs under shuffle-BN (``keys``), a snapshot of the queue (``negatives``), backbone feature
   maps and crop/flip parameters when a term needs them.
4. Every term reads what it needs and returns a :class:`TermOutput`; the total is the weighted sum.
5. Stop with :class:`NonFiniteLossError` if a term's loss (or the total) is NaN / Inf, before any
   gradient reaches the weights (checked every ``nan_check_every_n_steps`` steps).
6. Enqueue the keys of the first queue-based term, log, return the total.

Adding a term (CO2, SCRL) is a new :class:`LossTerm` subclass registered with
:func:`register_loss_term`; the task does not change. A term's own options (e.g. CO2's
temperature) come through ``loss_options={name: {option: value}}`` and reach the term as
``LossTermContext.options``.
"""

import copy
import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightning import LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn

from geossl.errors import NonFiniteLossError
from geossl.models import (
    KeyQueue,
    check_backbone_name,
    create_backbone,
    forward_feature_map,
    get_num_features,
    pool_feature_map,
)
from geossl.models.init import adapt_first_conv
from geossl.models.weights import load_state_dict_strict, read_weights
from geossl.trainers.callbacks import TrainingHealthMonitor
from geossl.trainers.terms import (
    DEFAULT_LOSSES,
    VIEW_SOURCES,
    EncoderOutput,
    LossOptionValue,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
    create_loss_term,
    get_loss_term,
    list_loss_terms,
    resolve_loss_options,
)
from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD, GeoSSLAugmentation, ViewParams
from geossl.utils import batch_shuffle, batch_unshuffle, world_size

__all__ = ["NORMALIZATIONS", "GeoSSLTask", "WarmupCosineSchedule"]

#: Values of ``model.normalization`` (see :class:`GeoSSLTask`).
NORMALIZATIONS = ("auto", "imagenet", "data")


def _rounded(values: list[float]) -> list[float]:
    """Values with 4 significant digits, for messages (the hyper-parameters keep them all)."""
    return [float(f"{v:.4g}") for v in values]


def _run_encoder(
    backbone: nn.Module, head: nn.Module, x: Tensor, feature_map: bool, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One encoder on a view: ``(features [B, F], projection [B, D], embedding [B, D], map)``.

    A free function of tensors and modules (no ``self``), so that ``torch.compile`` can trace it
    once for every task (see :func:`_compiled_encoder`); the embedding is float32 and unit-norm,
    the map is ``[B, F, h, w]`` when ``feature_map`` is true, else ``None``.
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fmap: Tensor | None = None
    if feature_map:
        fmap = forward_feature_map(backbone, x)  # [B, F, h, w]
        features = pool_feature_map(backbone, fmap)  # [B, F]
    else:
        features = backbone(x)  # [B, F]
    projection: Tensor = head(features)  # [B, D]
    embedding = F.normalize(projection.float(), dim=1)  # [B, D] float32
    return features, projection, embedding, fmap


_EncoderFn = Callable[
    [nn.Module, nn.Module, Tensor, bool, bool], tuple[Tensor, Tensor, Tensor, Tensor | None]
]


@functools.cache
def _compiled_encoder() -> _EncoderFn:
    """:func:`_run_encoder` through ``torch.compile``, created once (``model.compile``).

    Dynamo specialises on the modules (query / key encoder), the flags, the grad mode and the
    autocast state, so one compiled function serves every task in the process.
    """
    return cast(_EncoderFn, torch.compile(_run_encoder))


@dataclass(frozen=True)
class WarmupCosineSchedule:
    r"""Learning-rate factor: linear warm-up, then cosine annealing to 0 (per optimiser step).

    .. math::

        f(s) = \begin{cases} (s + 1) / W & s < W \\
        \tfrac12 \left(1 + \cos\left(\pi \min\left(1, \frac{s - W}{T - W}\right)\right)
        \right) & s \ge W \end{cases}

    MoCo-v2 / GeoSSL anneal with a cosine over the whole run (no warm-up); geossl steps it per
    optimiser step rather than per epoch.

    Attributes:
        warmup_steps: :math:`W`.
        total_steps: :math:`T`.
    """

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        """Factor for ``step``.

        Args:
            step: optimiser steps done.

        Returns:
            The multiplier of the base learning rate.
        """
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class GeoSSLTask(LightningModule):
    """Geography-aware self-supervised pretraining (MoCo-v2 + TP + Geo; CO2 / SCRL as terms).

    Query encoder: timm backbone + ``MoCoProjectionHead(num_features, proj_hidden_dim, proj_dim)``
    (MoCo-v2's 2-layer MLP, 2048 -> 2048 -> 128 for ResNet-50). Key encoder: a deep copy, never
    trained, EMA-updated with ``momentum`` at every step before the keys are computed, run with
    shuffle-BN. Negatives: a :class:`KeyQueue` of ``queue_size`` keys (a persistent buffer, all-
    gathered across ranks under DDP). Views: :class:`GeoSSLAugmentation` on the device.

    Defaults are the GeoSSL paper's (REFERENCE.md 1): ResNet-50, T = 0.02, m = 0.999, K = 65,536,
    SGD lr 0.03 (total batch 256) momentum 0.9 wd 1e-4, cosine schedule, 224 px, TP + Geo.

    Args:
        backbone: timm model name.
        in_chans: number of input bands.
        losses: loss term name -> weight (see :func:`list_loss_terms`); ``None`` means
            ``{"tp": 1.0, "geo": 1.0}``. Terms with weight 0 are not built nor computed.
            E.g. ``{"tp": 1, "co2": 10}`` is TP with CO2 at its (unverified) alpha = 10.
        loss_options: loss term name -> {option: value} for terms with options of their own (each
            term's ``default_options`` lists them), e.g. ``{"co2": {"temperature": 0.04}}``.
            ``None`` keeps every default. Options of a term that is not active are checked (known
            names, finite numbers), then ignored with a warning.
        num_geo_clusters: number of geo clusters of ``batch["geo_label"]`` (100).
        queue_size: number of negatives in the queue (65,536).
        temperature: InfoNCE temperature (0.02, GeoSSL; MoCo-v2 uses 0.2).
        momentum: key-encoder EMA momentum in [0, 1) (0.999).
        proj_hidden_dim: projection MLP hidden size (2048).
        proj_dim: projection size (128).
        shuffle_bn: shuffle the key encoder's batch (across ranks under DDP) to avoid BN leakage.
        crop_size: side of the augmented views (224).
        min_scale: smallest RandomResizedCrop area fraction (0.2).
        mean: per-band normalisation mean of ``[0, 1]`` inputs; ``None``: from ``normalization``.
            Given values are used as they are (a checkpoint records the statistics a run used
            here, so loading it reproduces them).
        std: per-band normalisation std, like ``mean`` (give both or neither, except that with 3
            bands a missing one is ImageNet's unless ``normalization="data"``).
        normalization: where ``mean`` / ``std`` come from when they are ``None``: ``"auto"``
            (default) ImageNet's for 3 bands (RGB, what RGB weights expect), the data's for any
            other band count; ``"imagenet"`` ImageNet's (3 bands only); ``"data"`` the data's for
            any band count. *The data's*: at fit start (``setup``) the task calls its data
            module's ``band_statistics(normalization_samples)`` (per-band mean and population std
            of the valid pixels of a seeded sample of training patches on the ``[0, 1]`` scale,
            cached; :class:`~geossl.datamodules.RasterTimeSeriesDataModule`,
            :class:`~geossl.datamodules.FMoWDataModule`), prints them once, loads them into the
            augmentation's normalisation and writes them into the hyper-parameters, so the
            checkpoints (and ``geossl export weights``) record the statistics actually used. A
            resumed run uses its checkpoint's statistics.
        normalization_samples: patches / images the data statistics are estimated from (256).
        lr: SGD learning rate (0.03 for a total batch of 256).
        sgd_momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (1e-4).
        warmup_epochs: epochs of linear warm-up before the cosine schedule (0).
        channels_last: run the backbones and their inputs in channels-last memory format.
        compile: run the encoders (backbone, projection head and the normalisation of the
            embedding, for the query and the key encoder: nearly all of a step's FLOPs) and the
            colour-jitter adjustments of the augmentation (chains of per-pixel operations that
            fuse into a kernel or two) through ``torch.compile`` (inductor, default mode). The
            first steps are slow while it compiles and a new batch size compiles again; the
            module, its state dict and the checkpoints are unchanged, and the geometry, blur
            and loss terms stay eager (a few batched kernels each).
            Off by default (``benchmarks/step_throughput.py`` measures what it gains).
        nan_check_every_n_steps: check that every term's loss is finite every this many training
            steps (1: every step; 0: never). A check costs one device-to-host sync (the CPU waits
            for the forward pass before it queues the backward; plus a tiny all-reduce under DDP
            so that every rank stops together). A NaN / Inf in a checked step stops the run before
            its backward; with ``n > 1`` the non-finite flags of the unchecked steps are kept on
            the device and checked at the next check or before any checkpoint is written, so no
            checkpoint is ever saved after a non-finite loss. The same transfer reads the step's
            total loss for the progress bar (``loss``; ``train_loss`` goes to the loggers every
            ``trainer.log_every_n_steps`` without a sync): the bar shows the loss of the last
            checked step, and none with 0. Apart from this check, a step of the MoCo, TP, Geo
            and CO2 terms reads nothing from the device; SCRL reads one value (how many box
            pairs the batch has, which sizes its RoI batch).
        init_weights: start the query (and key) backbone from a weight file instead of random
            init: torchgeo's GASSL ``.pth``, a ``geossl export weights`` file, a geossl or
            torchgeo checkpoint, a timm ``.pth`` / ``.safetensors`` / ``train.py`` checkpoint
            (:func:`~geossl.models.weights.read_weights`). Keys must match the backbone exactly;
            only a classifier (``fc.*`` / ``head.*``) in the file is dropped. A file path, so it
            is kept out of the checkpoint's hyper-parameters (like torchgeo's ``weights``);
            checkpoints record its name and hash as ``geossl_init_weights`` instead.
        adapt_in_chans: let 3-band (RGB) ``init_weights`` start a backbone with another
            ``in_chans`` by adapting the first convolution with timm's rule
            (:func:`~geossl.models.init.adapt_first_conv`: for 1 band the sum of the RGB kernels,
            for :math:`N` bands the RGB kernels repeated cyclically and scaled by :math:`3 / N`,
            so that the activations keep their magnitude); every other tensor is loaded as is.
            ``geossl_init_weights`` then records ``adapted_from: 3``. The file's RGB
            normalisation no longer applies: the data's is used (``normalization``). Without it,
            a band-count mismatch is an error.

    Raises:
        ValueError: for any invalid hyper-parameter; the message names it as ``model.<name>``.
        NonFiniteLossError: during training, when a loss becomes NaN or Inf (see
            ``nan_check_every_n_steps``).
    """

    backbone_momentum: nn.Module | None
    projection_head_momentum: nn.Module | None
    queue: KeyQueue | None

    def __init__(
        self,
        backbone: str = "resnet50",
        in_chans: int = 3,
        losses: dict[str, float] | None = None,
        loss_options: dict[str, dict[str, float | bool]] | None = None,
        num_geo_clusters: int = 100,
        queue_size: int = 65536,
        temperature: float = 0.02,
        momentum: float = 0.999,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        shuffle_bn: bool = True,
        crop_size: int = 224,
        min_scale: float = 0.2,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        lr: float = 0.03,
        sgd_momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_epochs: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        nan_check_every_n_steps: int = 1,
        init_weights: str | None = None,
        normalization: Literal["auto", "imagenet", "data"] = "auto",
        normalization_samples: int = 256,
        adapt_in_chans: bool = False,
    ) -> None:
        super().__init__()
        # A local path: loading the checkpoint elsewhere must not need the file (see the doc).
        self.save_hyperparameters(ignore=["init_weights"])
        hp = self.hparams
        weights = self._check_hparams(hp)
        self.loss_weights: dict[str, float] = weights
        # Non-finite codes of the steps since the last check (on the device), their step range.
        self._nonfinite_codes: Tensor | None = None
        self._nonfinite_steps = (0, 0)
        self._steps_since_check = 0

        term_classes = [get_loss_term(name) for name in weights]
        options = hp["loss_options"] or {}
        sources = [
            get_loss_term(name).view_sources(resolve_loss_options(name, options.get(name)))
            for name in weights
        ]
        self.online_sources = frozenset({"query"}).union(*(online for online, _ in sources))
        self.key_sources = frozenset[str]().union(*(key for _, key in sources))
        self.needs_feature_map = any(c.needs_feature_map for c in term_classes)
        self.needs_view_params = any(c.needs_view_params for c in term_classes)
        uses_queue = any(c.uses_queue for c in term_classes)
        self.queue_key_source: str | None = next(
            (c.queue_key_source for c in term_classes if c.queue_key_source is not None), None
        )

        #: Where the normalisation comes from: "given", "imagenet" or "data" (``normalization``).
        self.normalization_source = self._normalization_source(hp)
        pending = self.normalization_source == "data"
        aug_mean: Sequence[float] | None = hp["mean"]
        aug_std: Sequence[float] | None = hp["std"]
        if self.normalization_source == "imagenet" or (hp["in_chans"] == 3 and not pending):
            aug_mean = IMAGENET_MEAN if aug_mean is None else aug_mean
            aug_std = IMAGENET_STD if aug_std is None else aug_std
        self.augment = GeoSSLAugmentation(
            size=hp["crop_size"],
            min_scale=hp["min_scale"],
            # Placeholders until setup() takes the data's statistics (the forward refuses them).
            mean=[0.0] * hp["in_chans"] if pending else aug_mean,
            std=[1.0] * hp["in_chans"] if pending else aug_std,
            in_chans=hp["in_chans"],
            compile=hp["compile"],
        )
        #: True until the data's statistics are loaded (``normalization`` resolved to the data).
        self.normalization_pending = pending
        self.backbone = create_backbone(hp["backbone"], in_chans=hp["in_chans"])
        self.init_weights_info: dict[str, Any] | None = None
        self._init_weights_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        if init_weights is not None:  # before the key encoder copies the backbone
            self.init_weights_info = self._load_init_weights(init_weights)
            self._warn_on_other_normalization()
        num_features = get_num_features(self.backbone)
        # A recipe whose terms never read the MoCo projection (SCRL alone) gets no projection head:
        # parameters without gradients would stop DDP (find_unused_parameters is off by default).
        # The query is then the normalised pooled feature, which the collapse monitor still reads.
        self.projection_head: nn.Module = (
            MoCoProjectionHead(num_features, hp["proj_hidden_dim"], hp["proj_dim"])
            if any(c.needs_projection for c in term_classes)
            else nn.Identity()
        )
        #: Size of the query embedding that ``train/embedding_std`` is measured on.
        self.embedding_dim = (
            num_features if isinstance(self.projection_head, nn.Identity) else hp["proj_dim"]
        )
        if hp["channels_last"]:
            self.backbone.to(memory_format=torch.channels_last)
        if self.key_sources:
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)
        else:
            self.backbone_momentum = self.projection_head_momentum = None
        self.queue = KeyQueue(hp["proj_dim"], hp["queue_size"]) if uses_queue else None

        ctx = LossTermContext(
            num_features=num_features,
            proj_dim=hp["proj_dim"],
            temperature=hp["temperature"],
            num_geo_clusters=hp["num_geo_clusters"],
            in_chans=hp["in_chans"],
            crop_size=hp["crop_size"],
            hparams=dict(hp),
        )
        self.loss_terms = nn.ModuleDict(
            {name: create_loss_term(name, ctx, options.get(name)) for name in weights}
        )

    def _load_init_weights(self, path: str) -> dict[str, Any]:
        """Load ``init_weights`` into the query backbone (strict keys), warn on other statistics.

        Args:
            path: the weight file.

        Returns:
            What the checkpoints record: file name, sha256, backbone, method, format and
            ``adapted_from`` (the file's band count when ``adapt_in_chans`` adapted it, else None).

        Raises:
            FileNotFoundError: naming ``model.init_weights`` if the file does not exist.
            ValueError: naming ``model.init_weights`` for another backbone, band count (unless
                ``adapt_in_chans`` adapts 3-band weights) or keys.
        """
        hp = self.hparams
        where = f"model.init_weights: {path}"
        try:
            state, meta = read_weights(path, backbone=hp["backbone"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"model.init_weights: {err}") from err
        except ValueError as err:
            raise ValueError(f"model.init_weights: {err}") from err
        if meta.backbone.partition(".")[0] != hp["backbone"].partition(".")[0]:
            raise ValueError(
                f"{where} holds {meta.backbone} weights but model.backbone is {hp['backbone']}"
            )
        adapted_from: int | None = None
        if meta.in_chans != hp["in_chans"]:
            if meta.in_chans != 3:
                raise ValueError(
                    f"{where} has {meta.in_chans}-band weights but model.in_chans="
                    f"{hp['in_chans']} (only 3-band weights can be adapted to another band count)"
                )
            if not hp["adapt_in_chans"]:
                raise ValueError(
                    f"{where} has 3-band weights but model.in_chans={hp['in_chans']}: set "
                    "model.adapt_in_chans=true to adapt the first convolution (timm's rule), or "
                    "give the model 3 bands"
                )
            state = adapt_first_conv(state, hp["backbone"], hp["in_chans"])
            adapted_from = meta.in_chans
        # The file's classifier (an ImageNet fc / head) was dropped by read_weights; every other
        # tensor must match the backbone exactly.
        load_state_dict_strict(self.backbone, state, source=where, backbone=hp["backbone"])
        if meta.has_metadata and meta.has_normalization and adapted_from is None:
            self._init_weights_norm = (tuple(meta.mean), tuple(meta.std))
        return {
            "file": Path(path).name,
            "sha256": meta.sha256_full,
            "backbone": meta.backbone,
            "method": meta.method,
            "source_format": meta.source_format,
            "adapted_from": adapted_from,
        }

    def _warn_on_other_normalization(self) -> None:
        """Warn when ``init_weights`` were trained with other statistics than this run's.

        Checked once the statistics are known: at construction, or after the data's are loaded.
        """
        if self._init_weights_norm is None or self.normalization_pending:
            return
        file_mean, file_std = self._init_weights_norm
        mean = tuple(float(v) for v in self.augment.mean.flatten().tolist())
        std = tuple(float(v) for v in self.augment.std.flatten().tolist())
        close = all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
            for a, b in zip((*file_mean, *file_std), (*mean, *std), strict=True)
        )
        if not close:
            name = self.init_weights_info["file"] if self.init_weights_info else "?"
            warnings.warn(
                f"model.init_weights: {name} was trained on inputs normalised with "
                f"mean={list(file_mean)} std={list(file_std)}, but model.mean={list(mean)} "
                f"model.std={list(std)}",
                UserWarning,
                stacklevel=3,
            )

    @staticmethod
    def _normalization_source(hp: Mapping[str, Any]) -> str:
        """``"given"``, ``"imagenet"`` or ``"data"``: where ``mean`` / ``std`` come from."""
        if hp["mean"] is not None and hp["std"] is not None:
            return "given"
        if hp["normalization"] == "data" or (hp["normalization"] == "auto" and hp["in_chans"] != 3):
            return "data"
        return "given" if hp["mean"] is not None or hp["std"] is not None else "imagenet"

    def setup(self, stage: str) -> None:
        """Take the data's normalisation statistics when ``normalization`` asks for them.

        Runs on every process after the data module's ``setup`` and before the model is moved,
        wrapped or logged: rank 0 calls ``datamodule.band_statistics(normalization_samples)``
        (cached on disk) and broadcasts the result.

        Args:
            stage: Lightning's stage (``"fit"``, ...).

        Raises:
            ValueError: naming ``model.mean`` / ``model.std`` when the data module has no
                ``band_statistics``.
        """
        if not self.normalization_pending:
            return
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        estimate = getattr(datamodule, "band_statistics", None)
        if not callable(estimate):
            owner = type(datamodule).__name__ if datamodule is not None else "no data module"
            raise ValueError(
                f"model.mean / model.std are not set and the data ({owner}) has no "
                f"band_statistics() to estimate them for model.in_chans={self.hparams['in_chans']}:"
                " set model.mean and model.std"
            )
        stats: tuple[list[float], list[float]] | None = None
        if trainer.is_global_zero:
            stats = estimate(self.hparams["normalization_samples"])
        stats = trainer.strategy.broadcast(stats, src=0)
        if stats is None:  # pragma: no cover - rank 0 always computes them
            raise RuntimeError("rank 0 did not broadcast the band statistics")
        mean, std = stats
        self.set_normalization(mean, std)
        rank_zero_info(
            f"GeoSSLTask: per-band statistics of {type(datamodule).__name__} "
            f"({self.hparams['normalization_samples']} samples, [0, 1] scale): "
            f"model.mean={_rounded(mean)} model.std={_rounded(std)}"
        )

    def set_normalization(self, mean: list[float], std: list[float]) -> None:
        """Use ``mean`` / ``std`` from now on and record them in the hyper-parameters.

        The checkpoint's ``hyper_parameters`` (what ``geossl export weights`` reads) and the
        logger's copy get them too, so every record of the run names the statistics it used.

        Args:
            mean: per-band mean, ``in_chans`` values.
            std: per-band std, ``in_chans`` values, > 0.

        Raises:
            ValueError: naming ``model.mean`` / ``model.std`` for a wrong length or a std <= 0.
        """
        try:
            self.augment.set_normalization(mean, std)
        except ValueError as err:
            raise ValueError(f"model.mean / model.std: {err}") from err
        values = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
        self.hparams.update(values)
        # Lightning logs hparams_initial (a copy taken at save_hyperparameters): the logged
        # hyper-parameters must say which statistics the run used, not None.
        initial = getattr(self, "_hparams_initial", None)
        if initial is not None:
            initial.update(values)
        self.normalization_pending = False
        self._warn_on_other_normalization()

    @staticmethod
    def _check_hparams(hp: Mapping[str, Any]) -> dict[str, float]:
        """Validate the hyper-parameters before anything is built.

        Args:
            hp: the task's hyper-parameters.

        Returns:
            The active loss terms (weight > 0) and their weights, in the given order.

        Raises:
            ValueError: naming the offending key as ``model.<name>``.
        """
        try:
            check_backbone_name(hp["backbone"])
        except ValueError as err:
            raise ValueError(f"model.backbone: {err}") from err
        positive_int = ["in_chans", "queue_size", "proj_hidden_dim", "proj_dim"]
        for name in positive_int:
            if hp[name] < 1:
                raise ValueError(f"model.{name} must be >= 1, got {hp[name]}")
        if hp["crop_size"] < 2:
            raise ValueError(f"model.crop_size must be >= 2, got {hp['crop_size']}")
        if not (math.isfinite(hp["temperature"]) and hp["temperature"] > 0):
            raise ValueError(f"model.temperature must be > 0, got {hp['temperature']}")
        for name in ["momentum", "sgd_momentum"]:
            if not 0 <= hp[name] < 1:
                raise ValueError(f"model.{name} must be in [0, 1), got {hp[name]}")
        if not 0 < hp["min_scale"] <= 1:
            raise ValueError(f"model.min_scale must be in (0, 1], got {hp['min_scale']}")
        if not (math.isfinite(hp["lr"]) and hp["lr"] > 0):
            raise ValueError(f"model.lr must be > 0, got {hp['lr']}")
        if not (math.isfinite(hp["weight_decay"]) and hp["weight_decay"] >= 0):
            raise ValueError(f"model.weight_decay must be >= 0, got {hp['weight_decay']}")
        if hp["warmup_epochs"] < 0:
            raise ValueError(f"model.warmup_epochs must be >= 0, got {hp['warmup_epochs']}")
        if hp["nan_check_every_n_steps"] < 0:
            raise ValueError(
                "model.nan_check_every_n_steps must be >= 0 (0 disables the check), "
                f"got {hp['nan_check_every_n_steps']}"
            )
        if hp["normalization"] not in NORMALIZATIONS:
            raise ValueError(
                f"model.normalization must be one of {list(NORMALIZATIONS)}, "
                f"got {hp['normalization']!r}"
            )
        if hp["normalization_samples"] < 1:
            raise ValueError(
                f"model.normalization_samples must be >= 1, got {hp['normalization_samples']}"
            )
        given = [name for name in ("mean", "std") if hp[name] is not None]
        if len(given) == 1 and (hp["in_chans"] != 3 or hp["normalization"] == "data"):
            missing = "std" if given == ["mean"] else "mean"
            raise ValueError(
                f"model.{missing} is missing: model.mean and model.std go together for "
                f"model.in_chans={hp['in_chans']} (set both, or neither to estimate both from "
                "the data)"
            )
        if not given and hp["normalization"] == "imagenet" and hp["in_chans"] != 3:
            raise ValueError(
                f"model.normalization=imagenet needs model.in_chans=3 (ImageNet's statistics are "
                f"RGB), got {hp['in_chans']}: use model.normalization=auto (the data's) or set "
                "model.mean and model.std"
            )
        for name in ["mean", "std"]:
            stats = hp[name]
            if stats is not None and len(stats) != hp["in_chans"]:
                raise ValueError(
                    f"model.{name} has {len(stats)} values but model.in_chans={hp['in_chans']}"
                )
        if hp["mean"] is not None and not all(math.isfinite(m) for m in hp["mean"]):
            raise ValueError(f"model.mean must be finite, got {hp['mean']}")
        if hp["std"] is not None and any(not (math.isfinite(s) and s > 0) for s in hp["std"]):
            raise ValueError(f"model.std must be finite and > 0, got {hp['std']}")

        losses = DEFAULT_LOSSES if hp["losses"] is None else hp["losses"]
        if not losses:
            raise ValueError(f"model.losses is empty; valid terms: {list_loss_terms()}")
        for name, weight in losses.items():
            if name not in list_loss_terms():
                raise ValueError(
                    f"model.losses: unknown loss term {name!r}; valid: {list_loss_terms()}"
                )
            if not (
                isinstance(weight, int | float)
                and not isinstance(weight, bool)
                and math.isfinite(weight)
                and weight >= 0
            ):
                raise ValueError(
                    f"model.losses[{name!r}] must be a finite weight >= 0, got {weight!r}"
                )
        weights = {name: float(w) for name, w in losses.items() if w > 0}
        if not weights:
            raise ValueError(f"model.losses has no term with a positive weight: {dict(losses)}")
        providers = [n for n in list_loss_terms() if get_loss_term(n).queue_key_source is not None]
        has_queue_key = any(get_loss_term(n).queue_key_source is not None for n in weights)
        for name in weights:
            if get_loss_term(name).needs_queue_key and not has_queue_key:
                raise ValueError(
                    f"model.losses: {name} needs {' or '.join(providers)} (a term contrasting a "
                    f"positive key against the queue) with a weight > 0, got {dict(losses)}"
                )

        loss_options = hp["loss_options"] or {}
        resolved: dict[str, dict[str, LossOptionValue]] = {}
        for name, options in loss_options.items():
            if name not in list_loss_terms():
                raise ValueError(
                    f"model.loss_options.{name}: unknown loss term {name!r}; "
                    f"valid: {list_loss_terms()}"
                )
            if not isinstance(options, Mapping):
                raise ValueError(
                    f"model.loss_options.{name} must map option names to values, got {options!r}"
                )
            resolved[name] = resolve_loss_options(name, options)
            if name not in weights:
                warnings.warn(
                    f"model.loss_options.{name} is set but {name!r} is not an active loss term "
                    f"(model.losses: {dict(losses)}); its options are ignored",
                    UserWarning,
                    stacklevel=3,
                )
        probe = LossTermContext(  # the backbone is not built yet: num_features is a placeholder
            num_features=1,
            proj_dim=hp["proj_dim"],
            temperature=hp["temperature"],
            num_geo_clusters=hp["num_geo_clusters"],
            in_chans=hp["in_chans"],
            crop_size=hp["crop_size"],
            hparams=dict(hp),
        )
        for name in weights:
            options = resolved.get(name) or resolve_loss_options(name)
            get_loss_term(name).check_context(replace(probe, options=options))
        return weights

    @property
    def terms(self) -> dict[str, LossTerm]:
        """The active loss terms by name, in ``losses`` order."""
        return {name: cast(LossTerm, term) for name, term in self.loss_terms.items()}

    def forward(self, x: Tensor) -> Tensor:
        """Backbone features of normalised images (for embedding export and probes).

        Args:
            x: ``[B, C, H, W]`` float images normalised like the training views (``[0, 1]`` then
                ``(x - mean) / std``), no augmentation.

        Returns:
            ``[B, F]`` pooled features of the query backbone.
        """
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        out: Tensor = self.backbone(x)
        return out

    def _encode(
        self, backbone: nn.Module, head: nn.Module, x: Tensor, feature_map: bool
    ) -> EncoderOutput:
        """Run one encoder (backbone + projection head) on a view.

        Args:
            backbone: the query or key backbone.
            head: its projection head.
            x: ``[B, C, S, S]`` view.
            feature_map: also return the un-pooled map.

        Returns:
            The encoder's outputs.
        """
        encode = _compiled_encoder() if self.hparams["compile"] else _run_encoder
        features, projection, embedding, fmap = encode(
            backbone, head, x, feature_map, self.hparams["channels_last"]
        )
        return EncoderOutput(features, projection, embedding, fmap)

    @torch.no_grad()
    def _encode_momentum(self, x: Tensor, feature_map: bool) -> EncoderOutput:
        """Run the key encoder with shuffle-BN (MoCo, Sec. 3.3).

        Args:
            x: ``[B, C, S, S]`` view.
            feature_map: also return the un-pooled map.

        Returns:
            The key encoder's outputs, in the batch's original order.
        """
        if self.backbone_momentum is None or self.projection_head_momentum is None:
            raise RuntimeError("no key encoder: no active loss term has key sources")
        if not self.hparams["shuffle_bn"]:
            return self._encode(
                self.backbone_momentum, self.projection_head_momentum, x, feature_map
            )
        x, index = batch_shuffle(x)
        out = self._encode(self.backbone_momentum, self.projection_head_momentum, x, feature_map)
        return EncoderOutput(
            features=batch_unshuffle(out.features, index),
            projection=batch_unshuffle(out.projection, index),
            embedding=batch_unshuffle(out.embedding, index),
            feature_map=None
            if out.feature_map is None
            else batch_unshuffle(out.feature_map, index),
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA-update the key encoder and the terms' own target parts with ``momentum``."""
        m: float = self.hparams["momentum"]
        if self.backbone_momentum is not None and self.projection_head_momentum is not None:
            update_momentum(self.backbone, self.backbone_momentum, m)
            if isinstance(self.projection_head, MoCoProjectionHead):  # not the empty Identity
                update_momentum(self.projection_head, self.projection_head_momentum, m)
        for term in self.terms.values():
            term.momentum_update(m)

    def compute_step_outputs(self, batch: Mapping[str, Tensor]) -> StepOutputs:
        """Augment, encode and snapshot the queue once for all active terms.

        Args:
            batch: a collated batch with ``image`` ``[B, 2, C, H, W]`` (uint8 or float in [0, 1]).

        Returns:
            The shared outputs.

        Raises:
            ValueError: if ``batch["image"]`` is not ``[B, 2, in_chans, H, W]``.
        """
        if self.normalization_pending:
            raise RuntimeError(
                "model.mean / model.std are not known yet: they are estimated from the data "
                "module when fitting starts (setup); set them to use the task without a Trainer"
            )
        images = batch["image"]
        if images.ndim != 5 or images.shape[1] != 2 or images.shape[2] != self.hparams["in_chans"]:
            raise ValueError(
                f"batch['image'] must be [B, 2, {self.hparams['in_chans']}, H, W], "
                f"got {tuple(images.shape)}"
            )
        views: dict[str, Tensor] = {}
        view_params: dict[str, ViewParams] = {}
        for source in VIEW_SOURCES:  # fixed order: reproducible random draws
            if source not in self.online_sources | self.key_sources:
                continue
            raw = images[:, VIEW_SOURCES[source]]  # [B, C, H, W]
            if self.needs_view_params:
                views[source], view_params[source] = self.augment(raw, return_params=True)
            else:
                views[source] = self.augment(raw)
        online = {
            source: self._encode(
                self.backbone, self.projection_head, views[source], self.needs_feature_map
            )
            for source in VIEW_SOURCES
            if source in self.online_sources
        }
        momentum = {
            source: self._encode_momentum(views[source], self.needs_feature_map)
            for source in VIEW_SOURCES
            if source in self.key_sources
        }
        negatives = None if self.queue is None else self.queue.negatives()
        return StepOutputs(
            batch, views, online, momentum, negatives, view_params, self.queue_key_source
        )

    def on_fit_start(self) -> None:
        """Refuse pairs that are not on one canvas when a term relates their pixels.

        Raises:
            ValueError: naming ``data.shared_canvas`` when the datamodule says its pairs are drawn
                on separate canvases (a datamodule that does not say is trusted).
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        needing = [name for name, term in self.terms.items() if term.needs_shared_canvas]
        if needing and getattr(datamodule, "pairs_share_canvas", None) is False:
            raise ValueError(
                f"the {', '.join(needing)} loss relates pixels of the two acquisitions "
                "(model.loss_options.scrl.temporal) and needs both on one canvas: set "
                "data.shared_canvas: true"
            )

    def configure_callbacks(self) -> list[Callback]:
        """The task's own callback: :class:`~geossl.trainers.callbacks.TrainingHealthMonitor`.

        Returns:
            The monitor, which warns once on a collapse or a loss out of its range.
        """
        return [TrainingHealthMonitor()]

    def on_train_start(self) -> None:
        """Stop DDP from re-broadcasting rank 0's buffers before every forward.

        The queue (32 MB at the default size) is kept identical on every rank by all-gathering the
        keys before they are enqueued; re-sending it each step would only cost bandwidth, and would
        hide a broken gather from the two-process test.
        """
        wrapped = self.trainer.strategy.model
        if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            wrapped.broadcast_buffers = False

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One step: EMA update, shared outputs, weighted loss terms, enqueue, logs.

        Args:
            batch: collated batch (see ``docs/design.md``).
            batch_idx: index of the batch in the epoch.

        Returns:
            The total loss (float32 scalar).
        """
        self.momentum_update()
        out = self.compute_step_outputs(batch)
        batch_size = int(batch["image"].shape[0])

        total = torch.zeros((), device=out.q.device)
        results: dict[str, TermOutput] = {}
        for name, term in self.terms.items():
            result: TermOutput = term(out)
            results[name] = result
            total = total + self.loss_weights[name] * result.loss.float()
        checked_total = self._check_finite(results, total)

        if self.queue is not None and self.queue_key_source is not None:
            self.queue.enqueue(out.keys[self.queue_key_source])

        # Lightning converts every ``prog_bar`` value to a Python number at the end of every step
        # (``.item()``: the CPU would wait for the whole step before it prepares the next one).
        # The bar shows the total as read by the finiteness check instead, a CPU tensor.
        self.log("train_loss", total, batch_size=batch_size)
        if checked_total is not None:
            loss_on_host = torch.tensor(checked_total)
            self.log("loss", loss_on_host, batch_size=batch_size, prog_bar=True, logger=False)
        for name, result in results.items():
            self.log(f"train/loss_{name}", result.loss.detach(), batch_size=batch_size)
            for metric, value in result.metrics.items():
                self.log(f"train/{metric}", value, batch_size=batch_size)
        # Collapse monitor: ~1/sqrt(D) for spread-out unit vectors, ~0 when collapsed.
        embedding_std = out.q.detach().std(dim=0).mean() if batch_size > 1 else out.q.new_zeros(())
        self.log("train/embedding_std", embedding_std, batch_size=batch_size)
        return total

    def _check_finite(self, results: Mapping[str, TermOutput], total: Tensor) -> float | None:
        """Record this step's non-finite losses; raise on a check step if any was seen.

        Every step stacks the term losses and the total into ``[T + 1]`` codes (0 finite, 1 NaN,
        2 Inf) kept on the device (no sync); every ``nan_check_every_n_steps`` steps the codes
        since the last check are reduced over ranks and read on the host, with this step's total
        (one sync).

        Args:
            results: the terms' outputs of this step, in ``self.terms`` order.
            total: the weighted total.

        Returns:
            This rank's total as a Python float on a check step, else ``None``.

        Raises:
            NonFiniteLossError: naming the terms and the step (or step range).
        """
        every: int = self.hparams["nan_check_every_n_steps"]
        if every == 0:
            return None
        values = torch.stack([r.loss.detach().float() for r in results.values()] + [total.detach()])
        codes = torch.isnan(values).float() + 2 * torch.isinf(values).float()  # [T + 1]
        if self._nonfinite_codes is None:
            self._nonfinite_codes = codes
            self._nonfinite_steps = (self.global_step, self.global_step)
        else:
            self._nonfinite_codes = torch.maximum(self._nonfinite_codes, codes)
            self._nonfinite_steps = (self._nonfinite_steps[0], self.global_step)
        self._steps_since_check += 1
        if self._steps_since_check >= every:
            return self._raise_if_nonfinite(total)
        return None

    def _raise_if_nonfinite(self, total: Tensor | None = None) -> float | None:
        """Read the non-finite codes since the last check (one host sync) and reset them.

        Args:
            total: a loss to read in the same transfer (the step's total), or ``None``.

        Returns:
            ``total`` as a Python float, or ``None`` when it was not given or nothing was pending.

        Raises:
            NonFiniteLossError: if a loss was NaN or Inf; the message names the logged keys
                (``train/loss_<term>``, or ``train_loss`` when only the total overflowed) and
                the step, or the range of unchecked steps.
        """
        codes, (first, last) = self._nonfinite_codes, self._nonfinite_steps
        self._nonfinite_codes = None
        self._steps_since_check = 0
        if codes is None:
            return None
        if world_size() > 1:  # every rank must stop at the same step, or the others would hang
            dist.all_reduce(codes, op=dist.ReduceOp.MAX)
        if total is None:
            flags: list[float] = codes.tolist()  # the host sync
            total_on_host = None
        else:
            *flags, total_on_host = torch.cat([codes, total.detach().float().view(1)]).tolist()
        if not any(flags):
            return total_on_host
        names = [f"train/loss_{name}" for name in self.loss_terms] + ["train_loss"]
        bad = [(n, "nan" if c == 1 else "inf") for n, c in zip(names, flags, strict=True) if c]
        if len(bad) > 1:  # a bad term makes the total bad: name the terms only
            bad = [(n, k) for n, k in bad if n != "train_loss"]
        what = ", ".join(f"{name} became {kind}" for name, kind in bad)
        when = f"at step {first}" if first == last else f"at a step in {first}..{last}"
        raise NonFiniteLossError(f"{what} {when}; stopping (the last checkpoint is kept)")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to save a checkpoint after an unchecked non-finite loss.

        With ``nan_check_every_n_steps > 1`` the weights may already hold a bad update when a
        checkpoint is due between two checks: the pending flags are checked first.

        Args:
            checkpoint: the checkpoint being written (gets ``geossl_init_weights`` when the
                backbone started from ``init_weights``).

        Raises:
            NonFiniteLossError: if a loss since the last check was NaN or Inf.
        """
        self._raise_if_nonfinite()
        if self.init_weights_info is not None:
            checkpoint["geossl_init_weights"] = self.init_weights_info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the record of ``init_weights`` and the data's statistics across a resume.

        A run whose statistics come from the data resumes with its checkpoint's (the weights were
        trained with them), with a warning if the data now gives others.

        Args:
            checkpoint: the checkpoint being restored.
        """
        if self.init_weights_info is None:
            self.init_weights_info = checkpoint.get("geossl_init_weights")
        saved = checkpoint.get("hyper_parameters") or {}
        mean, std = saved.get("mean"), saved.get("std")
        if self.normalization_source != "data" or mean is None or std is None:
            return
        if not self.normalization_pending and (
            list(mean) != self.hparams["mean"] or list(std) != self.hparams["std"]
        ):
            warnings.warn(
                f"resuming with the checkpoint's model.mean={_rounded(list(mean))} "
                f"model.std={_rounded(list(std))}; the data now gives "
                f"model.mean={_rounded(self.hparams['mean'])} "
                f"model.std={_rounded(self.hparams['std'])}",
                UserWarning,
                stacklevel=2,
            )
        self.set_normalization(list(mean), list(std))

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """SGD (fused) over every trainable parameter, cosine schedule per step with warm-up.

        The trainable parameters are the query backbone, its projection head and the terms' own
        modules (e.g. the geo head); the key encoder is frozen and never in the optimiser.

        Returns:
            The optimiser and its per-step scheduler.

        Raises:
            ValueError: if the run's length is unknown (infinite) or, with warm-up, the length of
                an epoch is unknown.
        """
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        # One fused kernel for the whole update instead of several multi-tensor ones (the same
        # arithmetic), where PyTorch has it: CPU and CUDA.
        fused = all(p.device.type in {"cpu", "cuda"} and p.is_floating_point() for p in params)
        optimizer = torch.optim.SGD(
            params,
            lr=hp["lr"],
            momentum=hp["sgd_momentum"],
            weight_decay=hp["weight_decay"],
            fused=fused or None,
        )
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the cosine schedule needs a finite run: set max_epochs or max_steps")
        warmup_steps = 0
        if hp["warmup_epochs"] > 0:
            batches = self.trainer.num_training_batches
            if not math.isfinite(batches):  # max_steps-only runs do not load the data first
                self.trainer.fit_loop.setup_data()
                batches = self.trainer.num_training_batches
            if not math.isfinite(batches):
                raise ValueError(
                    "model.warmup_epochs needs a known epoch length (a sized train dataloader)"
                )
            per_epoch = max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
            warmup_steps = min(int(hp["warmup_epochs"]) * per_epoch, int(total))
        schedule = WarmupCosineSchedule(warmup_steps=warmup_steps, total_steps=int(total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
