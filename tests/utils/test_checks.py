import math

import pytest

from geossl.utils.checks import check_at_least, check_fraction, check_positive, check_range


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 1}, 0, "n must be >= 1, got 0"),
        ({"low": 0, "low_open": True}, 0, "n must be > 0, got 0"),
        ({"high": 5}, 6, "n must be <= 5, got 6"),
        ({"high": 5, "high_open": True}, 5, "n must be < 5, got 5"),
        ({"low": 0, "high": 1}, 1.5, r"n must be in \[0, 1\], got 1.5"),
        ({"low": 0, "high": 1, "low_open": True}, 0, r"n must be in \(0, 1\], got 0"),
        ({"low": 0, "high": 1, "high_open": True}, 1, r"n must be in \[0, 1\), got 1"),
        ({"low": 0}, math.nan, "n must be >= 0, got nan"),
    ],
)
def test_out_of_range_is_one_line_naming_the_range(
    kwargs: dict[str, float], value: float, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_range("n", value, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [({"low": 1}, 1), ({"low": 0, "low_open": True}, 1e-9), ({"low": 0, "high": 1}, 0.0)],
)
def test_in_range_passes(kwargs: dict[str, float], value: float) -> None:
    check_range("n", value, **kwargs)  # type: ignore[arg-type]


def test_shorthands() -> None:
    check_at_least("batch_size", 1, 1)
    check_positive("lr", 0.1)
    check_fraction("p", 1.0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        check_fraction("p", 1.0, high_open=True)
    with pytest.raises(ValueError, match="lr must be > 0, got -1"):
        check_positive("lr", -1)
    with pytest.raises(ValueError, match="needs low, high or both"):
        check_range("n", 1)
