"""What the datasets' torchgeo-style ``plot(sample, show_titles, suptitle)`` methods share.

torchgeo's datasets draw a sample with ``dataset.plot(sample)`` and return a matplotlib
``Figure``; geossl's datasets do the same through these helpers:
[`rgb_image`][geossl.datasets.plotting.rgb_image] turns an image tensor into an RGB array in
``[0, 1]``, [`image_figure`][geossl.datasets.plotting.image_figure] lays out one axis per image,
[`mask_figure`][geossl.datasets.plotting.mask_figure] overlays a segmentation mask,
[`format_time`][geossl.datasets.plotting.format_time] writes an acquisition time. Figures are built
with ``matplotlib.figure.Figure`` (no pyplot state, no backend needed).

Examples:
    >>> import torch
    >>> from geossl.datasets.plotting import image_figure, rgb_image
    >>> rgb = rgb_image(torch.full((3, 4, 4), 255, dtype=torch.uint8))
    >>> rgb.shape, float(rgb.max())
    ((4, 4, 3), 1.0)
    >>> figure = image_figure([rgb, rgb], ["a", "b"], show_titles=True, suptitle="two")
    >>> len(figure.axes)
    2
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["format_time", "image_figure", "mask_figure", "rgb_image"]

FloatArray = npt.NDArray[np.float32]


def rgb_image(image: Tensor, channels: Sequence[int] = (0, 1, 2)) -> FloatArray:
    """An image tensor ``[C, H, W]`` as an RGB array ``[H, W, 3]`` in ``[0, 1]``.

    ``uint8`` is divided by 255; a float image already in ``[0, 1]`` is kept; any other range is
    stretched from its minimum to its maximum. A single-band image is shown in grey.

    Args:
        image: ``[C, H, W]``.
        channels: the 0-based channels shown as red, green and blue (those past ``C`` are
            dropped; with fewer than 3 left the first channel is shown in grey).

    Returns:
        float32 ``[H, W, 3]`` in ``[0, 1]``.
    """
    picked = [c for c in channels if c < image.shape[0]]
    chosen = image[picked] if len(picked) == 3 else image[:1].expand(3, -1, -1)
    data = chosen.detach().cpu()
    rgb = data.float() / 255.0 if data.dtype == torch.uint8 else data.float()
    low, high = float(rgb.min()), float(rgb.max())
    if low < 0.0 or high > 1.0:
        rgb = (rgb - low) / max(high - low, 1e-12)
    array: FloatArray = rgb.clamp(0.0, 1.0).permute(1, 2, 0).numpy().astype(np.float32)
    return array


def image_figure(
    images: Sequence[FloatArray],
    titles: Sequence[str],
    *,
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """One row of axes, one RGB image each, axis lines off (torchgeo's look).

    Args:
        images: ``[H, W, 3]`` arrays in ``[0, 1]``
            ([`rgb_image`][geossl.datasets.plotting.rgb_image]).
        titles: one title per image, written when ``show_titles``.
        show_titles: write the titles.
        suptitle: an optional figure title.

    Returns:
        The figure; ``figure.axes`` are the images' axes, in order.
    """
    figure = Figure(figsize=(4 * len(images), 4))
    axes: list[Axes] = [figure.add_subplot(1, len(images), k + 1) for k in range(len(images))]
    for ax, image, title in zip(axes, images, titles, strict=True):
        ax.imshow(image)
        ax.axis("off")
        if show_titles:
            ax.set_title(title)
    if suptitle is not None:
        figure.suptitle(suptitle)
    return figure


def format_time(seconds: int | Tensor) -> str:
    """Unix seconds as an ISO date (UTC), e.g. ``2015-03-14``.

    Examples:
        >>> format_time(1426348322)
        '2015-03-14'
    """
    value = int(seconds)
    return datetime.datetime.fromtimestamp(value, tz=datetime.UTC).strftime("%Y-%m-%d")


def mask_figure(
    sample: dict[str, Tensor],
    title: str,
    *,
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """The image with its mask overlaid (value 1 in red); ``prediction`` on a second axis.

    Mask values other than 0 and 1 (an ignore index, padding) are not drawn.

    Args:
        sample: ``image`` ``[C, H, W]``, ``mask`` ``[H, W]``, optionally ``prediction``
            ``[H, W]``.
        title: the first axis's title (the second is ``prediction``).
        show_titles: write the titles.
        suptitle: an optional figure title.

    Returns:
        The figure: one axis, two with a prediction.

    Examples:
        >>> sample = {"image": torch.rand(3, 8, 8), "mask": torch.eye(8, dtype=torch.int64)}
        >>> len(mask_figure(sample, "mask").axes)
        1
    """
    masks = [sample["mask"]] + ([sample["prediction"]] if "prediction" in sample else [])
    rgb = rgb_image(sample["image"])
    titles = [title, "prediction"][: len(masks)]
    figure = image_figure([rgb] * len(masks), titles, show_titles=show_titles, suptitle=suptitle)
    for ax, mask in zip(figure.axes, masks, strict=True):
        overlay = np.zeros((*mask.shape[-2:], 4), dtype=np.float32)
        overlay[mask.detach().cpu().numpy() == 1] = (1.0, 0.0, 0.0, 0.4)
        ax.imshow(overlay)
    return figure
