"""An exact resume: the data position and the global random streams of the step are restored.

The batched augmentation ([`GeoSSLAugmentation`][geossl.transforms.GeoSSLAugmentation]) and
shuffle-BN draw from torch's global generators (the CPU's and the current CUDA device's), which
Lightning does not checkpoint: a resumed run would draw other views from the same weights.
[`ExactResume`][geossl.trainers.exact_resume.ExactResume] saves them, with
NumPy's and Python's, in every checkpoint (as tensors and numbers, so that ``weights_only=True``
reads them), and sets them back when the resumed fit starts training (``on_train_start``, after
the sanity check and before the first batch is fetched, moved and augmented). Nothing between a
checkpoint and the next step draws from these generators: the data loaders seed their own
([`ResumableDataLoader`][geossl.datamodules.resumable.ResumableDataLoader]) and the pair samplers
draw from ``seed + epoch``; so the next step draws exactly what the uninterrupted run drew.

The callback also gives the training loaders their saved position (a
[`ResumableDataLoader`][geossl.datamodules.resumable.ResumableDataLoader] skips the batches the
checkpoint has seen): Lightning loads it only when the loaders are first requested after the
checkpoint is restored, while `GeoSSLTask`'s schedule asks for the run's length, and so for the
loaders, before (``configure_optimizers``, ``trainer.estimated_stepping_batches``).

Under DDP the checkpoint holds rank 0's state and every rank restores it: Lightning's
``seed_everything`` gives every rank the same seed and the ranks draw in lockstep, so their
streams were equal (CUDA: the state of each rank's own device).
"""

import random
from typing import Any

import lightning
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["ExactResume", "random_state", "set_random_state"]


def random_state() -> dict[str, Any]:
    """The global random states of torch (CPU and the current CUDA device), NumPy and Python.

    Returns:
        Tensors, numbers and ``None`` only (a ``weights_only`` checkpoint can hold it). CUDA's is
        ``None`` when CUDA was not initialised (nothing drew from it).

    Example:
        >>> state = random_state()
        >>> first = torch.rand(3)
        >>> set_random_state(state)
        >>> torch.equal(torch.rand(3), first)
        True
    """
    # Not Lightning's _collect_rng_states: it keeps NumPy's state as an ndarray tuple, which a
    # weights_only load refuses. The legacy global generator is the one np.random.* draws from.
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    initialized = bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]
    cuda = torch.cuda.get_rng_state() if initialized else None
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def set_random_state(state: dict[str, Any]) -> None:
    """Set the global random states that `random_state` returned.

    A missing entry leaves its generator as it is; CUDA's is set on the current device, when
    there is one.

    Args:
        state: the saved states.
    """
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    saved = state.get("numpy")
    if saved is not None:
        keys = saved["keys"].numpy().astype(np.uint32)
        legacy = ("MT19937", keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"])
        np.random.set_state(legacy)  # noqa: NPY002
    python = state.get("python")
    if python is not None:
        internal = tuple(int(v) for v in python["state"].tolist())
        random.setstate((python["version"], internal, python["gauss_next"]))


class ExactResume(Callback):
    """Save the global random streams in every checkpoint; restore them and the loaders' position.

    Example:
        >>> callback = ExactResume()
        >>> callback.load_state_dict(callback.state_dict())
        >>> callback.pending
        True
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    @property
    def pending(self) -> bool:
        """Whether a loaded state waits to be set at the start of training."""
        return self._loaded is not None

    def state_dict(self) -> dict[str, Any]:
        """The random states at the moment the checkpoint is written."""
        return random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the checkpoint's states until training starts.

        Set earlier, they would be consumed by what runs first (the sanity check, for one).
        """
        self._loaded = state_dict

    def on_train_start(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        """Give the loaders their saved position, set the saved random states."""
        fit_loop = trainer.fit_loop
        # Lightning's own loading of the loader states (it skips them once the loaders exist).
        fit_loop._load_combined_loader_states()
        if self._loaded is not None:
            set_random_state(self._loaded)
            self._loaded = None
