"""GeoSSLTask: MoCo-v2 with temporal positives and the geo-location pretext, as loss terms.

One LightningModule trains every recipe of Geography-aware SSL (Ayush et al., ICCV 2021,
https://arxiv.org/abs/2011.09980): ``losses={"moco": 1}`` is MoCo-v2, ``{"tp": 1}`` uses temporal
positives, ``{"moco": 1, "geo": 1}`` adds the geo-location pretext, ``{"tp": 1, "geo": 1}`` (the
default) is the paper's full method. Each key of ``losses`` names a registered
[`LossTerm`][geossl.trainers.terms.base.LossTerm]; adding a term does not change the task.

How a step works ([`GeoSSLTask.training_step`][geossl.trainers.pretrain.GeoSSLTask.training_step]):

1. EMA-update the key encoder (and every term's own EMA parts) with ``momentum``.
2. Draw the views the active terms ask for: ``"query"`` (view 0), ``"same"`` (another
   augmentation of view 0), ``"temporal"`` (view 1, the other acquisition).
3. Encode them once into [`StepOutputs`][geossl.trainers.terms.base.StepOutputs]: query and key
   (shuffle-BN) encoder outputs, a snapshot of the queue, feature maps and view geometry.
4. Every term returns a [`TermOutput`][geossl.trainers.terms.base.TermOutput]; the total is
   the weighted sum, checked for NaN / Inf every ``nan_check_every_n_steps`` steps.
5. Enqueue the keys of the first queue-based term, log, return the total.
"""

import copy
from collections.abc import Mapping
from typing import Any, Literal, cast

import torch
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightning import LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn

from geossl.models import KeyQueue, create_backbone, get_num_features
from geossl.trainers.callbacks import TrainingHealthMonitor
from geossl.trainers.encoders import draw_views, encode_keys, encode_view, projection_head
from geossl.trainers.exact_resume import ExactResume
from geossl.trainers.guards import NonFiniteGuard, check_fit_ready
from geossl.trainers.normalization import (
    build_augmentation,
    resumed_normalization,
    warn_on_other_normalization,
)
from geossl.trainers.pretrain_hparams import check_pretrain_hparams, checkpoint_description
from geossl.trainers.schedule import pretrain_optimizer
from geossl.trainers.step_logs import log_training_step
from geossl.trainers.terms import (
    VIEW_SOURCES,
    EncoderOutput,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
    create_loss_term,
    term_needs,
)
from geossl.weights import load_init_weights

__all__ = ["GeoSSLTask"]


class GeoSSLTask(LightningModule):
    """Geography-aware self-supervised pretraining (MoCo-v2 + TP + Geo; CO2 / SCRL as terms).

    Query encoder: timm backbone + ``MoCoProjectionHead(num_features, proj_hidden_dim, proj_dim)``
    (MoCo-v2's 2-layer MLP, 2048 -> 2048 -> 128 for ResNet-50). Key encoder: a deep copy, never
    trained, EMA-updated with ``momentum`` at every step before the keys are computed, run with
    shuffle-BN. Negatives: a [`KeyQueue`][geossl.models.queue.KeyQueue] of ``queue_size`` keys (a
    persistent buffer, all- gathered across ranks under DDP). Views: `GeoSSLAugmentation` on the
    device.

    Defaults are the GeoSSL paper's (Ayush et al., ICCV 2021): ResNet-50, T = 0.02, m = 0.999,
    K = 65,536, SGD lr 0.03 (total batch 256) momentum 0.9 wd 1e-4, cosine schedule, 224 px,
    TP + Geo.

    Args:
        backbone: timm model name.
        in_chans: number of input bands.
        losses: loss term name -> weight (see `list_loss_terms`); ``None`` means
            ``{"tp": 1.0, "geo": 1.0}``. Terms with weight 0 are not built nor computed.
            E.g. ``{"tp": 1, "co2": 10}`` is TP with CO2 at its (unverified) alpha = 10.
        loss_options: loss term name -> {option: value} (each term's ``default_options``), e.g.
            ``{"co2": {"temperature": 0.04}}``; options of an inactive term are checked, then
            ignored with a warning.
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
            any band count ([`geossl.trainers.normalization`][geossl.trainers.normalization]).
            ``geossl pretrain`` gives the data's to
            [`set_normalization`][geossl.trainers.pretrain.GeoSSLTask.set_normalization] before fit;
            without the CLI, call it yourself (see the example). A resumed run uses its checkpoint's
            statistics.
        normalization_samples: patches / images the data statistics are estimated from (256).
        lr: SGD learning rate (0.03 for a total batch of 256).
        sgd_momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (1e-4).
        warmup_epochs: epochs of linear warm-up before the cosine schedule (0).
        channels_last: run the backbones and their inputs in channels-last memory format.
        compile: run the encoders (nearly all of a step's FLOPs) and the colour-jitter
            adjustments through ``torch.compile`` (inductor); the first steps are slow while it
            compiles, the state dict and checkpoints are unchanged. Off by default
            (``benchmarks/step_throughput.py`` measures what it gains).
        nan_check_every_n_steps: check that every term's loss is finite every this many training
            steps (1: every step; 0: never), one device-to-host sync per check; no checkpoint is
            saved after a non-finite loss
            ([`NonFiniteGuard`][geossl.trainers.guards.NonFiniteGuard]).
        init_weights: start the query (and key) backbone from any weight file
            [`read_weights`][geossl.weights.read_weights] reads; keys must match the backbone
            exactly (a classifier is dropped). A local path, so kept out of the hyper-parameters
            (like torchgeo's ``weights``); checkpoints record its name and hash as
            ``geossl_init_weights``.
        input_block: what the input is (``dataset``, ``band_names``, ``bands``, ``scale``), from
            the data module's ``input_block`` (``geossl pretrain`` links it in). Checkpoints
            record it, completed with the ``mean``, ``std`` and ``image_size`` the run trained
            with, so that reading them ([`read_weights`][geossl.weights.read_weights]) needs nothing
            else. ``None``: generic band names and an 8-bit scale.
        adapt_in_chans: let 3-band ``init_weights`` start a backbone with another ``in_chans``
            through timm's first-convolution rule
            ([`adapt_first_conv`][geossl.weights.adapt_first_conv]); the data's normalisation is
            then used. Without it, a band-count mismatch is an error.

    Raises:
        ValueError: for any invalid hyper-parameter; the message names it as ``model.<name>``.
        NonFiniteLossError: during training, when a loss becomes NaN or Inf (see
            ``nan_check_every_n_steps``).

    Example:
        >>> task = GeoSSLTask(backbone="resnet18", in_chans=4, crop_size=32, queue_size=64)
        >>> task.normalization_source, task.normalization_pending  # 4 bands: the data's
        ('data', True)
        >>> task.set_normalization([0.1, 0.2, 0.3, 0.4], [0.2, 0.2, 0.2, 0.2])
        >>> task.normalization_pending, sorted(task.terms)
        (False, ['geo', 'tp'])
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
        input_block: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # A local path: loading the checkpoint elsewhere must not need the file (see the doc).
        self.save_hyperparameters(ignore=["init_weights"])
        hp = self.hparams
        weights = check_pretrain_hparams(hp)
        self.loss_weights: dict[str, float] = weights
        self._guard = NonFiniteGuard(list(weights), hp["nan_check_every_n_steps"])
        options = hp["loss_options"] or {}
        #: What the active terms read: views, key sources, feature maps, the queue.
        self.needs = needs = term_needs(list(weights), options)
        #: Where the normalisation comes from: "given", "imagenet" or "data" (``normalization``).
        self.augment, self.normalization_source = build_augmentation(hp)
        #: True until the data's statistics are loaded (``normalization`` resolved to the data).
        self.normalization_pending = self.normalization_source == "data"
        self.backbone = create_backbone(hp["backbone"], in_chans=hp["in_chans"])
        self.init_weights_info: dict[str, Any] | None = None
        self._init_weights_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        if init_weights is not None:  # before the key encoder copies the backbone
            loaded = load_init_weights(
                self.backbone,
                init_weights,
                backbone_name=hp["backbone"],
                in_chans=hp["in_chans"],
                adapt_in_chans=hp["adapt_in_chans"],
            )
            self.init_weights_info, self._init_weights_norm = loaded.info, loaded.normalization
            self._warn_on_other_normalization()
        num_features = get_num_features(self.backbone)
        self.projection_head = projection_head(
            num_features, hp["proj_hidden_dim"], hp["proj_dim"], needed=needs.needs_projection
        )
        #: Size of the query embedding that ``train/embedding_std`` is measured on.
        self.embedding_dim = hp["proj_dim"] if needs.needs_projection else num_features
        self._build_key_encoder(uses_queue=needs.uses_queue)
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

    def _build_key_encoder(self, uses_queue: bool) -> None:
        """The frozen EMA copy of the query encoder (when a term has key sources), the queue."""
        hp = self.hparams
        if hp["channels_last"]:
            self.backbone.to(memory_format=torch.channels_last)
        if self.needs.key_sources:
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)
        else:
            self.backbone_momentum = self.projection_head_momentum = None
        self.queue = KeyQueue(hp["proj_dim"], hp["queue_size"]) if uses_queue else None

    def _warn_on_other_normalization(self) -> None:
        """Warn when ``init_weights`` were trained with other statistics than this run's.

        Checked once the statistics are known: at construction, or after the data's are loaded.
        """
        if self._init_weights_norm is None or self.normalization_pending:
            return
        warn_on_other_normalization(
            self.init_weights_info["file"] if self.init_weights_info else "?",
            self._init_weights_norm,
            [float(v) for v in self.augment.mean.flatten().tolist()],
            [float(v) for v in self.augment.std.flatten().tolist()],
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
        # Saved again (not edited): Lightning logs hparams_initial, the copy that
        # save_hyperparameters takes, and it must name the statistics the run used, not None.
        self.save_hyperparameters({**self.hparams, **values})
        self.normalization_pending = False
        self._warn_on_other_normalization()

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

    def _encode(self, x: Tensor) -> EncoderOutput:
        """The query encoder on a view ``[B, C, S, S]``."""
        return encode_view(
            self.backbone,
            self.projection_head,
            x,
            feature_map=self.needs.needs_feature_map,
            channels_last=self.hparams["channels_last"],
            compile=self.hparams["compile"],
        )

    def _encode_momentum(self, x: Tensor) -> EncoderOutput:
        """The key encoder on a view, under shuffle-BN when ``shuffle_bn``."""
        if self.backbone_momentum is None or self.projection_head_momentum is None:
            raise RuntimeError("no key encoder: no active loss term has key sources")
        return encode_keys(
            self.backbone_momentum,
            self.projection_head_momentum,
            x,
            shuffle_bn=self.hparams["shuffle_bn"],
            feature_map=self.needs.needs_feature_map,
            channels_last=self.hparams["channels_last"],
            compile=self.hparams["compile"],
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
        views, view_params = draw_views(
            self.augment,
            batch["image"],
            self.needs.online_sources | self.needs.key_sources,
            in_chans=self.hparams["in_chans"],
            with_params=self.needs.needs_view_params,
        )
        needs = self.needs
        online = {s: self._encode(views[s]) for s in VIEW_SOURCES if s in needs.online_sources}
        momentum = {
            s: self._encode_momentum(views[s]) for s in VIEW_SOURCES if s in needs.key_sources
        }
        negatives = None if self.queue is None else self.queue.negatives()
        return StepOutputs(
            batch, views, online, momentum, negatives, view_params, needs.queue_key_source
        )

    def on_fit_start(self) -> None:
        """Refuse to fit without normalisation, or on pairs that a term cannot relate.

        Raises:
            ValueError: naming ``model.mean`` / ``model.std`` when the data's statistics were
                asked for and not given
                ([`set_normalization`][geossl.trainers.pretrain.GeoSSLTask.set_normalization];
                ``geossl pretrain`` gives them), or ``data.shared_canvas`` when the datamodule says
                its pairs are drawn on separate canvases (a datamodule that does not say is
                trusted).
        """
        check_fit_ready(
            self.terms,
            getattr(self.trainer, "datamodule", None),
            in_chans=self.hparams["in_chans"],
            normalization_pending=self.normalization_pending,
        )

    def configure_callbacks(self) -> list[Callback]:
        """The task's callbacks: `TrainingHealthMonitor` (collapse warnings), `ExactResume`."""
        return [TrainingHealthMonitor(), ExactResume()]

    def on_train_start(self) -> None:
        """Stop DDP from re-broadcasting rank 0's buffers (the queue, 32 MB) before every forward.

        The keys are all-gathered before they are enqueued, so every rank's queue is already the
        same; re-sending it would cost bandwidth and hide a broken gather from the DDP test.
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
        checked_total = self._guard.record(results, total, self.global_step)

        if self.queue is not None and self.needs.queue_key_source is not None:
            self.queue.enqueue(out.keys[self.needs.queue_key_source])

        log_training_step(self, results, total, checked_total, out.q, batch_size)
        return total

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
        self._guard.raise_if_nonfinite()
        if self.init_weights_info is not None:
            checkpoint["geossl_init_weights"] = self.init_weights_info
        checkpoint.setdefault("hyper_parameters", {}).update(self.describe_input_and_recipe())

    def describe_input_and_recipe(self) -> dict[str, Any]:
        """What a checkpoint records so that it describes itself (`checkpoint_description`).

        Returns:
            The resolved ``losses``, ``loss_options`` and the completed ``input_block``.
        """
        return checkpoint_description(
            self.hparams,
            list(self.loss_weights),
            [float(v) for v in self.augment.mean.flatten().tolist()],
            [float(v) for v in self.augment.std.flatten().tolist()],
        )

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
        stats = resumed_normalization(
            saved,
            self.hparams,
            from_data=self.normalization_source == "data",
            pending=self.normalization_pending,
        )
        if stats is not None:
            self.set_normalization(*stats)

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
        return pretrain_optimizer(self, self.hparams)
