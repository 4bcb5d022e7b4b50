"""Geo-location pretext loss (Geography-aware SSL)."""

import torch.nn.functional as F
from torch import Tensor, nn

from geossl.utils.amp import autocast_disabled

__all__ = ["GeoLocationLoss"]


class GeoLocationLoss(nn.Module):
    r"""Cross-entropy between geo-cluster logits and each image's cluster id.

    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980) clusters the
    (lat, lon) of the training images into $K_{geo} = 100$ clusters and trains a head on the
    query's projection to predict the cluster $c_b$ of each image:

    $$
    \mathcal{L}_{geo} = -\frac{1}{|V|} \sum_{b \in V} \log \operatorname{softmax}(z_b)_{c_b},
    \qquad V = \{ b : c_b \neq \text{ignore\_index} \}
    $$

    Samples whose cluster is unknown carry ``ignore_index`` (-1 in geossl batches) and do not count.
    When no sample of the batch has a known cluster the loss is ``0`` (still connected to the graph,
    so DDP sees a gradient for the head) instead of PyTorch's ``nan``.
    The logits are cast to float32 with autocast disabled (safe under bf16 mixed precision).

    Args:
        ignore_index: target value that marks an unknown cluster. Default -1 (geossl convention,
            see ``docs/design.md``).
    """

    def __init__(self, ignore_index: int = -1) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``[B, K]`` un-normalised cluster scores.
            target: ``[B]`` integer cluster ids in ``0..K-1`` or ``ignore_index``.

        Returns:
            Scalar float32 loss (mean over the samples with a known cluster).

        Raises:
            ValueError: if the shapes do not match.
        """
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"logits must be [B, K] and target [B], got {tuple(logits.shape)} "
                f"and {tuple(target.shape)}"
            )
        with autocast_disabled(logits.device):
            logits = logits.float()
            target = target.long()
            valid = target != self.ignore_index  # [B]
            # sum / max(count, 1): no nan when every target is ignored, no host sync.
            per_sample = F.cross_entropy(
                logits, target, ignore_index=self.ignore_index, reduction="none"
            )  # [B], 0 where ignored
            return per_sample.sum() / valid.sum().clamp(min=1)
