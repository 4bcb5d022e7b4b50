"""The non-finite loss guard of pretraining: stop before a NaN / Inf reaches the weights."""

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from geossl.errors import NonFiniteLossError
from geossl.trainers.terms import TermOutput
from geossl.utils import world_size

__all__ = ["NonFiniteGuard"]


class NonFiniteGuard:
    """Flags of non-finite losses kept on the device, read on the host every ``every`` steps.

    Every step stacks the term losses and the total into ``[T + 1]`` codes (0 finite, 1 NaN,
    2 Inf) kept on the device (no sync); every ``every`` steps the codes since the last check are
    reduced over ranks and read on the host with this step's total (one sync).

    Args:
        term_names: the active terms, in the order of the results given to :meth:`record`.
        every: check every this many steps (1: every step; 0: never).

    Example:
        >>> import torch
        >>> from geossl.trainers.terms import TermOutput
        >>> guard = NonFiniteGuard(["tp"], every=1)
        >>> guard.record({"tp": TermOutput(torch.tensor(1.5))}, torch.tensor(1.5), step=0)
        1.5
        >>> guard.record({"tp": TermOutput(torch.tensor(float("nan")))}, torch.tensor(0.0), step=1)
        Traceback (most recent call last):
        ...
        geossl.errors.NonFiniteLossError: train/loss_tp became nan at step 1; ...
    """

    def __init__(self, term_names: Sequence[str], every: int) -> None:
        """Start with nothing pending (see the class docstring for the arguments)."""
        self.term_names = list(term_names)
        self.every = every
        self._codes: Tensor | None = None
        self._steps = (0, 0)
        self._since_check = 0

    def record(self, results: Mapping[str, TermOutput], total: Tensor, step: int) -> float | None:
        """Record this step's non-finite losses; raise on a check step if any was seen.

        Args:
            results: the terms' outputs of this step, in ``term_names`` order.
            total: the weighted total.
            step: the global step (for the message).

        Returns:
            This rank's total as a Python float on a check step, else ``None``.

        Raises:
            NonFiniteLossError: naming the terms and the step (or step range).
        """
        if self.every == 0:
            return None
        values = torch.stack([r.loss.detach().float() for r in results.values()] + [total.detach()])
        codes = torch.isnan(values).float() + 2 * torch.isinf(values).float()  # [T + 1]
        if self._codes is None:
            self._codes = codes
            self._steps = (step, step)
        else:
            self._codes = torch.maximum(self._codes, codes)
            self._steps = (self._steps[0], step)
        self._since_check += 1
        if self._since_check >= self.every:
            return self.raise_if_nonfinite(total)
        return None

    def raise_if_nonfinite(self, total: Tensor | None = None) -> float | None:
        """Read the non-finite codes since the last check (one host sync) and reset them.

        Args:
            total: a loss to read in the same transfer (the step's total), or ``None``.

        Returns:
            ``total`` as a Python float, or ``None`` when it was not given or nothing was pending.

        Raises:
            NonFiniteLossError: if a loss was NaN or Inf; the message names the logged keys
                (``train/loss_<term>``, or ``train_loss`` when only the total overflowed) and
                the step, or the range of unchecked steps.
        """
        codes, (first, last) = self._codes, self._steps
        self._codes = None
        self._since_check = 0
        if codes is None:
            return None
        if world_size() > 1:  # every rank must stop at the same step, or the others would hang
            dist.all_reduce(codes, op=dist.ReduceOp.MAX)
        if total is None:
            flags: list[float] = codes.tolist()  # the host sync
            total_on_host = None
        else:
            *flags, total_on_host = torch.cat([codes, total.detach().float().view(1)]).tolist()
        if not any(flags):
            return total_on_host
        names = [f"train/loss_{name}" for name in self.term_names] + ["train_loss"]
        bad = [(n, "nan" if c == 1 else "inf") for n, c in zip(names, flags, strict=True) if c]
        if len(bad) > 1:  # a bad term makes the total bad: name the terms only
            bad = [(n, k) for n, k in bad if n != "train_loss"]
        what = ", ".join(f"{name} became {kind}" for name, kind in bad)
        when = f"at step {first}" if first == last else f"at a step in {first}..{last}"
        raise NonFiniteLossError(f"{what} {when}; stopping (the last checkpoint is kept)")
