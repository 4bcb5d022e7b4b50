"""The fMoW product table: band names and input scales per product."""

import pytest

from geossl.datasets.fmow.constants import (
    FMOW_PRODUCTS,
    FMOW_SENTINEL_SCALE,
    MS_SCALE,
    product_band_names,
    product_input_scale,
)
from geossl.utils.bands import RGB_BANDS, UINT8_SCALE


@pytest.mark.parametrize("name", sorted(FMOW_PRODUCTS))
def test_every_product_names_each_of_its_bands(name: str) -> None:
    product = FMOW_PRODUCTS[name]
    assert len(product.band_names) == product.num_bands


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("rgb", UINT8_SCALE),
        ("msrgb", UINT8_SCALE),
        ("ms", MS_SCALE),
        ("sentinel", FMOW_SENTINEL_SCALE),
    ],
)
def test_input_scale_of_each_product(name: str, scale: float) -> None:
    assert product_input_scale(name) == scale


def test_band_names_follow_the_selection() -> None:
    assert product_band_names("rgb") == RGB_BANDS
    assert product_band_names("ms", [5, 3, 2]) == ("red", "green", "blue")
    assert product_band_names("sentinel", [2]) == ("B02",)


def test_unknown_products_have_no_names_or_scale() -> None:
    assert product_band_names("thermal") is None
    assert product_input_scale("thermal") is None
