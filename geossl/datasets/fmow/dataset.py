"""The fMoW datasets that the training pipeline uses.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) has 1,047,691 satellite images of
62 functional categories, several acquisitions per location.

* [`FMoW`][geossl.datasets.fmow.dataset.FMoW]: one image per index row (``dataset[i]``);
* [`FMoWLocations`][geossl.datasets.fmow.dataset.FMoWLocations]: one location per item;
* [`FMoWTemporalPairs`][geossl.datasets.fmow.pairs.FMoWTemporalPairs] (in
  [`geossl.datasets.fmow.pairs`][geossl.datasets.fmow.pairs]): two acquisitions of one location.

They read rows of the index built by
[`geossl.datasets.fmow.index.build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index] (see
docs/design.md for its columns and for the sample dicts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_MS_BANDS
from geossl.datasets.fmow.io import _JPEG_START, _read_errors, read_fmow_image
from geossl.datasets.plotting import format_time, image_figure, rgb_image
from geossl.datasets.skips import BLANK_IMAGE, UNREADABLE_IMAGE, LoadFailures, blank_images
from geossl.utils.checks import check_at_least

__all__ = ["FMoW", "FMoWLocations"]

Sample = dict[str, Tensor]

#: What a reader returns for one image: the decoded crop, or the file's bytes (``encoded``).
_ImageT = TypeVar("_ImageT", Tensor, bytes)

Transform = Callable[[Sample], Sample]


#: The target box of each row (pixels): what
#: :class:`~geossl.datasets.fmow.pairs.FMoWTemporalPairs` aligns on a shared canvas.
_BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")

#: Columns of the index that the datasets read.
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

#: 1-based red, green and blue bands of the 8-band ``ms`` product.
_MS_RGB = tuple(FMOW_MS_BANDS.index(name) + 1 for name in ("red", "green", "blue"))


def _category(label: int) -> str:
    return FMOW_CATEGORIES[label] if 0 <= label < len(FMOW_CATEGORIES) else "unknown category"


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
        check_at_least("image_size", image_size, 1)
        if bands is not None and (len(bands) == 0 or min(bands) < 1):
            raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
        self.root = os.fspath(root)
        self.image_size = image_size
        self.bands = list(bands) if bands is not None else None
        self.transforms = transforms
        self.scale = scale
        self.max_load_failures = max_load_failures
        #: Images that could not be read (or were blank) in this process, by reason (each
        #: DataLoader worker has its own).
        self.load_failures = LoadFailures(
            self.root, max_load_failures, reasons=(UNREADABLE_IMAGE, BLANK_IMAGE)
        )
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

    @property
    def num_load_failures(self) -> int:
        """Images that could not be read (or were blank) in this process."""
        return self.load_failures.count

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
            image = read_fmow_image(
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
        # A JPEG whose markers are intact but whose data was zeroed decodes to one flat colour.
        if bool(blank_images(image[None])[0]):
            self._record_failure(row, path, None)
            return None
        return image

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

    def _record_failure(self, row: int, path: str, err: BaseException | None) -> None:
        """Count an unreadable (``err``) or blank (``None``) image, warn, give up past the limit."""
        self._bad_rows.add(row)
        if err is None:
            self.load_failures.record(path, BLANK_IMAGE, stacklevel=5)
            return
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        try:
            self.load_failures.record(path, UNREADABLE_IMAGE, message, stacklevel=5)
        except BadDatasetError as error:
            raise error from err

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

    def _rgb_channels(self, num_channels: int) -> tuple[int, ...]:
        """0-based channels of red, green, blue: those of ``ms`` when read, else the first 3."""
        bands = self.bands if self.bands is not None else list(range(1, num_channels + 1))
        if len(bands) == num_channels and num_channels > 3 and set(_MS_RGB) <= set(bands):
            return tuple(bands.index(b) for b in _MS_RGB)
        return (0, 1, 2)

    def _plot_views(
        self,
        sample: dict[str, Any],
        views: Sequence[int],
        show_titles: bool,
        suptitle: str | None,
    ) -> Figure:
        """Views ``views`` of ``sample["image"]`` (``[V, C, H, W]``), titled category and date."""
        if "image" not in sample:
            raise ValueError("plot needs decoded images (an encoded sample has no 'image')")
        images, times = sample["image"], sample["time"].reshape(-1)
        title = _category(int(sample["label"]))
        if "prediction" in sample:
            title += f"\nprediction: {_category(int(sample['prediction']))}"
        channels = self._rgb_channels(images.shape[1])
        return image_figure(
            [rgb_image(images[v], channels) for v in views],
            [f"{title}\n{format_time(times[v])}" for v in views],
            show_titles=show_titles,
            suptitle=suptitle,
        )


class FMoW(_FMoWBase, NonGeoDataset):
    """fMoW, one image per index row: the context crop of the target, resized to ``image_size``.

    ``dataset[i]`` (``i`` is a position in ``split_rows``) returns

    * ``image``: ``uint8 [C, image_size, image_size]`` for JPEG products; ``float32`` in ``[0, 1]``
      for the GeoTIFF products of fMoW-full (see
      [`read_fmow_image`][geossl.datasets.fmow.io.read_fmow_image]);
    * ``label``, ``geo_label``, ``location`` (the row's ``location_id``), ``time`` (unix seconds),
      ``index``: ``int64`` scalars; ``lat``, ``lon``: ``float32`` scalars.

    An image that cannot be read is replaced by the first image of the next location
    (deterministic), with a warning naming the file; more than ``max_load_failures`` failures in one
    process raise [`BadDatasetError`][geossl.datasets.errors.BadDatasetError]. The returned metadata
    is the replacement's.

    Args:
        root: the fMoW root folder (``path`` in the index is relative to it).
        split_rows: rows of the index (`FMoWIndex.table`, filtered), sorted by location.
        image_size: output side in pixels.
        bands: 1-based band indexes (rasterio convention), ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see
            [`read_fmow_image`][geossl.datasets.fmow.io.read_fmow_image]).
        max_load_failures: unreadable images tolerated per process before giving up.

    Examples:
        >>> import tempfile
        >>> from geossl.datasets.fmow import FMoW, build_fmow_index
        >>> from geossl.synthetic.fmow import generate_fmow_sample
        >>> with tempfile.TemporaryDirectory() as root:
        ...     _ = generate_fmow_sample(root, locations=2, images_per_location=(2, 2),
        ...                              image_size=(32, 48), split_fractions={"train": 1.0})
        ...     index = build_fmow_index(root, splits=["train"], num_geo_clusters=2,
        ...                              cache_dir=root, workers=1, progress=False)
        ...     dataset = FMoW(root, index.table, image_size=32)
        ...     sample = dataset[0]
        >>> len(dataset), sample["image"].shape, sample["image"].dtype
        (4, torch.Size([3, 32, 32]), torch.uint8)
        >>> sorted(sample)
        ['geo_label', 'image', 'index', 'label', 'lat', 'location', 'lon', 'time']
        >>> len(dataset.plot(sample).axes)  # torchgeo's plot: RGB, titled category and date
        1
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

    def plot(
        self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw a sample as RGB, titled with its category and date (torchgeo's ``plot``).

        Args:
            sample: a sample of this dataset (``prediction``, a label, is shown too).
            show_titles: write the category and date above the image.
            suptitle: an optional figure title.

        Returns:
            The figure (one axis); the class example draws one.
        """
        one_view = {**sample, "image": sample["image"][None]}
        return self._plot_views(one_view, [0], show_titles, suptitle)


class FMoWLocations(_FMoWBase, NonGeoDataset):
    """fMoW, one sample per location: up to ``max_views`` acquisitions stacked in time order.

    For temporal classification (the acquisitions' features are averaged before the classifier).
    ``dataset[k]`` (``k`` is the ``k``-th location of ``split_rows``) returns

    * ``image``: ``[max_views, C, image_size, image_size]`` (dtype as in
      [`FMoW`][geossl.datasets.fmow.dataset.FMoW]); slots past the location's image count are zero;
    * ``views``: ``bool [max_views]``, which slots hold an image;
    * ``label``, ``geo_label``, ``location``: ``int64`` scalars; ``lat``, ``lon``: ``float32``;
    * ``time``, ``index``: ``int64 [max_views]`` (0 / -1 in empty slots).

    A location with more than ``max_views`` images shows its first ``max_views`` by acquisition
    time, or, with ``random_views=True`` (training), a random subset of that size drawn from
    ``torch``'s generator (seeded per DataLoader worker by torch). An unreadable image leaves its
    slot empty (warned and counted as in [`FMoW`][geossl.datasets.fmow.dataset.FMoW]); a location
    whose images all fail is replaced by the next location.

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        max_views: acquisitions per sample (at least 1).
        random_views: draw a random subset of a location's images instead of the first ones.
        scale: GeoTIFF value scale (see
            [`read_fmow_image`][geossl.datasets.fmow.io.read_fmow_image]).
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
        check_at_least("max_views", max_views, 1)
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

    def plot(
        self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw the location's acquisitions side by side, each titled category and date.

        Args:
            sample: a sample of this dataset (only the slots of ``views`` are drawn).
            show_titles: write the category and date above each image.
            suptitle: an optional figure title.

        Returns:
            The figure: one axis per acquisition present.
        """
        present = [k for k, seen in enumerate(sample["views"].tolist()) if seen]
        return self._plot_views(sample, present, show_titles, suptitle)
