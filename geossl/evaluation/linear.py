r"""The linear probe: multinomial logistic regression on frozen features.

torchgeo-bench's protocol (its ``linear`` method): for each $C$ of a log grid, minimise

$$
L(W, b) = \frac{1}{n} \sum_{i=1}^{n} \mathrm{CE}(W x_i + b,\, y_i)
          + \frac{1}{2 C n} \lVert W \rVert_2^2
$$

(scikit-learn's scaling of the L2 penalty, so that $C$ means what it means there) with
L-BFGS and a strong-Wolfe line search on the training features; keep the $C$ with the best
validation accuracy; refit on train + validation with it; report the test accuracy. The grid is
torchgeo-bench's, $10^{-6} \ldots 10^{4}$ in 40 log steps. Features are z-scored with the
training statistics first, which conditions L-BFGS and makes one grid fit every backbone.

Why not scikit-learn: it is not a geossl dependency, and torchgeo-bench itself solves this
objective with ``torch.optim.LBFGS``. The grid is walked from strong to weak regularisation,
each fit starting from the previous solution (a warm start: the same optimum, fewer steps).

Examples:
    >>> import torch
    >>> x = torch.cat([torch.randn(20, 4) + 3, torch.randn(20, 4) - 3])
    >>> y = torch.tensor([0] * 20 + [1] * 20)
    >>> probe = linear_probe(x, y, x, y, x, num_classes=2, c_grid=[0.01, 1.0])
    >>> bool((probe.test_predictions == y).all()), probe.best_c in (0.01, 1.0)
    (True, True)
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.utils.checks import check_positive

__all__ = [
    "DEFAULT_C_GRID",
    "LinearProbeResult",
    "fit_logistic_regression",
    "linear_probe",
]

#: torchgeo-bench's grid of inverse regularisation strengths: ``logspace(-6, 4, 40)``.
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-6, 4, 40))


@dataclass
class LinearProbeResult:
    """What [linear_probe][geossl.evaluation.linear.linear_probe] found.

    Attributes:
        best_c: the $C$ with the best validation accuracy (the smallest on ties).
        val_accuracy: validation accuracy by $C$, in grid order.
        test_predictions: ``int64 [N_test]`` predicted classes of the final classifier.
    """

    best_c: float
    val_accuracy: dict[float, float] = field(default_factory=dict)
    test_predictions: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))


def fit_logistic_regression(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    c: float,
    *,
    max_iter: int = 1000,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimise the module doc's objective for one $C$ with L-BFGS.

    Args:
        x: ``[N, F]`` features (z-scored by the caller).
        y: ``int64 [N]`` classes in ``[0, num_classes)``.
        num_classes: number of classes ``K``.
        c: inverse regularisation strength (> 0).
        max_iter: L-BFGS iterations.
        init: ``(weight [K, F], bias [K])`` to start from (a warm start), else zeros.

    Returns:
        ``(weight [K, F], bias [K])``.

    Raises:
        ValueError: if ``c <= 0`` or the shapes disagree.
    """
    check_positive("C", c)
    if x.ndim != 2 or y.shape != (len(x),) or len(x) == 0:
        raise ValueError(
            f"need x [N, F] and y [N] with N > 0, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    # Clones: features extracted under torch.inference_mode cannot be saved for backward.
    features, targets = x.float().clone(), y.long().clone()
    if init is None:
        weight = torch.zeros(num_classes, features.shape[1])
        bias = torch.zeros(num_classes)
    else:
        weight, bias = init[0].clone(), init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    penalty = 0.5 / (c * len(features))
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.t() + bias, targets)
        loss = loss + penalty * weight.square().sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    return weight.detach(), bias.detach()


def _standardise(train: Tensor, *others: Tensor) -> list[Tensor]:
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp(min=1e-6)
    return [(t.float() - mean) / std for t in (train, *others)]


def _predict(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return (x @ weight.t() + bias).argmax(1)


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    test_x: Tensor,
    *,
    num_classes: int,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    max_iter: int = 1000,
) -> LinearProbeResult:
    """Choose $C$ on validation, refit on train + validation, predict test.

    Args:
        train_x: ``[N, F]`` training features.
        train_y: ``int64 [N]`` training classes.
        val_x: ``[M, F]`` validation features.
        val_y: ``int64 [M]`` validation classes.
        test_x: ``[T, F]`` test features.
        num_classes: number of classes.
        c_grid: the $C$ values to try.
        max_iter: L-BFGS iterations per fit.

    Returns:
        The chosen $C$, the validation accuracies and the test predictions.

    Raises:
        ValueError: for an empty grid or split, or a non-positive $C$.
    """
    grid = sorted(float(c) for c in c_grid)
    if not grid or grid[0] <= 0:
        raise ValueError(f"c_grid must hold positive values, got {list(c_grid)}")
    if len(val_x) == 0 or len(test_x) == 0:
        raise ValueError("the validation and test splits must not be empty")
    train_z, val_z = _standardise(train_x, val_x)
    accuracy: dict[float, float] = {}
    state: tuple[Tensor, Tensor] | None = None
    for c in grid:  # strong to weak regularisation, each from the previous optimum
        state = fit_logistic_regression(
            train_z, train_y, num_classes, c, max_iter=max_iter, init=state
        )
        accuracy[c] = float((_predict(val_z, *state) == val_y).float().mean())
    best = max(grid, key=lambda c: (accuracy[c], -c))
    both_x = torch.cat([train_x, val_x])
    both_y = torch.cat([train_y, val_y])
    both_z, test_z = _standardise(both_x, test_x)
    weight, bias = fit_logistic_regression(both_z, both_y, num_classes, best, max_iter=max_iter)
    return LinearProbeResult(best, accuracy, _predict(test_z, weight, bias))
