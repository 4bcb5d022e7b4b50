import math

import pytest
import torch

from geossl.utils.normalization import Normalization


def test_valid_values_become_float_tuples_and_broadcastable_tensors() -> None:
    norm = Normalization.of([1, 2], (0.5, 0.25), channels=2)
    assert norm == Normalization((1.0, 2.0), (0.5, 0.25))
    mean, std = norm.tensors(dtype=torch.float64)
    images = torch.ones(4, 2, 3, 3)
    out = (images - mean) / std
    assert out[:, 0].eq(0).all()
    assert out[:, 1].eq(-4).all()


@pytest.mark.parametrize(
    ("mean", "std", "channels", "message"),
    [
        ([], [], None, "one value per band, got 0 and 0"),
        ([0.1, 0.2], [0.1], None, "one value per band, got 2 and 1"),
        ([0.1, 0.2], [0.1, 0.1], 3, r"have 2 values, expected 3 \(one per band\)"),
        ([math.nan], [0.1], None, r"mean must be finite, got \[nan\]"),
        ([0.1], [0.0], None, r"std must be finite and > 0, got \[0.0\]"),
        ([0.1], [math.inf], None, r"std must be finite and > 0, got \[inf\]"),
    ],
)
def test_bad_values_are_one_line_errors_naming_where(
    mean: list[float], std: list[float], channels: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^weights.json: .*{message}") as info:
        Normalization.of(mean, std, channels=channels, where="weights.json")
    assert "\n" not in str(info.value)
