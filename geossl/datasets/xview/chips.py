"""The xView chipping protocol: chip windows, the boxes inside them and the cached chip index.

[`random_chip_windows`][geossl.datasets.xview.chips.random_chip_windows] (training) and
[`grid_chip_windows`][geossl.datasets.xview.chips.grid_chip_windows] (evaluation) place the chip
windows of one image; [`chip_boxes`][geossl.datasets.xview.chips.chip_boxes] keeps the boxes inside
a window; [`load_xview_chips`][geossl.datasets.xview.chips.load_xview_chips] builds
([`build_xview_chips`][geossl.datasets.xview.chips.build_xview_chips]) and caches the
[`XViewChips`][geossl.datasets.xview.chips.XViewChips] of a split.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from geossl.datasets.xview.constants import ChipMode, FloatArray, IntArray
from geossl.datasets.xview.labels import (
    _CACHE_VERSION,
    XViewLabels,
    _cache_folder,
    _hash,
    _load_npz,
    _save_npz,
    load_xview_labels,
)
from geossl.utils.checks import check_at_least, check_fraction, check_range

__all__ = [
    "XViewChipParams",
    "XViewChips",
    "build_xview_chips",
    "chip_boxes",
    "grid_chip_windows",
    "load_xview_chips",
    "random_chip_windows",
]


def _window_overlap(
    candidates: IntArray, accepted: IntArray, chip_w: int, chip_h: int
) -> npt.NDArray[np.float64]:
    """``[K, M]`` IoU of same-size chips given by their top-left corners."""
    dx = np.abs(candidates[:, None, 0] - accepted[None, :, 0])
    dy = np.abs(candidates[:, None, 1] - accepted[None, :, 1])
    inter = (np.clip(chip_w - dx, 0, None) * np.clip(chip_h - dy, 0, None)).astype(np.float64)
    iou: npt.NDArray[np.float64] = inter / (2.0 * chip_w * chip_h - inter)
    return iou


def random_chip_windows(
    width: int,
    height: int,
    *,
    chip_size: int,
    count: int,
    max_overlap: float,
    rng: np.random.Generator,
    max_tries: int | None = None,
) -> IntArray:
    r"""Top-left corners of up to ``count`` random chips with limited pairwise overlap.

    The GeoSSL protocol ("less than 25 % overlap between any two"): chips of ``chip_size`` are
    drawn uniformly (integer corners, the whole chip inside the image) and a chip is accepted when
    its overlap with every chip accepted before is below ``max_overlap``. The overlap is the IoU,
    the usual meaning between two boxes (the paper does not define it); for equal chips,
    $\mathrm{IoU} = I / (2A - I) < 0.25$ means an intersection below 40 % of a chip.
    Draws stop after ``max_tries`` candidates (default ``100 * count``), so an image too small for
    ``count`` such chips gives fewer: about 94 on a 3,000 px square, 38 on a 2,000 px square with
    the paper's settings (the chip index counts the shortfall). An image smaller than the chip
    along a side gets chips spanning that side (zero-padded when read); ``max_overlap >= 1``
    disables the check.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        chip_size: chip side in pixels.
        count: chips wanted.
        max_overlap: the pairwise IoU must be strictly below this.
        rng: the random generator (one per image keeps images independent).
        max_tries: candidates drawn at most.

    Returns:
        ``[k, 2]`` int64 ``(col_off, row_off)``, ``k <= count``, in acceptance order.
    """
    if count <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    span_x, span_y = max(width - chip_size, 0), max(height - chip_size, 0)
    chip_w, chip_h = min(chip_size, width), min(chip_size, height)
    if span_x == 0 and span_y == 0:
        return np.zeros((1, 2), dtype=np.int64)
    tries = max_tries if max_tries is not None else 100 * count
    accepted = np.zeros((count, 2), dtype=np.int64)
    n = 0
    drawn = 0
    while n < count and drawn < tries:
        batch = min(256, tries - drawn)
        drawn += batch
        cand = np.stack(
            [rng.integers(0, span_x + 1, size=batch), rng.integers(0, span_y + 1, size=batch)],
            axis=1,
        ).astype(np.int64)
        if max_overlap >= 1:
            take = cand[: count - n]
            accepted[n : n + len(take)] = take
            n += len(take)
            continue
        # candidates that clash with an earlier chip are dropped at once (vectorised) ...
        if n:
            ok = (_window_overlap(cand, accepted[:n], chip_w, chip_h) < max_overlap).all(axis=1)
            cand = cand[ok]
        # ... the rest are accepted in order, each checked against the ones accepted before it
        for c in cand:
            if (
                n
                and not (_window_overlap(c[None], accepted[:n], chip_w, chip_h) < max_overlap).all()
            ):
                continue
            accepted[n] = c
            n += 1
            if n == count:
                break
    return accepted[:n].copy()


def _grid_starts(length: int, chip_size: int, stride: int) -> list[int]:
    if length <= chip_size:
        return [0]
    starts = list(range(0, length - chip_size, stride))
    if not starts or starts[-1] != length - chip_size:
        starts.append(length - chip_size)
    return starts


def grid_chip_windows(width: int, height: int, *, chip_size: int, stride: int) -> IntArray:
    """Top-left corners of a regular grid of chips covering the image, row by row.

    Chips start every ``stride`` pixels; the last chip of a row / column is aligned with the image
    edge (so every pixel is covered and no chip leaves the image unless the image is smaller than
    the chip, then one chip starts at 0 and is zero-padded when read).

    Args:
        width: image width in pixels.
        height: image height in pixels.
        chip_size: chip side in pixels.
        stride: step between chips in pixels.

    Returns:
        ``[k, 2]`` int64 ``(col_off, row_off)``.
    """
    xs = _grid_starts(width, chip_size, stride)
    ys = _grid_starts(height, chip_size, stride)
    return np.asarray([(x, y) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def chip_boxes(
    boxes: FloatArray,
    window: tuple[float, float, float, float],
    min_visibility: float,
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    r"""Boxes of an image that a chip keeps, clipped and in chip pixels.

    With a box $b$ and the chip window $w$, the visible fraction is
    $|b \cap w| / |b|$; the box is kept when the intersection has a positive area and the
    fraction is at least ``min_visibility``, and becomes $b \cap w$ shifted by the chip's
    top-left corner.

    Args:
        boxes: ``[n, 4]`` image-pixel ``x_min, y_min, x_max, y_max`` (positive area).
        window: ``(col_off, row_off, width, height)`` of the chip.
        min_visibility: smallest visible fraction kept, in ``[0, 1]``.

    Returns:
        ``(chip_boxes [m, 4] float32, indices [m])``: the kept boxes and their rows in ``boxes``.
    """
    x0, y0, w, h = window
    ix0 = np.maximum(boxes[:, 0], x0)
    iy0 = np.maximum(boxes[:, 1], y0)
    ix1 = np.minimum(boxes[:, 2], x0 + w)
    iy1 = np.minimum(boxes[:, 3], y0 + h)
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.flatnonzero((inter > 0) & (inter >= min_visibility * area))
    out = np.stack([ix0[keep] - x0, iy0[keep] - y0, ix1[keep] - x0, iy1[keep] - y0], axis=1)
    return out.astype(np.float32).reshape(-1, 4), keep


@dataclass(frozen=True)
class XViewChipParams:
    """How images are cut into chips (every field is part of the chip cache key).

    Attributes:
        mode: ``"random"`` (the paper's training chips) or ``"grid"`` (evaluation).
        chip_size: chip side in pixels (paper: 416).
        crops_per_image: random chips per image (paper: 100).
        max_overlap: pairwise IoU of random chips must be below this (paper: 0.25).
        min_visibility: smallest visible fraction of a box kept in a chip (not given in the
            paper; 0.3 matches
            `geossl.transforms.targets.TargetAugmentation`).
        stride: grid step in pixels; None = ``chip_size`` (no overlap but at the edges).
        seed: seed of the random chips (per image: ``(seed, crc of the image id)``).
    """

    mode: ChipMode = "random"
    chip_size: int = 416
    crops_per_image: int = 100
    max_overlap: float = 0.25
    min_visibility: float = 0.3
    stride: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate the parameters.

        Raises:
            ValueError: if a parameter is out of range or the mode unknown.
        """
        if self.mode not in ("random", "grid"):
            raise ValueError(f"chip mode must be 'random' or 'grid', got {self.mode!r}")
        check_at_least("chip_size", self.chip_size, 1)
        check_at_least("crops_per_image", self.crops_per_image, 1)
        check_range("max_overlap", self.max_overlap, low=0, high=1, low_open=True)
        check_fraction("min_visibility", self.min_visibility)
        if self.stride is not None:
            check_at_least("stride", self.stride, 1)

    def key_fields(self) -> dict[str, Any]:
        """The fields that change the chips (random ignores the stride, grid the rest)."""
        fields = asdict(self)
        if self.mode == "grid":
            fields.pop("crops_per_image")
            fields.pop("max_overlap")
            fields.pop("seed")
            fields["stride"] = self.stride or self.chip_size
        else:
            fields.pop("stride")
        return fields


@dataclass(frozen=True)
class XViewChips:
    """The chip index: every chip of every image with its boxes.

    Attributes:
        params: how the chips were cut.
        image_ids: the images (as in [`XViewLabels`][geossl.datasets.xview.labels.XViewLabels]).
        chip_image: ``[C]`` int64 image index of each chip.
        windows: ``[C, 4]`` int64 ``(col_off, row_off, width, height)`` in image pixels (width /
            height are the chip size; the part past a small image's edge is zero-padded).
        box_offsets: ``[C + 1]`` int64: chip ``i``'s boxes are rows
            ``box_offsets[i]:box_offsets[i + 1]``.
        boxes: ``[M, 4]`` float32 chip-pixel ``x_min, y_min, x_max, y_max``.
        labels: ``[M]`` int64 labels ``0..59``.
        shortfall: random chips wanted but not placed (images too small for the overlap rule).
        key: the cache key.
    """

    params: XViewChipParams
    image_ids: tuple[str, ...]
    chip_image: IntArray
    windows: IntArray
    box_offsets: IntArray
    boxes: FloatArray
    labels: IntArray
    shortfall: int = 0
    key: str = ""

    def __len__(self) -> int:
        return len(self.chip_image)

    def chip(self, index: int) -> tuple[FloatArray, IntArray]:
        """Boxes and labels of chip ``index``."""
        lo, hi = self.box_offsets[index], self.box_offsets[index + 1]
        return self.boxes[lo:hi], self.labels[lo:hi]


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def build_xview_chips(labels: XViewLabels, params: XViewChipParams) -> XViewChips:
    """Cut every image of ``labels`` into chips (see `XViewChipParams`).

    Args:
        labels: the cleaned boxes.
        params: the chipping parameters.

    Returns:
        The chip index (chips of each image contiguous, images in ``labels`` order).
    """
    size = params.chip_size
    chip_image: list[IntArray] = []
    windows: list[IntArray] = []
    counts: list[int] = []
    boxes_out: list[FloatArray] = []
    labels_out: list[IntArray] = []
    shortfall = 0
    for index, image_id in enumerate(labels.image_ids):
        width, height = (int(v) for v in labels.image_sizes[index])
        if params.mode == "random":
            corners = random_chip_windows(
                width,
                height,
                chip_size=size,
                count=params.crops_per_image,
                max_overlap=params.max_overlap,
                rng=_image_rng(params.seed, image_id),
            )
            if width > size or height > size:
                shortfall += params.crops_per_image - len(corners)
        else:
            corners = grid_chip_windows(width, height, chip_size=size, stride=params.stride or size)
        image_boxes, image_labels = labels.image_boxes(index)
        for x, y in corners:
            kept, rows = chip_boxes(image_boxes, (x, y, size, size), params.min_visibility)
            boxes_out.append(kept)
            labels_out.append(image_labels[rows])
            counts.append(len(rows))
        chip_image.append(np.full(len(corners), index, dtype=np.int64))
        windows.append(
            np.concatenate([corners, np.full((len(corners), 2), size, dtype=np.int64)], axis=1)
        )
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return XViewChips(
        params=params,
        image_ids=labels.image_ids,
        chip_image=np.concatenate(chip_image) if chip_image else np.zeros(0, np.int64),
        windows=np.concatenate(windows) if windows else np.zeros((0, 4), np.int64),
        box_offsets=offsets,
        boxes=np.concatenate(boxes_out) if boxes_out else np.zeros((0, 4), np.float32),
        labels=np.concatenate(labels_out) if labels_out else np.zeros(0, np.int64),
        shortfall=shortfall,
    )


def load_xview_chips(
    root: str | os.PathLike[str],
    params: XViewChipParams,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> tuple[XViewLabels, XViewChips]:
    """The labels and the chip index of an xView root, from the cache when it is current.

    Args:
        root: the dataset root.
        params: the chipping parameters.
        cache_dir: cache folder; default ``root/.geossl-cache``.
        rebuild: ignore existing cache files.

    Returns:
        ``(labels, chips)``.

    Raises:
        DatasetNotFoundError: see
            [`load_xview_labels`][geossl.datasets.xview.labels.load_xview_labels].
        BadDatasetError: see [`load_xview_labels`][geossl.datasets.xview.labels.load_xview_labels].
    """
    labels = load_xview_labels(root, cache_dir=cache_dir, rebuild=rebuild)
    key = _hash({"version": _CACHE_VERSION, "labels": labels.key, **params.key_fields()})
    cache = _cache_folder(root, cache_dir) / f"xview-chips-{params.mode}-{key}.npz"
    cached = None if rebuild else _load_npz(cache)
    if cached is not None:
        meta = json.loads(str(cached["meta"]))
        chips = XViewChips(
            params=params,
            image_ids=labels.image_ids,
            chip_image=cached["chip_image"].astype(np.int64),
            windows=cached["windows"].astype(np.int64),
            box_offsets=cached["box_offsets"].astype(np.int64),
            boxes=cached["boxes"].astype(np.float32),
            labels=cached["labels"].astype(np.int64),
            shortfall=int(meta["shortfall"]),
            key=key,
        )
        return labels, chips
    chips = build_xview_chips(labels, params)
    meta = {"version": _CACHE_VERSION, "params": asdict(params), "shortfall": chips.shortfall}
    _save_npz(
        cache,
        {
            "meta": np.asarray(json.dumps(meta)),
            "chip_image": chips.chip_image.astype(np.int32),
            "windows": chips.windows.astype(np.int32),
            "box_offsets": chips.box_offsets,
            "boxes": chips.boxes,
            "labels": chips.labels.astype(np.int16),
        },
    )
    return labels, replace(chips, key=key)
