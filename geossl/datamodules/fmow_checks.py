"""The argument checks every fMoW data module shares (pretraining and classification)."""

from __future__ import annotations

from collections.abc import Sequence

from geossl.datasets.fmow.constants import (
    FMOW_SENTINEL_CSV,
    FMOW_SPLITS,
    JPEG_PRODUCTS,
    PRODUCT_BANDS,
    PRODUCTS,
)

__all__ = ["check_fmow_inputs"]


def check_fmow_inputs(
    product: str, bands: list[int] | None, val_split: str | None, splits: Sequence[str] = ()
) -> None:
    """Validate the arguments every fMoW data module shares.

    Args:
        product: ``data.product``.
        bands: ``data.bands`` (1-based).
        val_split: ``data.val_split`` (None: no validation split).
        splits: the other splits the module reads (fMoW-Sentinel has no ``seq``).

    Raises:
        ValueError: naming the ``data.<key>`` to fix.
    """
    if val_split is not None and val_split not in FMOW_SPLITS:
        raise ValueError(f"data.val_split must be one of {list(FMOW_SPLITS)}, got {val_split!r}")
    if product not in PRODUCTS:
        raise ValueError(f"data.product must be one of {sorted(PRODUCTS)}, got {product!r}")
    if product == "sentinel":
        wanted = [*splits, *([val_split] if val_split is not None else [])]
        unknown = [s for s in wanted if s not in FMOW_SENTINEL_CSV]
        if unknown:
            raise ValueError(
                f"fMoW-Sentinel has the splits {list(FMOW_SENTINEL_CSV)}; data.product "
                f"'sentinel' cannot read {unknown}"
            )
    max_band = PRODUCT_BANDS[product]
    if bands is not None and (
        not bands or any(b < 1 or b > max_band for b in bands) or len(set(bands)) != len(bands)
    ):
        raise ValueError(
            f"data.bands must be distinct 1-based band indexes in 1..{max_band} for product "
            f"{product!r}, got {bands}"
        )


def _check_decode_on_device(decode_on_device: bool, product: str, shared_canvas: bool) -> None:
    """Refuse ``data.decode_on_device`` where the device cannot decode (not JPEG, canvas)."""
    if decode_on_device and product not in JPEG_PRODUCTS:
        raise ValueError(
            "data.decode_on_device decodes JPEGs: it needs product "
            f"{' or '.join(JPEG_PRODUCTS)}, got {product!r}"
        )
    if decode_on_device and shared_canvas:
        raise ValueError(
            "data.decode_on_device and data.shared_canvas cannot be combined: the canvas "
            "window of the second view is read in the workers"
        )
