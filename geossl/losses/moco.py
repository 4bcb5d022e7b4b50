"""InfoNCE over a queue of negatives (MoCo)."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geossl.losses.utils import check_temperature, normalize_query_key_negatives
from geossl.utils.amp import autocast_disabled

__all__ = ["MoCoLoss"]


class MoCoLoss(nn.Module):
    r"""InfoNCE loss with one positive key per query and a shared bank of negatives.

    For a query $q$, its positive key $k_+$ and the negatives $n_1 \dots n_K$
    (all L2-normalised), with temperature $\tau$:

    $$
    \mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \log
        \frac{\exp(q_b \cdot k_{+,b} / \tau)}
             {\exp(q_b \cdot k_{+,b} / \tau) + \sum_{j=1}^{K} \exp(q_b \cdot n_j / \tau)}
    $$

    implemented as cross-entropy over the logits ``[q.k+, q.n_1, ..., q.n_K] / tau`` with the
    positive at index 0 (MoCo, He et al., CVPR 2020, https://arxiv.org/abs/1911.05722, Alg. 1).

    Normalisation: the inputs are L2-normalised along dim 1 **inside** this loss, so callers may
    pass raw projections; already normalised inputs are unchanged (up to rounding).
    The key and the negatives are treated as constants (detached): in MoCo they come from the
    momentum encoder and the queue, and no gradient may flow into them.
    The logits are computed in float32 with autocast disabled, so the loss is accurate under
    bf16 / fp16 mixed precision (``1 / tau = 50`` amplifies bf16 rounding of the dot products).

    Args:
        temperature: $\tau$ > 0. Default 0.02, the Geography-aware SSL value (Ayush et al.,
            ICCV 2021, https://arxiv.org/abs/2011.09980); MoCo-v2 uses 0.2.

    Raises:
        ValueError: if ``temperature`` is not a finite positive number.
    """

    def __init__(self, temperature: float = 0.02) -> None:
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature

    def forward(self, query: Tensor, key: Tensor, negatives: Tensor) -> Tensor:
        """Compute the InfoNCE loss.

        Args:
            query: ``[B, D]`` query embeddings (gradient flows here).
            key: ``[B, D]`` positive key of each query (detached).
            negatives: ``[K, D]`` negative keys shared by every query, e.g. the queue (detached).

        Returns:
            Scalar float32 loss, the mean over the batch.

        Raises:
            ValueError: if the shapes do not match.
        """
        with autocast_disabled(query.device):
            q, k, n = normalize_query_key_negatives(query, key, negatives)  # [B|B|K, D]
            l_pos = (q * k).sum(dim=1, keepdim=True)  # [B, 1]
            l_neg = q @ n.T  # [B, K]
            logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature  # [B, 1 + K]
            labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # positive at 0
            return F.cross_entropy(logits, labels)
