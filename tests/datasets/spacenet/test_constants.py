"""The SpaceNet scale rule."""

from __future__ import annotations

import pytest

from geossl.datasets.spacenet import (
    default_scale,
)


def test_default_scale() -> None:
    assert default_scale("uint8") == pytest.approx(1 / 255)
    assert default_scale("uint16") == pytest.approx(1 / 2047)
    assert default_scale("float32") == 1.0
    with pytest.raises(ValueError, match="give scale explicitly"):
        default_scale("int32")
