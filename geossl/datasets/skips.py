"""Bad samples skipped and counted by reason: the one home of that bookkeeping.

fMoW's index ([`FMoWIndexReport`][geossl.datasets.fmow.report.FMoWIndexReport]) and the raster
stacks ([`RasterSkipReport`][geossl.datasets.skips.RasterSkipReport]) count what they skip with
[`SkipCounts`][geossl.datasets.skips.SkipCounts], print it with
[`print_skip_summary`][geossl.datasets.skips.print_skip_summary] (a table whose paths are never
cut) and stop with [`check_bad_fraction`][geossl.datasets.skips.check_bad_fraction] when too much
is bad. What fails while training (an image that does not read or decodes to one flat colour) goes
through [`LoadFailures`][geossl.datasets.skips.LoadFailures]: a warning naming the file, a count
by reason, and a one-line error past a limit.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from geossl.datasets.errors import BadDatasetError

__all__ = [
    "BLANK_IMAGE",
    "UNREADABLE_IMAGE",
    "LoadFailures",
    "RasterSkipReport",
    "SkipCounts",
    "blank_images",
    "check_bad_fraction",
    "print_skip_summary",
]

logger = logging.getLogger(__name__)

#: Example paths kept per reason.
MAX_EXAMPLES = 3

#: The reason of an image that is one flat colour (e.g. a JPEG whose data was zeroed).
BLANK_IMAGE = "blank image"

#: The reason of an image that fails to read or decode while training.
UNREADABLE_IMAGE = "cannot read image"


class SkipCounts:
    """Counts of skipped samples by reason, with a few example paths (a mixin).

    The class using it holds ``num_scanned``, ``num_bad``, ``bad_by_reason`` and ``examples``
    (a dataclass declares them as fields, so that they serialise with it).

    Example:
        >>> report = RasterSkipReport("data/rasters", num_scanned=4)
        >>> report.add_bad("truncated file", "data/rasters/b.tif")
        >>> report.bad_fraction, report.worst_reason()
        (0.25, 'truncated file (1), e.g. data/rasters/b.tif')
    """

    num_scanned: int
    num_bad: int
    bad_by_reason: dict[str, int]
    examples: dict[str, list[str]]

    @property
    def bad_fraction(self) -> float:
        """Fraction of the scanned samples that were skipped (0 when nothing was scanned)."""
        return self.num_bad / self.num_scanned if self.num_scanned else 0.0

    def add_bad(self, reason: str, path: str, count: int = 1) -> None:
        """Count ``count`` bad samples of ``reason`` (keeping ``path`` as an example)."""
        self.num_bad += count
        self.bad_by_reason[reason] = self.bad_by_reason.get(reason, 0) + count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES and path not in examples:
            examples.append(path)

    def merge_bad(self, other: SkipCounts) -> None:
        """Add the bad samples of ``other`` (their counts and examples) to these."""
        for reason, count in other.bad_by_reason.items():
            self.num_bad += count
            self.bad_by_reason[reason] = self.bad_by_reason.get(reason, 0) + count
            kept = self.examples.setdefault(reason, [])
            for path in other.examples.get(reason, []):
                if len(kept) < MAX_EXAMPLES and path not in kept:
                    kept.append(path)

    def worst_reason(self) -> str:
        """``"reason (count), e.g. path"`` for the most frequent bad reason, ``""`` when none."""
        if not self.bad_by_reason:
            return ""
        reason, count = max(self.bad_by_reason.items(), key=lambda item: (item[1], item[0]))
        example = self.examples.get(reason) or [""]
        return f"{reason} ({count}), e.g. {example[0]}"

    def reason_lines(self) -> list[str]:
        """One plain-text line per bad reason, the most frequent first."""
        lines = []
        for reason, count in sorted(self.bad_by_reason.items(), key=lambda item: -item[1]):
            examples = ", ".join(self.examples.get(reason, []))
            lines.append(f"  {reason}: {count:,} (e.g. {examples})")
        return lines


@dataclass
class RasterSkipReport(SkipCounts):
    """The files of a raster stack skipped as unreadable (found in ``setup`` or while reading).

    Attributes:
        root: the searched paths, joined.
        num_scanned: files indexed.
        num_bad: files skipped.
        bad_by_reason: skipped files per reason (``"truncated file"``, ``"unreadable tiles"``).
        examples: up to 3 example paths per reason.

    Example:
        >>> report = RasterSkipReport("data/rasters", num_scanned=10)
        >>> report.add_bad("unreadable tiles", "data/rasters/a.tif")
        >>> report.summary_lines()[0]
        'rasters data/rasters: 1 of 10 files skipped'
    """

    root: str
    num_scanned: int = 0
    num_bad: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """The plain-text summary: one line of totals, then one line per bad reason."""
        head = f"rasters {self.root}: {self.num_bad:,} of {self.num_scanned:,} files skipped"
        return [head, *self.reason_lines()]


def print_skip_summary(
    lines: Sequence[str], counts: SkipCounts, progress: bool, hint: str = ""
) -> None:
    """Print (``progress``) or log a summary: its first line, the skipped samples, a hint.

    With ``progress`` the skipped samples are a rich table on stderr whose example paths fold onto
    the next line instead of being cut; otherwise each line is logged and the most frequent problem
    is a warning.

    Args:
        lines: the summary (``summary_lines()``): totals first, then one line per reason.
        counts: the skipped samples.
        progress: print to stderr, else log.
        hint: a last line shown when samples were skipped (e.g. how to re-scan them).

    Example:
        >>> report = RasterSkipReport("data/rasters", num_scanned=2)
        >>> print_skip_summary(report.summary_lines(), report, progress=False)
    """
    hint_lines = [hint] if hint and counts.num_bad else []
    if not progress:
        for line in [*lines, *hint_lines]:
            logger.info(line)
        if counts.num_bad:
            logger.warning("%s; most common problem: %s", lines[0], counts.worst_reason())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, soft_wrap=True)
    console.print(lines[0], highlight=False)
    if counts.bad_by_reason:
        bad = Table(title="skipped samples", title_justify="left")
        bad.add_column("reason", no_wrap=True)
        bad.add_column("count", justify="right", no_wrap=True)
        bad.add_column("examples", overflow="fold")  # a cut path cannot be found on disk
        for reason, count in sorted(counts.bad_by_reason.items(), key=lambda item: -item[1]):
            bad.add_row(reason, f"{count:,}", "\n".join(counts.examples.get(reason, [])))
        console.print(bad, soft_wrap=False)
    for line in hint_lines:
        console.print(line, highlight=False)


def check_bad_fraction(where: str, counts: SkipCounts, max_bad_fraction: float, what: str) -> None:
    """Raise when more than ``max_bad_fraction`` of the scanned ``what`` is bad.

    Args:
        where: the dataset root (or paths) named by the error.
        counts: the skipped samples.
        max_bad_fraction: the largest bad share tolerated.
        what: the samples' name in the message (``"fMoW samples"``, ``"raster files"``).

    Raises:
        BadDatasetError: one line naming ``where``, the share and the most common problem.

    Example:
        >>> report = RasterSkipReport("data/rasters", num_scanned=2)
        >>> report.add_bad("truncated file", "data/rasters/a.tif", count=2)
        >>> check_bad_fraction("data/rasters", report, 0.5, "raster files")
        Traceback (most recent call last):
        ...
        geossl.datasets.errors.BadDatasetError: data/rasters: 2 of 2 raster files are bad (100% > max_bad_fraction=0.5); most common problem: truncated file (2), e.g. data/rasters/a.tif
    """  # noqa: E501
    if counts.bad_fraction > max_bad_fraction:
        raise BadDatasetError(
            where,
            f"{counts.num_bad} of {counts.num_scanned} {what} are bad "
            f"({100 * counts.bad_fraction:.0f}% > max_bad_fraction={max_bad_fraction}); "
            f"most common problem: {counts.worst_reason()}",
        )


def blank_images(images: Tensor) -> Tensor:
    """Which images are one flat colour (every pixel equal in every band), vectorised.

    Args:
        images: ``[N, C, H, W]``, any dtype.

    Returns:
        bool ``[N]``.

    Example:
        >>> images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
        >>> images[1, 0, 0, 0] = 9
        >>> blank_images(images).tolist()
        [True, False]
    """
    if images.numel() == 0:
        return torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    # One min/max reduction per band (a comparison with the first pixel would allocate a mask as
    # big as the batch).
    low, high = torch.aminmax(images.flatten(2), dim=2)  # [N, C] each
    return (low == high).all(dim=1)


class LoadFailures:
    """Samples that failed while training: warned, counted by reason, capped per process.

    The limit applies per process (each DataLoader worker has its own copy), as fMoW's loaders
    always did; the counts of ``reasons`` are also kept in a small shared-memory tensor that the
    workers inherit, so that [`summary`][geossl.datasets.skips.LoadFailures.summary] in the main
    process tells the whole run.

    Args:
        root: the dataset root named by the error.
        max_failures: failures tolerated per process before giving up.
        what: what failed, for the messages (``"images"``, ``"raster reads"``).
        reasons: the reasons counted across processes.

    Example:
        >>> failures = LoadFailures("data/fmow", max_failures=1, reasons=(BLANK_IMAGE,))
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     failures.record("data/fmow/a.jpg", BLANK_IMAGE, "all pixels 0")
        >>> failures.count, failures.by_reason
        (1, {'blank image': 1})
        >>> failures.summary()
        'data/fmow: 1 images failed and were replaced (each warned, naming its file): blank image: 1 (e.g. data/fmow/a.jpg)'
    """  # noqa: E501

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_failures: int,
        what: str = "images",
        reasons: Sequence[str] = (),
    ) -> None:
        if max_failures < 0:
            raise ValueError(f"max_load_failures must be non-negative, got {max_failures}")
        self.root = os.fspath(root)
        self.max_failures = max_failures
        self.what = what
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.reasons = tuple(reasons)
        shared = torch.zeros(len(self.reasons), dtype=torch.int64)
        self._shared = shared.share_memory_()  # type: ignore[no-untyped-call]

    def summary(self) -> str:
        """One line: the run's failures by reason (all processes), ``""`` when there were none.

        An example file is named for the failures seen in this process; the workers warned of
        theirs.
        """
        totals = {r: int(c) for r, c in zip(self.reasons, self._shared.tolist(), strict=True) if c}
        totals.update({r: c for r, c in self.by_reason.items() if r not in self.reasons})
        if not totals:
            return ""
        parts = [
            f"{reason}: {count:,}"
            + (f" (e.g. {self.examples[reason][0]})" if self.examples.get(reason) else "")
            for reason, count in sorted(totals.items(), key=lambda item: -item[1])
        ]
        return (
            f"{self.root}: {sum(totals.values()):,} {self.what} failed and were replaced (each "
            f"warned, naming its file): " + "; ".join(parts)
        )

    def record(self, path: str, reason: str, detail: str = "", stacklevel: int = 3) -> None:
        """Count a failure of ``path``, warn naming it, and give up past ``max_failures``.

        Raises:
            BadDatasetError: one line naming the last file, past ``max_failures``.
        """
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if reason in self.reasons:  # seen by the main process's summary (a rare race only)
            self._shared[self.reasons.index(reason)] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES and path not in examples:
            examples.append(path)
        problem = f"{reason} ({detail})" if detail else reason
        warnings.warn(
            f"{path}: {problem}; a replacement is used", RuntimeWarning, stacklevel=stacklevel
        )
        if self.count > self.max_failures:
            raise BadDatasetError(
                self.root,
                f"{self.count} {self.what} failed to load in one process (more than "
                f"max_load_failures={self.max_failures}), last {path}: {problem}",
            )
