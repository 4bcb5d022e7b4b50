"""Mixed-precision helpers."""

import contextlib
from contextlib import AbstractContextManager

import torch

__all__ = ["autocast_disabled"]


def autocast_disabled(device: torch.device) -> AbstractContextManager[object]:
    """A context that runs its block without autocast on ``device`` (float32 stays float32).

    For the numerically sensitive parts of a step (similarities over small temperatures, the
    augmentation). Devices without autocast (``meta``, which the tests use to prove that a step
    never reads a device value on the host) get a no-op context.

    Args:
        device: the device the block computes on.

    Returns:
        ``torch.autocast(device.type, enabled=False)``, or a null context.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
