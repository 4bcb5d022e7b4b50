r"""SCRL's symmetric BYOL loss on matched box pairs.

Roh et al., "Spatially Consistent Representation Learning", CVPR 2021,
https://arxiv.org/abs/2103.06122 (Sec. 3, Eq. 2): for every box $b$ seen in view 1 as
$b_1$ and in view 2 as $b_2$, the online prediction of one view regresses the target
projection of the other view, as in BYOL, but on RoI features rather than whole images.
"""

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SCRLLoss"]


class SCRLLoss(nn.Module):
    r"""Symmetric negative-cosine (BYOL) loss averaged over matched boxes.

    With $p_k$ the online predictions and $z_k$ the target projections of the boxes
    in view $k$:

    $$
    \mathcal{L} = \frac{1}{N} \sum_{i=1}^{N}
    \Big[\big(2 - 2 \cos(p_1^i, z_2^i)\big) + \big(2 - 2 \cos(p_2^i, z_1^i)\big)\Big]
    $$

    ($2 - 2\cos$ is the squared distance of the L2-normalised vectors), so
    $\mathcal{L} \in [0, 8]$: 0 when predictions match their targets, 8 when opposite.
    The targets are detached (the target branch is an EMA network and gets no gradient).
    Computed in float32.

    With no boxes ($N = 0$, every image of the batch skipped) the loss is a zero that is
    still attached to the predictions' graph, so a backward pass reaches every online parameter
    with a zero gradient and DDP ranks stay in step.
    """

    def forward(self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            p1: ``[N, D]`` online predictions of the boxes in view 1.
            p2: ``[N, D]`` online predictions of the same boxes in view 2.
            z1: ``[N, D]`` target projections of the boxes in view 1 (detached here).
            z2: ``[N, D]`` target projections of the boxes in view 2 (detached here).

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: if the inputs are not four ``[N, D]`` tensors of one shape.
        """
        if p1.ndim != 2 or any(t.shape != p1.shape for t in (p2, z1, z2)):
            raise ValueError(
                "p1, p2, z1, z2 must all be [N, D], got "
                f"{[tuple(t.shape) for t in (p1, p2, z1, z2)]}"
            )
        if p1.shape[0] == 0:
            return (p1.float().sum() + p2.float().sum()) * 0.0
        p1, p2 = F.normalize(p1.float(), dim=1), F.normalize(p2.float(), dim=1)  # [N, D]
        z1 = F.normalize(z1.detach().float(), dim=1)  # [N, D]
        z2 = F.normalize(z2.detach().float(), dim=1)  # [N, D]
        per_box = (2 - 2 * (p1 * z2).sum(dim=1)) + (2 - 2 * (p2 * z1).sum(dim=1))  # [N]
        return per_box.mean()
