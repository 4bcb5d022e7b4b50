r"""SCRL heads and RoI pooling of backbone feature maps.

SCRL (Roh et al., "Spatially Consistent Representation Learning", CVPR 2021,
https://arxiv.org/abs/2103.06122) pools one feature per box from the C5 map with RoIAlign, then
runs BYOL's heads on it: a projector (online and EMA target) and a predictor (online only). The
heads are BYOL's MLP,
$\mathrm{Linear} \to \mathrm{BN} \to \mathrm{ReLU} \to \mathrm{Linear}$, so geossl wraps lightly's
``BYOLProjectionHead`` / ``BYOLPredictionHead`` (the first Linear has no bias: the BatchNorm after
it makes it redundant).
"""

from typing import cast

from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import Tensor, nn
from torchvision.ops import roi_align

from geossl.utils.checks import check_at_least

__all__ = ["SCRLPredictionHead", "SCRLProjectionHead", "roi_features"]


def _check_dims(input_dim: int, hidden_dim: int, output_dim: int) -> None:
    """Check the sizes of a two-layer MLP head.

    Args:
        input_dim: input size.
        hidden_dim: hidden size.
        output_dim: output size.

    Raises:
        ValueError: naming the first size that is < 1.
    """
    for name, value in [
        ("input_dim", input_dim),
        ("hidden_dim", hidden_dim),
        ("output_dim", output_dim),
    ]:
        check_at_least(name, value, 1)


class SCRLProjectionHead(nn.Module):
    r"""SCRL's projector $g$: Linear -> BN -> ReLU -> Linear on RoI features.

    $$
    z = W_2\,\mathrm{ReLU}\big(\mathrm{BN}(W_1 h)\big) + b_2
    $$

    Defaults are SCRL's (``config/scrl_200ep.yaml``: ``proj_head`` 2048 -> 4096 -> 256, the
    sizes of BYOL's projector). The online copy is trained, the target copy is its EMA.
    BatchNorm needs at least two boxes in training mode.

    Args:
        input_dim: RoI feature size $F$ (2048 for ResNet-50's C5).
        hidden_dim: hidden size (4096).
        output_dim: projection size $D$ (256).

    Raises:
        ValueError: if a size is < 1.
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 4096, output_dim: int = 256
    ) -> None:
        super().__init__()
        _check_dims(input_dim, hidden_dim, output_dim)
        self.mlp = cast(nn.Module, BYOLProjectionHead(input_dim, hidden_dim, output_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Project RoI features.

        Args:
            x: ``[N, input_dim]`` RoI features.

        Returns:
            ``[N, output_dim]`` projections (not normalised).
        """
        out: Tensor = self.mlp(x)
        return out


class SCRLPredictionHead(nn.Module):
    r"""SCRL's predictor $q$: Linear -> BN -> ReLU -> Linear on projections (online only).

    $$
    p = W_2\,\mathrm{ReLU}\big(\mathrm{BN}(W_1 z)\big) + b_2
    $$

    Defaults are SCRL's / BYOL's predictor (256 -> 4096 -> 256).

    Args:
        input_dim: projection size $D$ (256).
        hidden_dim: hidden size (4096).
        output_dim: prediction size, equal to the target projection size (256).

    Raises:
        ValueError: if a size is < 1.
    """

    def __init__(self, input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__()
        _check_dims(input_dim, hidden_dim, output_dim)
        self.mlp = cast(nn.Module, BYOLPredictionHead(input_dim, hidden_dim, output_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Predict the target projection.

        Args:
            x: ``[N, input_dim]`` online projections.

        Returns:
            ``[N, output_dim]`` predictions (not normalised).
        """
        out: Tensor = self.mlp(x)
        return out


def roi_features(feature_map: Tensor, boxes: Tensor, view_size: int) -> Tensor:
    r"""One feature per box: 1x1 RoIAlign on a backbone feature map.

    SCRL's setting (``config/scrl_200ep.yaml``): ``output_size=1``, ``spatial_scale`` = map side /
    view side (1/32 for ResNet C5 at 224 px), ``sampling_ratio=-1`` (adaptive: about one sample
    per map cell) and ``aligned=False``: a box coordinate $u$ in view pixels reads the map at
    $u \cdot h / S$, the pixel-centre convention of [`ViewParams`][geossl.transforms.ViewParams].
    Use views whose side is a multiple of the backbone's stride (224 = 7 x 32), where
    $h / S$ is exactly ``1 / stride``.

    Computed in float32 (as torchvision's autocast rule for ``roi_align`` does); gradients flow
    to ``feature_map``.

    Args:
        feature_map: ``[B, F, h, w]`` backbone map (C5) of views of side ``view_size``.
        boxes: ``[N, 5]`` ``(batch index, x1, y1, x2, y2)`` in view pixels
            ([`ScrlBoxes`][geossl.transforms.ScrlBoxes]).
        view_size: side $S$ of the views in pixels.

    Returns:
        ``[N, F]`` float32 RoI features.

    Raises:
        ValueError: if the shapes do not fit or ``view_size < 1``.
    """
    if feature_map.ndim != 4:
        raise ValueError(f"feature_map must be [B, F, h, w], got {tuple(feature_map.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must be [N, 5], got {tuple(boxes.shape)}")
    check_at_least("view_size", view_size, 1)
    spatial_scale = feature_map.shape[-2] / view_size
    pooled: Tensor = roi_align(
        feature_map.float(),
        boxes.float(),
        output_size=1,
        spatial_scale=spatial_scale,
        sampling_ratio=-1,
        aligned=False,
    )  # [N, F, 1, 1]
    return pooled.flatten(1)  # [N, F]
