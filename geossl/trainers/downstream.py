"""What every downstream task shares: pretrained-trunk loading, input normalisation, provenance.

The fMoW classifier, the xView detector and the SpaceNet segmenter are torchgeo-style
LightningModules that inherit [`DownstreamWeights`][geossl.trainers.downstream.DownstreamWeights]
next to their torchgeo base. The conventions, so that ``geossl finetune / evaluate / compare`` drive
them alike:

- ``weights`` (``random``, ``imagenet``, a torchgeo name or a file; `geossl.weights`) is
  resolved once in ``configure_models`` and loaded strictly into the trunk with
  `DownstreamWeights.load_pretrained_trunk`; ``adapt_in_chans`` allows a band-count change.
- Batches hold ``image`` as float in ``[0, 1]`` (the data module scales raw values); the task
  normalises on the device with ``mean`` / ``std`` (the weights' own when not given).
- ``checkpoint["geossl_task"]`` names the task and ``checkpoint["geossl_init_weights"]`` the
  weights it started from (name, kind, sha256), so a saved model says where it came from.
- Reloading a trained model must not resolve the weights again (the file may be gone and the
  state dict replaces them anyway): ``Task.load_from_checkpoint(path, weights="checkpoint")``
  (`FROM_CHECKPOINT`) builds the model with placeholders that the checkpoint fills, the
  normalisation buffers included (they are persistent).
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from geossl.utils.normalization import Normalization
from geossl.weights import InitWeights, load_state_dict_strict, resolve_init_weights

__all__ = ["FROM_CHECKPOINT", "DownstreamWeights"]

#: ``weights`` value for a model whose state dict is about to be loaded from a checkpoint.
FROM_CHECKPOINT = "checkpoint"


class DownstreamWeights:
    """Mixin for downstream LightningModules: strict trunk loading and input normalisation.

    Subclasses set `task_name` and call
    [`load_pretrained_trunk`][geossl.trainers.downstream.DownstreamWeights.load_pretrained_trunk]
    from ``configure_models`` and
    [`normalize`][geossl.trainers.downstream.DownstreamWeights.normalize] on each batch's image.
    """

    #: Registry name (``"fmow-cls"``, ``"xview-det"``, ``"spacenet-seg"``).
    task_name: ClassVar[str] = ""

    #: Name, kind and hash of the weights the trunk started from (:meth:`init_weights_record`).
    init_weights_info: dict[str, Any] | None = None

    def load_pretrained_trunk(
        self,
        trunk: nn.Module,
        *,
        weights: str,
        backbone: str,
        in_channels: int,
        adapt_in_chans: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        ignore_prefixes: Sequence[str] = (),
    ) -> InitWeights | None:
        """Resolve ``weights``, fit them to ``in_channels`` and load them into ``trunk`` strictly.

        Also registers the normalisation buffers ``input_mean`` / ``input_std`` (``[1, C, 1, 1]``):
        ``mean`` / ``std`` when given, else the weights'.

        Args:
            trunk: the ResNet trunk (timm model, detection ``backbone.body``, smp encoder).
            weights: ``--weights`` value.
            backbone: timm architecture of the trunk.
            in_channels: the data's band count.
            adapt_in_chans: adapt the first convolution when the band counts differ.
            mean: per-band mean of the ``[0, 1]`` input, overriding the weights'.
            std: per-band standard deviation, overriding the weights'.
            ignore_prefixes: weight keys the trunk lacks on purpose.

        Returns:
            The resolved weights (None for `FROM_CHECKPOINT`).

        Raises:
            ValueError: on a band mismatch without ``adapt_in_chans``, a key or shape mismatch, or
                a normalisation that is unknown or has the wrong length.
        """
        module = self._as_module()
        if weights == FROM_CHECKPOINT:  # placeholders: the checkpoint's state dict replaces them
            module.register_buffer("input_mean", torch.zeros(1, in_channels, 1, 1))
            module.register_buffer("input_std", torch.ones(1, in_channels, 1, 1))
            return None
        init = resolve_init_weights(weights, backbone=backbone, in_chans=in_channels)
        init = init.for_in_chans(in_channels, adapt=adapt_in_chans)
        if init.state_dict is not None:
            load_state_dict_strict(
                trunk, init.state_dict, source=str(weights), ignore_prefixes=ignore_prefixes
            )
        mean = tuple(mean) if mean is not None else init.mean
        std = tuple(std) if std is not None else init.std
        if not mean or not std:
            raise ValueError(
                f"--weights {weights}: the input normalisation of {in_channels}-band data is "
                "unknown; give model.mean and model.std (per band, of [0, 1] inputs)"
            )
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(
                f"model.mean / model.std need {in_channels} values (one per band), got "
                f"{len(mean)} / {len(std)}"
            )
        input_mean, input_std = Normalization.of(mean, std, where="model").tensors()
        module.register_buffer("input_mean", input_mean.view(1, -1, 1, 1))
        module.register_buffer("input_std", input_std.view(1, -1, 1, 1))
        self.init_weights_info = {
            "name": init.name,
            "spec": init.spec,
            "kind": init.kind,
            "sha256": init.sha256,
            "backbone": init.backbone,
            "in_chans": init.in_chans,
            "adapted_from": init.adapted_from,
        }
        return init

    def _as_module(self) -> nn.Module:
        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} must also be an nn.Module")
        return self

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per band, for ``[B, C, H, W]`` or ``[B, T, C, H, W]`` input."""
        module = self._as_module()
        mean: Tensor = module.get_buffer("input_mean")
        std: Tensor = module.get_buffer("input_std")
        if image.ndim == 5:
            mean, std = mean.unsqueeze(1), std.unsqueeze(1)
        return (image.float() - mean) / std

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task name and the starting weights in the checkpoint."""
        checkpoint["geossl_task"] = self.task_name
        checkpoint["geossl_init_weights"] = dict(self.init_weights_info or {})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the starting weights' record back from the checkpoint."""
        record = checkpoint.get("geossl_init_weights")
        if isinstance(record, dict) and record:
            self.init_weights_info = dict(record)
