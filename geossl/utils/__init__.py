"""geossl.utils: distributed and mixed-precision helpers shared by losses, models and trainers.

EMA / momentum updates and freezing use lightly's ``update_momentum`` and
``deactivate_requires_grad`` (``lightly.models.utils``) directly; the batch shuffle for shuffle-BN
is wrapped here so that it picks the distributed variant by itself.
"""

from .amp import autocast_disabled
from .distributed import batch_shuffle, batch_unshuffle, concat_all_gather, rank, world_size

__all__ = [
    "autocast_disabled",
    "batch_shuffle",
    "batch_unshuffle",
    "concat_all_gather",
    "rank",
    "world_size",
]
