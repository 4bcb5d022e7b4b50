"""The non-finite loss guard of pretraining: stop before a NaN / Inf reaches the weights."""

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from geossl.errors import NonFiniteLossError
from geossl.trainers.terms import LossTerm, TermOutput
from geossl.utils import world_size

__all__ = ["NonFiniteGuard", "check_fit_ready"]


class NonFiniteGuard:
    """Flags of non-finite losses kept on the device, read on the host every ``every`` steps.

    Every step stacks the term losses and the total into ``[T + 1]`` codes (0 finite, 1 NaN,
    2 Inf) kept on the device (no sync); every ``every`` steps the codes since the last check are
    reduced over ranks and read on the host with this step's total (one sync: the CPU waits for
    the forward pass before it queues the backward). A NaN / Inf in a checked step stops the run
    before its backward; the flags of unchecked steps are checked at the next check or before any
    checkpoint is written, so no checkpoint is ever saved after a non-finite loss. The same read
    gives the progress bar its ``loss`` (the last checked step's; ``train_loss`` goes to the
    loggers without a sync). Apart from this check, a step of the MoCo, TP, Geo and CO2 terms reads
    nothing from the device; SCRL reads one value (how many box pairs the batch has).

    Args:
        term_names: the active terms, in the order of the results given to
            [`record`][geossl.trainers.guards.NonFiniteGuard.record].
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


def check_fit_ready(
    terms: Mapping[str, LossTerm],
    datamodule: object,
    *,
    in_chans: int,
    normalization_pending: bool,
) -> None:
    """Refuse to fit without normalisation, or on pairs that a term cannot relate.

    Args:
        terms: the active loss terms by name.
        datamodule: the trainer's data module (``None`` when there is none).
        in_chans: the model's band count (for the message).
        normalization_pending: whether the data's statistics were asked for and not given.

    Raises:
        ValueError: naming ``model.mean`` / ``model.std`` when the data's statistics were
            asked for and not given
            (`GeoSSLTask.set_normalization`; ``geossl pretrain`` gives them), or
            ``data.shared_canvas`` when the datamodule says its pairs are drawn on separate canvases
            (a datamodule that does not say is trusted).
    """
    if normalization_pending:
        raise ValueError(
            "model.mean / model.std are not set and model.normalization takes them from the "
            f"data (model.in_chans={in_chans}): give them, or call "
            "task.set_normalization(*datamodule.band_statistics()) before fit (geossl "
            "pretrain does)"
        )
    needing = [name for name, term in terms.items() if term.needs_shared_canvas]
    if needing and getattr(datamodule, "pairs_share_canvas", None) is False:
        raise ValueError(
            f"the {', '.join(needing)} loss relates pixels of the two acquisitions "
            "(model.loss_options.scrl.temporal) and needs both on one canvas: set "
            "data.shared_canvas: true"
        )
