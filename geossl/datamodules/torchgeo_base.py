"""torchgeo's ``NonGeoDataModule`` as the base of geossl's fine-tuning data modules.

torchgeo's command (``torchgeo fit --config ...``, `torchgeo.main.main`) accepts only
subclasses of its ``BaseDataModule`` and ``BaseTask``. geossl's data modules keep their own
splits, samplers and loaders (they override ``setup`` and the ``*_dataloader`` methods), so what
the base brings is that contract, ``plot`` (the validation dataset's) and ``prepare_data``; what
it must not bring is its batch augmentation: torchgeo normalises every batch on the device with
``Normalize(mean=0, std=255)``, while geossl's tasks take ``[0, 1]`` images and normalise with
the weights' statistics themselves.
"""

from __future__ import annotations

from typing import Any

from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

__all__ = ["TorchGeoDataModule"]


class TorchGeoDataModule(NonGeoDataModule):
    """A ``NonGeoDataModule`` whose batches reach the task as the loaders made them.

    Args:
        dataset_class: the dataset family (torchgeo records it; ``setup`` is the subclass's).
        batch_size: samples per batch.
        num_workers: loader processes.

    Example:
        >>> from torchgeo.datamodules.geo import BaseDataModule
        >>> from geossl.datamodules import SpaceNetDataModule
        >>> issubclass(SpaceNetDataModule, BaseDataModule)  # what torchgeo's CLI requires
        True
    """

    def __init__(
        self, dataset_class: type[NonGeoDataset], batch_size: int, num_workers: int
    ) -> None:
        super().__init__(dataset_class, batch_size=batch_size, num_workers=num_workers)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The batch unchanged (no torchgeo ``Normalize``: the task normalises ``[0, 1]`` input).

        Args:
            batch: the batch on the device.
            dataloader_idx: the loader's index.

        Returns:
            ``batch``.
        """
        return batch
