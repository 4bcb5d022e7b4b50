"""The one set of range checks for arguments and hyper-parameters.

Every check raises a one-line ``ValueError`` that names the argument, the allowed range and the
value given, in one format everywhere (``model.lr must be > 0, got 0.0``). NaN fails every range.

Example:
    >>> from geossl.utils.checks import check_range
    >>> check_range("model.lr", 0.03, low=0, low_open=True)
    >>> check_range("p", 1.5, low=0, high=1)
    Traceback (most recent call last):
    ...
    ValueError: p must be in [0, 1], got 1.5
"""

from __future__ import annotations

__all__ = ["check_at_least", "check_fraction", "check_positive", "check_range"]


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise unless ``low <= value <= high`` (``<`` where the bound is open).

    Args:
        name: the argument as the user writes it (``model.lr``, ``--chip-size``).
        value: the value given.
        low: the lower bound, None for none.
        high: the upper bound, None for none.
        low_open: ``value`` must be strictly above ``low``.
        high_open: ``value`` must be strictly below ``high``.

    Raises:
        ValueError: ``{name} must be {range}, got {value}``.
    """
    if low is None and high is None:
        raise ValueError("check_range needs low, high or both")
    # Each bound is tested as "value is inside" (not "value is outside"): NaN is inside nothing.
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):
        raise ValueError(
            f"{name} must be {_range_text(low, high, low_open, high_open)}, got {value}"
        )


def check_at_least(name: str, value: float, low: float) -> None:
    """Raise unless ``value >= low`` (counts, sizes: ``check_at_least("batch_size", b, 1)``)."""
    check_range(name, value, low=low)


def check_positive(name: str, value: float) -> None:
    """Raise unless ``value > 0`` (rates, temperatures, scales)."""
    check_range(name, value, low=0, low_open=True)


def check_fraction(name: str, value: float, *, high_open: bool = False) -> None:
    """Raise unless ``0 <= value <= 1`` (``< 1`` with ``high_open``): probabilities, shares."""
    check_range(name, value, low=0, high=1, high_open=high_open)
