"""CO2: consistent contrast, a consistency regulariser on MoCo's similarities to the queue."""

import torch.nn.functional as F
from torch import Tensor, nn

from geossl.losses.utils import check_temperature, normalize_query_key_negatives
from geossl.utils.amp import autocast_disabled

__all__ = ["CO2Loss"]


class CO2Loss(nn.Module):
    r"""Consistency loss between the query's and the positive key's similarities to the negatives.

    CO2 (Wei et al., "CO2: Consistent Contrast for Unsupervised Visual Representation Learning",
    ICLR 2021, https://arxiv.org/abs/2010.02217) asks the query $q$ and its positive key
    $p$ to agree on how similar they are to each negative $n_1 \dots n_K$ of the queue
    (all L2-normalised), with temperature $\tau_{con}$:

    $$
    Q_i = \frac{\exp(q \cdot n_i / \tau_{con})}{\sum_{j=1}^{K} \exp(q \cdot n_j / \tau_{con})},
    \qquad
    P_i = \frac{\exp(p \cdot n_i / \tau_{con})}{\sum_{j=1}^{K} \exp(p \cdot n_j / \tau_{con})}
    $$

    $$
    \mathcal{L}_{con} = \frac{1}{B} \sum_{b=1}^{B} \left[
        \tfrac12 \mathrm{KL}(P_b \,\|\, Q_b) + \tfrac12 \mathrm{KL}(Q_b \,\|\, P_b) \right]
        = \frac{1}{2B} \sum_{b=1}^{B} \sum_{i=1}^{K} (P_{b,i} - Q_{b,i})
          (\log P_{b,i} - \log Q_{b,i})
    $$

    The softmax runs over the negatives only (the positive is not one of the $K$ classes).
    The paper's total loss is $\mathcal{L} = \mathcal{L}_{moco} + \alpha \mathcal{L}_{con}$;
    $\alpha$ is the weight of the ``co2`` term in ``GeoSSLTask(losses=...)``, not a parameter
    of this module.

    Gradient: the positive key comes from the key (momentum) encoder and the negatives from the
    queue, so both are detached; the gradient flows to the query only, through both KL directions.
    (A popular third-party implementation wraps the result in ``torch.tensor(...)``, which detaches
    it from the graph and trains nothing; this loss stays in the graph.)

    Numerics: the inputs are L2-normalised along dim 1 **inside** this loss (raw projections are
    accepted, as in [`MoCoLoss`][geossl.losses.MoCoLoss]); the similarities, ``log_softmax`` and the
    KL terms are computed in float32 with autocast disabled, so bf16 / fp16 inputs give an accurate
    float32 loss (``1 / tau_con = 25`` amplifies bf16 rounding of the dot products). ``log_softmax``
    keeps it stable for any temperature; identical ``q`` and ``p`` give exactly 0.

    Args:
        temperature: $\tau_{con}$ > 0. Default 0.04, the CO2 paper's value on MoCo
            (Wei et al., 2021, with $\alpha = 10$); both are configurable, the
            temperature here or through ``GeoSSLTask(loss_options={"co2": {"temperature": ...}})``.

    Raises:
        ValueError: if ``temperature`` is not a finite positive number.
    """

    def __init__(self, temperature: float = 0.04) -> None:
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature

    def forward(self, query: Tensor, key: Tensor, negatives: Tensor) -> Tensor:
        """Compute the symmetric KL between the query's and the key's distributions.

        Args:
            query: ``[B, D]`` query embeddings (gradient flows here).
            key: ``[B, D]`` positive key of each query, from the key encoder (detached).
            negatives: ``[K, D]`` negatives shared by every query, e.g. the queue (detached).

        Returns:
            Scalar float32 loss, the mean over the batch (>= 0).

        Raises:
            ValueError: if the shapes do not match.
        """
        with autocast_disabled(query.device):
            q, p, n = normalize_query_key_negatives(query, key, negatives)  # [B|B|K, D]
            log_q = F.log_softmax(q @ n.T / self.temperature, dim=1)  # [B, K]
            log_p = F.log_softmax(p @ n.T / self.temperature, dim=1)  # [B, K]
            # 1/2 KL(P||Q) + 1/2 KL(Q||P) = 1/2 sum_i (P_i - Q_i)(log P_i - log Q_i)
            sym_kl = (log_p.exp() - log_q.exp()) * (log_p - log_q)  # [B, K]
            return 0.5 * sym_kl.sum(dim=1).mean()
