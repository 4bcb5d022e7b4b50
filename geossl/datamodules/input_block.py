"""The input block a pretraining data module hands to GeoSSLTask (and so to its checkpoints).

A checkpoint that describes itself needs to know what its input was: band names, the bands
picked, the raw-to-``[0, 1]`` scale. Only the data module knows that; ``geossl pretrain`` links
its [`input_block`][geossl.datamodules.input_block.input_block] into ``model.input_block``
(LightningCLI ``link_arguments``), the task adds the normalisation and image size it trained with,
and readers of the checkpoint ([`geossl.weights.read_weights`][geossl.weights.read_weights],
``geossl export weights``) need no dataset import.
"""

from collections.abc import Sequence
from typing import Any

__all__ = ["input_block"]


def input_block(
    dataset: str,
    band_names: Sequence[str],
    scale: float,
    bands: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The ``input_block`` of a data module: plain JSON types, as hyper-parameters must be.

    Args:
        dataset: the dataset's name (``"fmow"``, ``"rasters"``, ``"scenes"``).
        band_names: names of the bands the model sees, in input order.
        scale: raw pixel value to ``[0, 1]`` factor.
        bands: the 1-based bands picked from the files (None: all of them).

    Returns:
        ``{"dataset", "band_names", "scale", "bands"}``.

    Example:
        >>> block = input_block("scenes", ("red", "green", "blue"), 1 / 255)
        >>> block["dataset"], block["band_names"]
        ('scenes', ['red', 'green', 'blue'])
    """
    return {
        "dataset": dataset,
        "band_names": [str(name) for name in band_names],
        "scale": float(scale),
        "bands": None if bands is None else [int(b) for b in bands],
    }
