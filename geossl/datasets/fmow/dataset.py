"""The fMoW datasets that the training pipeline uses.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) has 1,047,691 satellite images of
62 functional categories, several acquisitions per location.

* :class:`FMoW`: one image per index row (``dataset[i]``);
* :class:`FMoWTemporalPairs`: two acquisitions of one location (``dataset[(i, j)]``, pairs come from
  :class:`geossl.samplers.TemporalPairSampler`);
* :class:`FMoWLocations`: one location per item.

They read rows of the index built by :func:`geossl.datasets.fmow.index.build_fmow_index` (see
docs/design.md for its columns and for the sample dicts).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.fmow.encoded import EncodedImages
from geossl.datasets.fmow.io import _JPEG_START, _read_errors, read_fmow_image

__all__ = ["FMoW", "FMoWLocations", "FMoWTemporalPairs"]

Sample = dict[str, Tensor]


#: What a reader returns for one image: the decoded crop, or the file's bytes (``encoded``).
_ImageT = TypeVar("_ImageT", Tensor, bytes)


Transform = Callable[[Sample], Sample]


#: Columns of the index that the datasets read.
#: The target box of each row (pixels): what :class:`FMoWTemporalPairs` aligns on a shared canvas.
_BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


_DATASET_COLUMNS = (
    "path",
    "label",
    "geo_label",
    "lat",
    "lon",
    "timestamp",
    "location_id",
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
)


class _FMoWBase(Dataset[Sample]):
    """Row storage, image loading and failure handling shared by the fMoW datasets.

    Rows are kept as numpy arrays (paths as one UTF-8 byte buffer plus offsets), not as Python
    objects, so that forked DataLoader workers do not copy them page by page through reference
    counting.
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
    ) -> None:
        missing = [c for c in _DATASET_COLUMNS if c not in split_rows.columns]
        if missing:
            raise ValueError(f"split_rows lacks the index columns {missing} (see docs/design.md)")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if max_load_failures < 0:
            raise ValueError(f"max_load_failures must be non-negative, got {max_load_failures}")
        if bands is not None and (len(bands) == 0 or min(bands) < 1):
            raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
        self.root = os.fspath(root)
        self.image_size = image_size
        self.bands = list(bands) if bands is not None else None
        self.transforms = transforms
        self.scale = scale
        self.max_load_failures = max_load_failures
        #: Images that could not be read in this process (each DataLoader worker has its own).
        self.num_load_failures = 0
        self._bad_rows: set[int] = set()

        encoded = [str(p).encode("utf-8") for p in split_rows["path"].tolist()]
        lengths = np.fromiter((len(p) for p in encoded), dtype=np.int64, count=len(encoded))
        self._path_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._path_offsets[1:])
        self._path_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)

        def column(name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
            return np.ascontiguousarray(split_rows[name].to_numpy(dtype=dtype))

        self._label = column("label", np.int64)
        self._geo_label = column("geo_label", np.int64)
        self._lat = column("lat", np.float32)
        self._lon = column("lon", np.float32)
        self._time = column("timestamp", np.int64)
        self._location = column("location_id", np.int64)
        self._crop = np.stack(
            [column(c, np.int64) for c in ("crop_x0", "crop_y0", "crop_x1", "crop_y1")], axis=1
        )
        # First row of every run of equal location ids: the replacement for an unreadable image is
        # the first image of the next location (deterministic, and never the same place).
        if len(self._location):
            change = np.flatnonzero(np.diff(self._location) != 0) + 1
            self._run_starts = np.concatenate([[0], change]).astype(np.int64)
        else:
            self._run_starts = np.zeros(0, dtype=np.int64)
        self._errors = _read_errors()

    def __len__(self) -> int:
        return len(self._label)

    def path(self, row: int) -> str:
        """Absolute path of the image of ``row``."""
        start, end = self._path_offsets[row], self._path_offsets[row + 1]
        return os.path.join(self.root, self._path_bytes[start:end].tobytes().decode("utf-8"))

    def _check_row(self, row: int) -> int:
        if not -len(self) <= row < len(self):
            raise IndexError(f"index {row} is out of range for {len(self)} rows")
        return row % len(self)

    def _next_location_row(self, row: int) -> int:
        run = int(np.searchsorted(self._run_starts, row, side="right")) - 1
        return int(self._run_starts[(run + 1) % len(self._run_starts)])

    def _try_read(self, row: int, window: tuple[int, int, int, int] | None = None) -> Tensor | None:
        """The image of ``row``, or ``None`` after counting (and warning about) a failure.

        Args:
            row: the index row.
            window: a pixel window to read instead of the row's context crop; it may extend past
                the image (zero outside).
        """
        if row in self._bad_rows:
            return None
        path = self.path(row)
        crop = window if window is not None else tuple(int(v) for v in self._crop[row])
        try:
            return read_fmow_image(
                path,
                (crop[0], crop[1], crop[2], crop[3]),
                self.image_size,
                self.bands,
                scale=self.scale,
                boundless=window is not None,
            )
        except self._errors as err:
            self._record_failure(row, path, err)
            return None

    def _try_read_bytes(self, row: int) -> bytes | None:
        """The file of ``row`` undecoded, or ``None`` after counting a failure (as ``_try_read``).

        Only what the worker can see without decoding is checked: the file reads and starts with
        the JPEG start-of-image marker. A file that fails to decode on the device is counted there.
        """
        if row in self._bad_rows:
            return None
        path = self.path(row)
        try:
            with open(path, "rb") as file:
                data = file.read()
            if not data.startswith(_JPEG_START):
                raise ValueError("not a JPEG file (no start-of-image marker)")
            return data
        except self._errors as err:
            self._record_failure(row, path, err)
            return None

    def _record_failure(self, row: int, path: str, err: BaseException) -> None:
        """Count an unreadable image, warn, and give up past ``max_load_failures``."""
        self._bad_rows.add(row)
        self.num_load_failures += 1
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        warnings.warn(
            f"{path}: cannot read image ({message}); a replacement image is used",
            RuntimeWarning,
            stacklevel=4,
        )
        if self.num_load_failures > self.max_load_failures:
            raise BadDatasetError(
                self.root,
                f"{self.num_load_failures} images failed to load in one worker "
                f"(more than max_load_failures={self.max_load_failures}), "
                f"last {path}: {message}",
            ) from err

    def _read_with_replacement(
        self, row: int, read: Callable[[int], _ImageT | None]
    ) -> tuple[int, _ImageT]:
        """Read ``row`` with ``read``, else the first image of the next locations that loads."""
        current = row
        for _ in range(len(self._run_starts) + 1):
            image = read(current)
            if image is not None:
                return current, image
            current = self._next_location_row(current)
        raise BadDatasetError(self.root, "no image of this dataset could be read")

    def _meta(self, row: int) -> Sample:
        return {
            "label": torch.tensor(self._label[row], dtype=torch.int64),
            "geo_label": torch.tensor(self._geo_label[row], dtype=torch.int64),
            "lat": torch.tensor(self._lat[row], dtype=torch.float32),
            "lon": torch.tensor(self._lon[row], dtype=torch.float32),
            "location": torch.tensor(self._location[row], dtype=torch.int64),
        }


class FMoW(_FMoWBase):
    """fMoW, one image per index row: the context crop of the target, resized to ``image_size``.

    ``dataset[i]`` (``i`` is a position in ``split_rows``) returns

    * ``image``: ``uint8 [C, image_size, image_size]`` for JPEG products; ``float32`` in ``[0, 1]``
      for the GeoTIFF products of fMoW-full (see :func:`read_fmow_image`);
    * ``label``, ``geo_label``, ``location`` (the row's ``location_id``), ``time`` (unix seconds),
      ``index``: ``int64`` scalars; ``lat``, ``lon``: ``float32`` scalars.

    An image that cannot be read is replaced by the first image of the next location
    (deterministic), with a warning naming the file; more than ``max_load_failures`` failures in one
    process raise :class:`~geossl.datasets.errors.BadDatasetError`. The returned metadata is the
    replacement's.

    Args:
        root: the fMoW root folder (``path`` in the index is relative to it).
        split_rows: rows of the index (:attr:`FMoWIndex.table`, filtered), sorted by location.
        image_size: output side in pixels.
        bands: 1-based band indexes (rasterio convention), ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.
    """

    def __getitem__(self, index: int) -> Sample:
        """Return the sample of row ``index``."""
        if not isinstance(index, int | np.integer):
            raise TypeError(f"FMoW takes an integer row index, got {type(index).__name__}")
        row, image = self._read_with_replacement(self._check_row(int(index)), self._try_read)
        sample = {
            "image": image,
            **self._meta(row),
            "time": torch.tensor(self._time[row], dtype=torch.int64),
            "index": torch.tensor(row, dtype=torch.int64),
        }
        return self.transforms(sample) if self.transforms is not None else sample


class FMoWTemporalPairs(_FMoWBase):
    """fMoW temporal positives: two acquisitions of one location (Ayush et al., ICCV 2021).

    ``dataset[(i, j)]`` (pairs from :class:`geossl.samplers.TemporalPairSampler`) returns the keys
    of :class:`FMoW`
    with ``image``: ``[2, C, H, W]`` (view 0 = row ``i``, the anchor; view 1 = row ``j``), ``time``
    and ``index``: ``int64 [2]``; ``label``, ``geo_label``, ``lat``, ``lon`` and ``location`` are
    the anchor's.

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
    warns and counts towards ``max_load_failures`` as in :class:`FMoW`.

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``; with
            ``shared_canvas`` also the target box columns ``box_x``, ``box_y``, ``box_w``,
            ``box_h``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.
        shared_canvas: draw view 1 on the anchor's canvas (see above).
        encoded: JPEG products only: return the two files undecoded, ``encoded``
            (:class:`~geossl.datasets.fmow.encoded.EncodedImages` with each row's context crop)
            in place of ``image``, for :func:`~geossl.datasets.fmow.encoded.decode_encoded` on the
            device; batch them with :func:`~geossl.datasets.fmow.encoded.collate_encoded`. A file
            that cannot be read or is not a JPEG is replaced as above; one that fails to decode is
            the decoder's to handle.
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


class FMoWLocations(_FMoWBase):
    """fMoW, one sample per location: up to ``max_views`` acquisitions stacked in time order.

    For temporal classification (the acquisitions' features are averaged before the classifier).
    ``dataset[k]`` (``k`` is the ``k``-th location of ``split_rows``) returns

    * ``image``: ``[max_views, C, image_size, image_size]`` (dtype as in :class:`FMoW`); slots past
      the location's image count are zero;
    * ``views``: ``bool [max_views]``, which slots hold an image;
    * ``label``, ``geo_label``, ``location``: ``int64`` scalars; ``lat``, ``lon``: ``float32``;
    * ``time``, ``index``: ``int64 [max_views]`` (0 / -1 in empty slots).

    A location with more than ``max_views`` images shows its first ``max_views`` by acquisition
    time, or, with ``random_views=True`` (training), a random subset of that size drawn from
    ``torch``'s generator (seeded per DataLoader worker by torch). An unreadable image leaves its
    slot empty (warned and counted as in :class:`FMoW`); a location whose images all fail is
    replaced by the next location.

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        max_views: acquisitions per sample (at least 1).
        random_views: draw a random subset of a location's images instead of the first ones.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.

    Raises:
        ValueError: if ``max_views`` < 1.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_rows: pd.DataFrame,
        image_size: int = 224,
        bands: Sequence[int] | None = None,
        max_views: int = 4,
        *,
        random_views: bool = False,
        scale: float | None = None,
        max_load_failures: int = 100,
    ) -> None:
        if max_views < 1:
            raise ValueError(f"max_views must be at least 1, got {max_views}")
        super().__init__(
            root,
            split_rows,
            image_size,
            bands,
            scale=scale,
            max_load_failures=max_load_failures,
        )
        self.max_views = max_views
        self.random_views = random_views
        self._run_ends = np.append(self._run_starts[1:], len(self._label)).astype(np.int64)

    def __len__(self) -> int:
        return len(self._run_starts)

    def _rows(self, location: int) -> npt.NDArray[np.int64]:
        """Index rows shown for the ``location``-th location (time order)."""
        start, end = int(self._run_starts[location]), int(self._run_ends[location])
        rows = np.arange(start, end, dtype=np.int64)
        if len(rows) > self.max_views:
            if self.random_views:
                pick = torch.randperm(len(rows))[: self.max_views].sort().values.numpy()
                rows = rows[pick]
            else:
                rows = rows[: self.max_views]
        return rows

    def __getitem__(self, index: int) -> Sample:
        """Return the stacked acquisitions of location ``index``."""
        if not isinstance(index, int | np.integer):
            raise TypeError(f"FMoWLocations takes an integer index, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} locations")
        location = int(index) % len(self)
        for _ in range(len(self)):
            rows = self._rows(location)
            images = [(row, self._try_read(int(row))) for row in rows]
            loaded = [(row, image) for row, image in images if image is not None]
            if loaded:
                break
            location = (location + 1) % len(self)
        else:
            raise BadDatasetError(self.root, "no image of this dataset could be read")
        first = loaded[0][1]
        stack = first.new_zeros((self.max_views, *first.shape))
        views = torch.zeros(self.max_views, dtype=torch.bool)
        time = torch.zeros(self.max_views, dtype=torch.int64)
        rows_out = torch.full((self.max_views,), -1, dtype=torch.int64)
        for slot, (row, image) in enumerate(loaded):
            stack[slot] = image
            views[slot] = True
            time[slot] = int(self._time[row])
            rows_out[slot] = int(row)
        return {
            "image": stack,
            "views": views,
            **self._meta(int(loaded[0][0])),
            "time": time,
            "index": rows_out,
        }
