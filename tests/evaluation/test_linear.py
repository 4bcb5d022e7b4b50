"""The linear probe: the regularised logistic objective at its optimum, C chosen on validation."""

import pytest
import torch

from geossl.evaluation.linear import DEFAULT_C_GRID, fit_logistic_regression, linear_probe


def _objective(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: float
) -> torch.Tensor:
    # The naive reference: scikit-learn's scaling, written out term by term.
    n = len(x)
    logits = x @ w.t() + b
    nll = -(logits.log_softmax(1)[torch.arange(n), y]).sum() / n
    return nll + (w**2).sum() / (2 * c * n)


def test_fit_reaches_the_optimum_of_the_objective() -> None:
    torch.manual_seed(0)
    x = torch.randn(60, 5)
    y = torch.randint(0, 3, (60,))
    w, b = fit_logistic_regression(x, y, 3, c=0.5)
    w.requires_grad_(True)
    b.requires_grad_(True)
    loss = _objective(x, y, w, b, 0.5)
    grad_w, grad_b = torch.autograd.grad(loss, [w, b])
    # First-order optimality of a strictly convex objective: the gradient vanishes.
    assert grad_w.abs().max() < 1e-4
    assert grad_b.abs().max() < 1e-4
    # And no perturbation does better.
    for _ in range(5):
        assert loss <= _objective(x, y, w + 1e-2 * torch.randn_like(w), b, 0.5)


def test_penalty_follows_c() -> None:
    # A smaller C shrinks the weights: the L2 term is 1 / (2 C n) ||W||^2.
    torch.manual_seed(1)
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    small, _ = fit_logistic_regression(x, y, 2, c=1e-3)
    large, _ = fit_logistic_regression(x, y, 2, c=1e2)
    assert small.norm() < 0.1 * large.norm()


def test_warm_start_reaches_the_same_optimum() -> None:
    torch.manual_seed(2)
    x = torch.randn(50, 6)
    y = torch.randint(0, 4, (50,))
    cold = fit_logistic_regression(x, y, 4, c=1.0)
    start = fit_logistic_regression(x, y, 4, c=0.01)
    warm = fit_logistic_regression(x, y, 4, c=1.0, init=start)
    assert torch.allclose(cold[0], warm[0], atol=1e-3)


def test_probe_chooses_c_on_validation_and_predicts_test() -> None:
    torch.manual_seed(3)
    centres = torch.randn(3, 8) * 4
    labels = torch.arange(3).repeat_interleave(30)
    x = centres[labels] + torch.randn(90, 8)
    result = linear_probe(
        x[::3], labels[::3], x[1::3], labels[1::3], x[2::3], num_classes=3, c_grid=[1e-6, 1e-2, 1.0]
    )
    assert set(result.val_accuracy) == {1e-6, 1e-2, 1.0}
    best = max(result.val_accuracy.values())
    assert result.best_c == min(c for c, a in result.val_accuracy.items() if a == best)
    assert (result.test_predictions == labels[2::3]).float().mean() > 0.95


def test_ties_take_the_strongest_regularisation() -> None:
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    y = torch.tensor([0, 0, 1, 1])
    result = linear_probe(x, y, x, y, x, num_classes=2, c_grid=[10.0, 1.0, 0.1])
    assert all(v == 1.0 for v in result.val_accuracy.values())
    assert result.best_c == 0.1


def test_grid_and_inputs_are_checked() -> None:
    assert len(DEFAULT_C_GRID) == 40
    assert DEFAULT_C_GRID[0] == pytest.approx(1e-6)
    assert DEFAULT_C_GRID[-1] == pytest.approx(1e4)
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="c_grid must hold positive values"):
        linear_probe(x, y, x, y, x, num_classes=2, c_grid=[0.0])
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_logistic_regression(x, y, 2, c=-1)
