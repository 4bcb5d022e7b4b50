"""Prediction heads."""

from torch import Tensor, nn

__all__ = ["GeoLocationHead"]


class GeoLocationHead(nn.Module):
    r"""Geo-location classifier on the query's projection: ReLU, then Linear.

    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980, Sec. 4.2)
    feeds the query's 128-d MoCo-v2 projection *before* L2 normalisation through
    :math:`z = W\,\mathrm{ReLU}(q_{raw}) + b` and trains it with cross-entropy on the image's
    geo-cluster id (:class:`geossl.losses.GeoLocationLoss`).

    Args:
        input_dim: size of the projection (128, MoCo-v2's output dimension).
        num_clusters: number of geo clusters :math:`K_{geo}` (100 in the paper).

    Raises:
        ValueError: if ``input_dim`` or ``num_clusters`` is < 1.
    """

    def __init__(self, input_dim: int = 128, num_clusters: int = 100) -> None:
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
        self.relu = nn.ReLU()
        self.linear = nn.Linear(input_dim, num_clusters)

    def forward(self, x: Tensor) -> Tensor:
        """Predict geo-cluster logits.

        Args:
            x: ``[B, input_dim]`` un-normalised projections.

        Returns:
            ``[B, num_clusters]`` logits.
        """
        out: Tensor = self.linear(self.relu(x))
        return out
