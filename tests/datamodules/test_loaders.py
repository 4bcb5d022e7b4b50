"""The shared DataLoader rule of geossl.datamodules.loaders."""

import pytest
import torch

from geossl.datamodules.loaders import PREFETCH_FACTOR, loader_kwargs


def test_no_workers_means_no_worker_options() -> None:
    kwargs = loader_kwargs(4, 0, pin_memory=False, persistent_workers=True)
    assert kwargs == {"batch_size": 4, "num_workers": 0, "pin_memory": False}


def test_workers_get_persistence_and_prefetch() -> None:
    kwargs = loader_kwargs(4, 2, pin_memory=False, persistent_workers=True)
    assert kwargs["persistent_workers"] is True
    assert kwargs["prefetch_factor"] == PREFETCH_FACTOR == 4


def test_persistent_workers_follows_the_flag() -> None:
    kwargs = loader_kwargs(4, 2, pin_memory=False, persistent_workers=False)
    assert kwargs["persistent_workers"] is False


def test_prefetch_none_keeps_the_dataloader_default() -> None:
    kwargs = loader_kwargs(4, 2, pin_memory=False, persistent_workers=True, prefetch_factor=None)
    assert "prefetch_factor" not in kwargs
    assert kwargs["persistent_workers"] is True


@pytest.mark.parametrize("cuda", [False, True])
def test_pin_memory_only_with_cuda(monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert loader_kwargs(4, 0, pin_memory=True, persistent_workers=False)["pin_memory"] is cuda
    assert loader_kwargs(4, 0, pin_memory=False, persistent_workers=False)["pin_memory"] is False


def test_the_kwargs_build_a_dataloader() -> None:
    dataset = torch.utils.data.TensorDataset(torch.arange(6))
    loader = torch.utils.data.DataLoader(
        dataset, **loader_kwargs(3, 0, pin_memory=True, persistent_workers=True)
    )
    assert [len(batch[0]) for batch in loader] == [3, 3]
