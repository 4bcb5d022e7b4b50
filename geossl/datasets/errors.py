"""Errors raised by geossl's datasets.

Every message is one line that names the file or folder and says what is wrong with it, so that it
reads well at the bottom of a traceback and in a CLI error.
"""

from __future__ import annotations

import os

__all__ = ["BadDatasetError", "DatasetNotFoundError", "InvalidSampleError"]

_GET_DATA_HINTS: dict[str, str] = {
    "fmow": (
        "download it with `geossl datasets download fmow --root {root}` "
        "or write a small sample with `geossl datasets sample fmow --output {root}`"
    ),
    "xview": (
        "download xView1 from https://xviewdataset.org (registration required; datasets/xview.md) "
        "or write a small sample with `geossl datasets sample xview --output {root}`"
    ),
    "spacenet": (
        "download it with torchgeo (SpaceNet1(root, download=True)) or the AWS CLI "
        "(datasets/spacenet.md), or write a small sample with `geossl datasets sample spacenet1 "
        "--output {root}`"
    ),
    "scenes": (
        "a scene folder holds labels.csv with the header path,class_name,class_idx and one row "
        "per image (docs/probe.md)"
    ),
    "rasters": (
        "point data.paths at GeoTIFFs or folders of them (searched recursively), or write a small "
        "sample with geossl.synthetic.generate_raster_timeseries_sample"
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset (or a part of it that was asked for) is not on disk.

    The message says how to get the data, e.g. for fMoW::

        fMoW root folder does not exist: data/fmow; download it with `geossl datasets download fmow
        --root data/fmow` or write a small sample with `geossl datasets sample fmow --output
        data/fmow`

    Attributes:
        root: the dataset root folder.
        problem: what is missing, without the hint.
        dataset: the dataset's name in the ``geossl datasets`` command.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        problem: str = "dataset not found",
        dataset: str = "fmow",
    ) -> None:
        self.root = os.fspath(root)
        self.problem = problem
        self.dataset = dataset
        hint = _GET_DATA_HINTS.get(dataset, "see `geossl datasets --help`").format(root=self.root)
        super().__init__(f"{problem}: {self.root}; {hint}")

    def __reduce__(self) -> tuple[type[DatasetNotFoundError], tuple[str, str, str]]:
        # Exceptions cross process boundaries (index workers) by pickling their constructor
        # arguments.
        return (type(self), (self.root, self.problem, self.dataset))


def _from_worker(text: str) -> tuple[str, str]:
    """``(folder, problem)`` of the last line of torch's "Caught ... Original Traceback" text.

    A DataLoader worker's exception reaches the main process as ``type(error)(text)``, the text
    holding the worker's whole traceback; its last line is ``"...BadDatasetError: folder:
    problem"``, which is the one line worth showing.
    """
    last = text.strip().splitlines()[-1] if text.strip() else ""
    message = last.partition("BadDatasetError: ")[2] if "BadDatasetError: " in last else last
    folder, _, problem = message.partition(": ")
    return (folder, problem) if problem else ("dataset", message)


class BadDatasetError(ValueError):
    """The dataset is on disk but unusable: empty, or too many of its files are bad.

    The message is ``"{folder}: {problem}"`` on one line, also when it was raised in a DataLoader
    worker (torch re-raises it in the main process from its traceback's text; the last line is
    kept).

    Attributes:
        folder: the folder (or file) concerned.
        problem: what is wrong with it.
    """

    def __init__(self, folder: str | os.PathLike[str], problem: str | None = None) -> None:
        if problem is None:  # a DataLoader worker's error, re-raised with its traceback as text
            folder, problem = _from_worker(os.fspath(folder))
        self.folder = os.fspath(folder)
        self.problem = problem
        super().__init__(f"{self.folder}: {problem}")

    def __reduce__(self) -> tuple[type[BadDatasetError], tuple[str, str]]:
        return (type(self), (self.folder, self.problem))


class InvalidSampleError(ValueError):
    """One sample (an image or its metadata) is unusable; the index skips and counts it.

    Attributes:
        path: the offending file.
        reason: a short, stable category used to count bad samples, e.g. ``"malformed json"``,
            ``"missing timestamp"``, ``"degenerate box"``, ``"truncated image"``.
        detail: optional free text (the parser's message, the bad value).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"{self.path}: {reason}{suffix}")

    def __reduce__(self) -> tuple[type[InvalidSampleError], tuple[str, str, str]]:
        return (type(self), (self.path, self.reason, self.detail))
