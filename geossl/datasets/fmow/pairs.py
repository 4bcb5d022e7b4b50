"""fMoW temporal positives: `FMoWTemporalPairs`, two acquisitions of one location.

Pairs of index rows come from
[`geossl.samplers.TemporalPairSampler`][geossl.samplers.TemporalPairSampler]; the rows are those of
the index built by
[`geossl.datasets.fmow.index.build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index].
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from geossl.datasets.fmow.dataset import _BOX_COLUMNS, Transform, _FMoWBase, _ImageT
from geossl.datasets.fmow.encoded import EncodedImages

__all__ = ["FMoWTemporalPairs"]


class FMoWTemporalPairs(_FMoWBase):
    """fMoW temporal positives: two acquisitions of one location (Ayush et al., ICCV 2021).

    ``dataset[(i, j)]`` (pairs from
    [`geossl.samplers.TemporalPairSampler`][geossl.samplers.TemporalPairSampler]) returns the keys
    of `FMoW` with ``image``: ``[2, C, H, W]`` (view 0 = row ``i``, the anchor; view 1 = row ``j``),
    ``time`` and ``index``: ``int64 [2]``; ``label``, ``geo_label``, ``lat``, ``lon`` and
    ``location`` are the anchor's.

    Each view is, by default, its own image's context crop (the GeoSSL pipeline). With
    ``shared_canvas=True`` both views are drawn on one canvas: view 0 is the anchor's context crop
    and view 1 is the window of image ``j`` that puts ``j``'s target box exactly where the
    anchor's box lies on the canvas (the anchor's margins, relative to the box, applied to ``j``'s
    box; outside ``j``'s image is zero). Canvas coordinates then line up between the two views, as
    the temporal SCRL loss needs. For fMoW this is approximate: the two target boxes are drawn by
    hand on images with their own grid, off-nadir angle and registration error, so only the box
    corners agree; the canvas is a neighbourhood of the target, not a ground grid.

    Unreadable images: if ``j`` fails, view 1 repeats the anchor; if ``i`` fails, ``j`` becomes the
    anchor; if both fail, the first image of the next location is used for both views. Each failure
    warns and counts towards ``max_load_failures`` as in `FMoW`.

    Not a torchgeo ``NonGeoDataset`` (unlike `FMoW`): it is indexed by a pair of rows, not
    by one integer, so a consumer of that base (``dataset[0]``) would fail; it has the same
    ``plot`` (docs/design.md, "torchgeo bases").

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``; with
            ``shared_canvas`` also the target box columns ``box_x``, ``box_y``, ``box_w``,
            ``box_h``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see `read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.
        shared_canvas: draw view 1 on the anchor's canvas (see above).
        encoded: JPEG products only: return the two files undecoded, ``encoded``
            ([`EncodedImages`][geossl.datasets.fmow.encoded.EncodedImages] with each row's context
            crop) in place of ``image``, for
            [`decode_encoded`][geossl.datasets.fmow.encoded.decode_encoded] on the device; batch
            them with [`collate_encoded`][geossl.datasets.fmow.encoded.collate_encoded]. A file that
            cannot be read or is not a JPEG is replaced as above; one that fails to decode is the
            decoder's to handle.

    Examples:
        >>> import tempfile
        >>> from geossl.datasets.fmow import FMoWTemporalPairs, build_fmow_index
        >>> from geossl.synthetic.fmow import generate_fmow_sample
        >>> with tempfile.TemporaryDirectory() as root:
        ...     _ = generate_fmow_sample(root, locations=2, images_per_location=(2, 2),
        ...                              image_size=(32, 48), split_fractions={"train": 1.0})
        ...     index = build_fmow_index(root, splits=["train"], num_geo_clusters=2,
        ...                              cache_dir=root, workers=1, progress=False)
        ...     pairs = FMoWTemporalPairs(root, index.table, image_size=32)
        ...     sample = pairs[(0, 1)]  # rows 0 and 1: two dates of the first location
        >>> sample["image"].shape, sample["time"].shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2]))
        >>> bool(sample["time"][0] != sample["time"][1])
        True
        >>> len(pairs.plot(sample).axes)  # both views side by side, with their dates
        2
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_rows: pd.DataFrame,
        image_size: int = 224,
        bands: Sequence[int] | None = None,
        transforms: Transform | None = None,
        *,
        scale: float | None = None,
        max_load_failures: int = 100,
        shared_canvas: bool = False,
        encoded: bool = False,
    ) -> None:
        if encoded and shared_canvas:
            raise ValueError("FMoWTemporalPairs: encoded images cannot be drawn on a shared canvas")
        if encoded and len(split_rows):
            jpeg = split_rows["path"].astype(str).str.lower().str.endswith((".jpg", ".jpeg"))
            if not jpeg.all():
                first = split_rows["path"][~jpeg].iloc[0]
                raise ValueError(f"{first}: encoded=True reads JPEG images only")
        super().__init__(
            root,
            split_rows,
            image_size,
            bands,
            transforms,
            scale=scale,
            max_load_failures=max_load_failures,
        )
        self.shared_canvas = shared_canvas
        self.encoded = encoded
        self._box: npt.NDArray[np.float64] | None = None
        if shared_canvas:
            missing = [c for c in _BOX_COLUMNS if c not in split_rows.columns]
            if missing:
                raise ValueError(
                    f"split_rows lacks the box columns {missing} that shared_canvas needs"
                )
            self._box = np.stack(
                [split_rows[c].to_numpy(dtype=np.float64) for c in _BOX_COLUMNS], axis=1
            )

    def canvas_window(self, anchor: int, other: int) -> tuple[int, int, int, int]:
        """The window of row ``other`` that maps its target box onto the anchor's canvas.

        With the anchor's context crop ``(cx0, cy0, cx1, cy1)`` around its box ``(x, y, w, h)``,
        the margins in box units are ``l = (x - cx0) / w``, ``r = (cx1 - x - w) / w`` (and ``t``,
        ``b`` likewise with ``h``); the window of ``other``'s box ``(x', y', w', h')`` is
        ``(x' - l w', y' - t h', x' + w' + r w', y' + h' + b h')``, rounded outwards.

        Args:
            anchor: the anchor's row.
            other: the other acquisition's row.

        Returns:
            ``(x0, y0, x1, y1)`` in ``other``'s pixels, exclusive ends; may lie partly outside.

        Raises:
            RuntimeError: if the dataset was built without ``shared_canvas``.
        """
        if self._box is None:
            raise RuntimeError("canvas_window needs FMoWTemporalPairs(shared_canvas=True)")
        cx0, cy0, cx1, cy1 = (float(v) for v in self._crop[anchor])
        x, y, w, h = self._box[anchor]
        left, right = (x - cx0) / w, (cx1 - x - w) / w
        top, bottom = (y - cy0) / h, (cy1 - y - h) / h
        xo, yo, wo, ho = self._box[other]
        return (
            math.floor(xo - left * wo),
            math.floor(yo - top * ho),
            math.ceil(xo + wo + right * wo),
            math.ceil(yo + ho + bottom * ho),
        )

    def __getitem__(self, index: tuple[int, int]) -> dict[str, Any]:
        """Return the pair sample of rows ``index = (i, j)`` (``encoded`` is not a tensor)."""
        if not isinstance(index, tuple | list) or len(index) != 2:
            raise TypeError(
                "FMoWTemporalPairs takes an (i, j) pair of row indexes (use TemporalPairSampler), "
                f"got {index!r}"
            )
        i, j = self._check_row(int(index[0])), self._check_row(int(index[1]))
        sample: dict[str, Any]
        if self.encoded:
            i, j, first_bytes, second_bytes = self._read_pair(
                i, j, self._try_read_bytes, lambda anchor, other: self._try_read_bytes(other)
            )
            sample = {
                "encoded": EncodedImages(
                    [first_bytes, second_bytes],
                    [self._crop_of(i), self._crop_of(j)],
                    [self.path(i), self.path(j)],
                )
            }
        else:
            i, j, first, second = self._read_pair(i, j, self._try_read, self._read_second)
            sample = {"image": torch.stack([first, second])}
        sample.update(
            self._meta(i),
            time=torch.tensor([self._time[i], self._time[j]], dtype=torch.int64),
            index=torch.tensor([i, j], dtype=torch.int64),
        )
        return self.transforms(sample) if self.transforms is not None else sample

    def plot(
        self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw both views side by side as RGB, each titled category and date (torchgeo's ``plot``).

        Args:
            sample: a pair sample of this dataset (decoded: not ``encoded``).
            show_titles: write the category and each view's date above it.
            suptitle: an optional figure title.

        Returns:
            The figure: two axes, view 0 (the anchor) then view 1.

        Raises:
            ValueError: for an ``encoded`` sample (decode it first).
        """
        return self._plot_views(sample, [0, 1], show_titles, suptitle)

    def _read_pair(
        self,
        i: int,
        j: int,
        read: Callable[[int], _ImageT | None],
        read_second: Callable[[int, int], _ImageT | None],
    ) -> tuple[int, int, _ImageT, _ImageT]:
        """Both views of ``(i, j)``, replaced as the class doc says.

        Returns:
            ``(i, j, first, second)``, where ``i`` and ``j`` are the rows actually read.
        """
        anchor = read(i)
        if anchor is None:  # the anchor failed: j alone (else the next location) for both views
            replacement = read(j) if j != i else None
            if replacement is not None:
                return j, j, replacement, replacement
            i, first = self._read_with_replacement(self._next_location_row(i), read)
            return i, i, first, first
        other = read_second(i, j) if j != i else anchor
        if other is None:
            return i, i, anchor, anchor
        return i, j, anchor, other

    def _crop_of(self, row: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (int(v) for v in self._crop[row])
        return x0, y0, x1, y1

    def _read_second(self, anchor: int, other: int) -> Tensor | None:
        """View 1: row ``other`` on its own context crop, or on the anchor's canvas."""
        if not self.shared_canvas:
            return self._try_read(other)
        return self._try_read(other, self.canvas_window(anchor, other))
