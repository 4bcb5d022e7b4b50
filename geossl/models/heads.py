"""Prediction heads."""

import math

import torch.nn.functional as F
from torch import Tensor, nn

from geossl.utils.checks import check_at_least

__all__ = ["GeoLocationHead"]


class GeoLocationHead(nn.Module):
    r"""Geo-location classifier on the query's projection: ReLU, then Linear.

    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980, Sec. 4.2)
    feeds the query's 128-d MoCo-v2 projection *before* L2 normalisation through
    $z = W\,\mathrm{ReLU}(q_{raw}) + b$ and trains it with cross-entropy on the image's
    geo-cluster id ([`geossl.losses.GeoLocationLoss`][geossl.losses.GeoLocationLoss]).

    With ``normalize_input`` (the default) the projection is first rescaled to norm
    $\sqrt{D}$: $z = W\,\mathrm{ReLU}(\sqrt{D}\,q_{raw} / \lVert q_{raw}\rVert) + b$.
    The contrastive terms only see $q_{raw} / \lVert q_{raw}\rVert$, so nothing holds the
    norm of $q_{raw}$ (their large, norm-orthogonal gradients at temperature 0.02 inflate it:
    1.1 at initialisation, 79 six steps later with ResNet-18 at batch 8), and the raw head's logits
    grow with it: the geo cross-entropy then reads 25 to 300 where chance is
    $\ln K$. Rescaled, the logits' scale is the head's own (measured in docs/ablation.md).

    Args:
        input_dim: size of the projection (128, MoCo-v2's output dimension).
        num_clusters: number of geo clusters $K_{geo}$ (100 in the paper).
        normalize_input: rescale the projection to norm $\sqrt{D}$ (False: the paper's head).

    Raises:
        ValueError: if ``input_dim`` or ``num_clusters`` is < 1.

    Examples:
        >>> import torch
        >>> head = GeoLocationHead(input_dim=4, num_clusters=3)
        >>> x = torch.tensor([[1.0, 2.0, 0.0, -1.0]])
        >>> torch.allclose(head(x), head(100 * x))  # the scale of the projection does not matter
        True
        >>> head(x).shape
        torch.Size([1, 3])
    """

    def __init__(
        self, input_dim: int = 128, num_clusters: int = 100, normalize_input: bool = True
    ) -> None:
        super().__init__()
        check_at_least("input_dim", input_dim, 1)
        check_at_least("num_clusters", num_clusters, 1)
        self.normalize_input = normalize_input
        self.scale = math.sqrt(input_dim)
        self.relu = nn.ReLU()
        self.linear = nn.Linear(input_dim, num_clusters)

    def forward(self, x: Tensor) -> Tensor:
        """Predict geo-cluster logits.

        Args:
            x: ``[B, input_dim]`` un-normalised projections.

        Returns:
            ``[B, num_clusters]`` logits.
        """
        if self.normalize_input:
            x = self.scale * F.normalize(x.float(), dim=1)
        out: Tensor = self.linear(self.relu(x))
        return out
