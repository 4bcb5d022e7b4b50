"""The datasets' errors: one line naming the file, also across a DataLoader worker."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from geossl.datasets.errors import BadDatasetError


class _Failing(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            raise OSError("IReadBlock failed")
        except OSError as error:
            raise BadDatasetError("/data/stack", "101 raster reads failed, last a.tif") from error


def test_an_error_of_a_loader_worker_is_still_one_line() -> None:
    # torch re-raises a worker's exception as type(error)(its traceback as text); a two-argument
    # BadDatasetError could not be built so, and became a RuntimeError of 20 lines.
    loader = DataLoader(_Failing(), num_workers=1)
    with pytest.raises(BadDatasetError) as error:
        next(iter(loader))
    assert str(error.value) == "/data/stack: 101 raster reads failed, last a.tif"
    assert error.value.folder == "/data/stack"


def test_bad_dataset_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(BadDatasetError("/data", "empty")))
    assert (error.folder, error.problem, str(error)) == ("/data", "empty", "/data: empty")
