r"""The ``"scrl"`` loss term: spatially consistent representation learning on box pairs.

SCRL (Roh et al., "Spatially Consistent Representation Learning", CVPR 2021,
https://arxiv.org/abs/2103.06122) as a [`LossTerm`][geossl.trainers.LossTerm] of
[`GeoSSLTask`][geossl.trainers.GeoSSLTask]. Per step:

1. The task draws two augmentations of view 0 (sources ``"query"`` and ``"same"``) with their
   geometry, and encodes both with the query encoder (gradient) and the key encoder (EMA, no
   gradient, shuffle-BN), keeping the C5 feature maps.
2. [`sample_scrl_boxes`][geossl.transforms.sample_scrl_boxes] samples up to ``num_boxes`` matched
   box pairs per image inside the two crops' intersection.
3. Online branch: RoIAlign on the query encoder's maps, the term's projector then predictor.
   Target branch: RoIAlign on the key encoder's maps, the EMA copy of the projector, no gradient.
4. [`SCRLLoss`][geossl.losses.SCRLLoss], the symmetric BYOL loss averaged over the box pairs.

The term owns its projector, predictor and the projector's EMA copy, updated with the task's
``momentum`` (SCRL, Roh et al. CVPR 2021, uses 0.97 -> 1 on a cosine schedule with LARS; geossl
shares the key encoder's momentum, 0.999 by default). The backbones are the task's: SCRL's
gradient reaches the query backbone through the feature maps, the key backbone is the task's EMA.

By default both views are augmentations of the same acquisition (view 0, sources ``"query"`` and
``"same"``). With ``loss_options.scrl.temporal: true`` the second view is an augmentation of the
other acquisition (view 1, source ``"temporal"``): the datasets put both acquisitions on one shared
canvas (the same window around the location at the same size), so canvas coordinates, and the
boxes, line up: exactly for co-registered rasters, approximately for fMoW (``docs/scrl.md``).
"""

import copy
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor

from geossl.losses.scrl import SCRLLoss
from geossl.models.scrl import SCRLPredictionHead, SCRLProjectionHead, roi_features
from geossl.trainers.terms.base import (
    LossOptionValue,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
)
from geossl.trainers.terms.registry import register_loss_term
from geossl.transforms.boxes import sample_scrl_boxes
from geossl.utils.checks import check_at_least, check_range

__all__ = ["SCRL_OPTIONS", "SCRLTerm"]

#: Options of the ``"scrl"`` term and their defaults (SCRL's ``config/scrl_200ep.yaml``;
#: ``temporal`` is geossl's: pair boxes across the two acquisitions instead of within view 0).
SCRL_OPTIONS: Mapping[str, LossOptionValue] = MappingProxyType(
    {
        "hidden_dim": 4096,
        "output_dim": 256,
        "num_boxes": 10,
        "min_size": 32.0,
        "max_tries": 50,
        "iou_threshold": 0.5,
        "temporal": False,
    }
)


def _term_options(ctx: LossTermContext) -> dict[str, LossOptionValue]:
    """The ``"scrl"`` options of the task, validated, with defaults filled in.

    Read from ``ctx.options`` (``GeoSSLTask(loss_options={"scrl": {...}})``, merged over
    `SCRL_OPTIONS` by the task); a context without options gives the defaults.

    Args:
        ctx: the task's context.

    Returns:
        Every key of `SCRL_OPTIONS` with its value.

    Raises:
        ValueError: naming ``model.loss_options.scrl.<option>`` for an unknown option or a value
            out of range.
    """
    given: Mapping[str, Any] = getattr(ctx, "options", None) or {}
    unknown = set(given) - SCRL_OPTIONS.keys()
    if unknown:
        raise ValueError(
            f"model.loss_options.scrl: unknown options {sorted(unknown)}; "
            f"valid: {sorted(SCRL_OPTIONS)}"
        )
    options = {**SCRL_OPTIONS, **given}
    for name, value in options.items():
        if isinstance(SCRL_OPTIONS[name], bool):
            if not isinstance(value, bool):
                raise ValueError(
                    f"model.loss_options.scrl.{name} must be true or false, got {value!r}"
                )
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"model.loss_options.scrl.{name} must be a number, got {value!r}")
    for name in ["hidden_dim", "output_dim", "num_boxes", "max_tries"]:
        if not (float(options[name]).is_integer() and options[name] >= 1):
            raise ValueError(
                f"model.loss_options.scrl.{name} must be an integer >= 1, got {options[name]}"
            )
    if not (math.isfinite(options["min_size"]) and options["min_size"] > 0):
        raise ValueError(f"model.loss_options.scrl.min_size must be > 0, got {options['min_size']}")
    check_range(
        "model.loss_options.scrl.iou_threshold",
        options["iou_threshold"],
        low=0,
        high=1,
        low_open=True,
    )
    return options


@register_loss_term("scrl")
class SCRLTerm(LossTerm):
    r"""SCRL: BYOL on RoI features of matched boxes in two views of the same image.

    $$
    \mathcal{L}_{scrl} = \frac{1}{N} \sum_{i=1}^{N}
    \Big[\big(2 - 2 \cos(q(g(r^i_1)), \bar g(\bar r^i_2))\big)
    + \big(2 - 2 \cos(q(g(r^i_2)), \bar g(\bar r^i_1))\big)\Big]
    $$

    with $r^i_k$ the RoIAlign feature of box $i$ on the query encoder's C5 map of view
    $k$, $\bar r^i_k$ the same on the key (EMA) encoder's map, $g$ the projector,
    $\bar g$ its EMA, $q$ the predictor, $N$ the box pairs of the batch.

    Logs ``scrl_boxes``, the mean number of box pairs per image. When the batch has fewer than 2
    box pairs (BatchNorm needs 2) the loss is a zero attached to the projector, the predictor and
    the feature maps, so every rank's backward touches the same parameters under DDP.

    Args:
        input_dim: backbone feature size $F$ (2048 for ResNet-50).
        view_size: side of the augmented views in pixels (224).
        hidden_dim: projector and predictor hidden size (4096, SCRL).
        output_dim: projection size (256, SCRL).
        num_boxes: most box pairs per image (10, SCRL).
        min_size: smallest box side in view pixels (32, SCRL; one C5 cell of a ResNet).
        max_tries: candidate boxes per image (50, SCRL).
        iou_threshold: kept boxes overlap each other with IoU below this (0.5, SCRL).
        temporal: pair view 0 (source ``"query"``) with an augmentation of the other acquisition
            (source ``"temporal"``) instead of a second augmentation of view 0 (``"same"``).
            Needs both acquisitions on one canvas (the fMoW and raster datasets do it).

    Raises:
        ValueError: if an argument is out of range.
    """

    online_sources: ClassVar[frozenset[str]] = frozenset({"query", "same"})
    key_sources: ClassVar[frozenset[str]] = frozenset({"query", "same"})
    needs_feature_map = True
    needs_view_params = True
    needs_projection = False  # SCRL has its own projector on RoIAlign features
    default_options: ClassVar[Mapping[str, float]] = SCRL_OPTIONS

    def __init__(
        self,
        input_dim: int = 2048,
        view_size: int = 224,
        hidden_dim: int = 4096,
        output_dim: int = 256,
        num_boxes: int = 10,
        min_size: float = 32.0,
        max_tries: int = 50,
        iou_threshold: float = 0.5,
        temporal: bool = False,
    ) -> None:
        super().__init__()
        check_at_least("view_size", view_size, 2)
        check_at_least("num_boxes", num_boxes, 1)
        if not (math.isfinite(min_size) and 0 < min_size < view_size - 1):
            raise ValueError(f"min_size must be in (0, view_size - 1), got {min_size}")
        check_at_least("max_tries", max_tries, 1)
        check_range("iou_threshold", iou_threshold, low=0, high=1, low_open=True)
        self.view_size = view_size
        self.num_boxes = num_boxes
        self.min_size = float(min_size)
        self.max_tries = max_tries
        self.iou_threshold = float(iou_threshold)
        self.temporal = temporal
        self.needs_shared_canvas = temporal
        #: The two view sources whose boxes are matched (view 1, view 2).
        self.pair_sources = ("query", "temporal" if temporal else "same")
        self.projector = SCRLProjectionHead(input_dim, hidden_dim, output_dim)
        self.predictor = SCRLPredictionHead(output_dim, hidden_dim, output_dim)
        self.projector_momentum = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.projector_momentum)
        self.loss = SCRLLoss()

    @classmethod
    def view_sources(
        cls, options: Mapping[str, LossOptionValue]
    ) -> tuple[frozenset[str], frozenset[str]]:
        """Both views through both encoders: ``query`` and ``same`` (or ``temporal``).

        Args:
            options: the term's resolved options.

        Returns:
            ``(online_sources, key_sources)``.
        """
        sources = frozenset({"query", "temporal" if options.get("temporal") else "same"})
        return sources, sources

    @classmethod
    def check_context(cls, ctx: LossTermContext) -> None:
        """Validate the ``"scrl"`` options against the task's view size.

        Args:
            ctx: the task's context.

        Raises:
            ValueError: for a bad option, or when ``model.crop_size`` leaves no room for a box of
                ``min_size`` pixels.
        """
        options = _term_options(ctx)
        if not options["min_size"] < ctx.crop_size - 1:
            raise ValueError(
                f"model.crop_size={ctx.crop_size} is too small for the 'scrl' loss: its boxes need "
                f"sides of min_size={options['min_size']} pixels (set "
                "model.loss_options.scrl.min_size or a larger crop)"
            )

    @classmethod
    def from_context(cls, ctx: LossTermContext) -> "SCRLTerm":
        """Build the term on the backbone's feature size, the view size and the options.

        Args:
            ctx: the task's context (options in ``ctx.options``).

        Returns:
            The term.
        """
        options = _term_options(ctx)
        return cls(
            input_dim=ctx.num_features,
            view_size=ctx.crop_size,
            hidden_dim=int(options["hidden_dim"]),
            output_dim=int(options["output_dim"]),
            num_boxes=int(options["num_boxes"]),
            min_size=float(options["min_size"]),
            max_tries=int(options["max_tries"]),
            iou_threshold=float(options["iou_threshold"]),
            temporal=bool(options["temporal"]),
        )

    def forward(self, out: StepOutputs) -> TermOutput:
        """SCRL loss of the step's two views (``pair_sources``).

        Args:
            out: the step's shared outputs (feature maps and view geometry of both sources from
                both encoders).

        Returns:
            The loss and ``scrl_boxes`` (mean box pairs per image).

        Raises:
            RuntimeError: if the task did not provide feature maps or view geometry.
        """
        first, second = self.pair_sources
        if not (
            {first, second} <= out.online.keys()
            and {first, second} <= out.momentum.keys()
            and {first, second} <= out.view_params.keys()
        ):
            raise RuntimeError(f"the 'scrl' loss needs the views {first!r} and {second!r}")
        maps = [
            out.online[first].feature_map,
            out.online[second].feature_map,
            out.momentum[first].feature_map,
            out.momentum[second].feature_map,
        ]
        if any(m is None for m in maps):
            raise RuntimeError("the 'scrl' loss needs the feature maps and view geometry")
        online1, online2, target1, target2 = (m for m in maps if m is not None)
        boxes = sample_scrl_boxes(
            out.view_params[first],
            out.view_params[second],
            num_boxes=self.num_boxes,
            min_size=self.min_size,
            max_tries=self.max_tries,
            iou_threshold=self.iou_threshold,
        )
        metrics = {"scrl_boxes": boxes.valid.float().mean()}
        if boxes.num_boxes < 2:
            return TermOutput(self._zero_loss(online1, online2), metrics)

        n = boxes.num_boxes
        rois = torch.cat(
            [
                roi_features(online1, boxes.boxes1, self.view_size),
                roi_features(online2, boxes.boxes2, self.view_size),
            ]
        )  # [2N, F], both views in one batch for the heads' BatchNorm (as SCRL)
        predictions = self.predictor(self.projector(rois))  # [2N, D]
        with torch.no_grad():
            target_rois = torch.cat(
                [
                    roi_features(target1, boxes.boxes1, self.view_size),
                    roi_features(target2, boxes.boxes2, self.view_size),
                ]
            )  # [2N, F]
            targets = self.projector_momentum(target_rois)  # [2N, D]
        loss = self.loss(predictions[:n], predictions[n:], targets[:n], targets[n:])
        return TermOutput(loss, metrics)

    def _zero_loss(self, *feature_maps: Tensor) -> Tensor:
        """A zero loss attached to the online heads and the feature maps (no box pairs).

        Args:
            *feature_maps: the query encoder's maps.

        Returns:
            Scalar float32 zero whose backward gives every online parameter a zero gradient.
        """
        online = [*self.projector.parameters(), *self.predictor.parameters(), *feature_maps]
        return torch.stack([t.float().sum() for t in online]).sum() * 0.0

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA-update the target projector: ``ema = m * ema + (1 - m) * online``.

        Args:
            momentum: the task's momentum ``m``.
        """
        update_momentum(self.projector, self.projector_momentum, momentum)
