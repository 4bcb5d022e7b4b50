"""What an fMoW index build found: `FMoWIndexReport` and its summary.

Bad samples (missing or malformed JSON, missing, empty or truncated image, degenerate box, no
timestamp or location) are skipped, counted by reason with a few example paths, and summarised at
the end of the build; too many of them raise
[`BadDatasetError`][geossl.datasets.errors.BadDatasetError].
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.skips import SkipCounts, check_bad_fraction, print_skip_summary

__all__ = ["REBUILD_HINT", "FMoWIndexReport"]

logger = logging.getLogger(__name__)

#: The last line of a summary with skipped samples: how to re-scan every file.
REBUILD_HINT = (
    "Files recorded as bad are re-checked at each start when they change; for a full re-scan "
    "pass --data.rebuild_index true (geossl datasets index fmow --rebuild)"
)


@dataclass
class FMoWIndexReport(SkipCounts):
    """What an index build saw.

    Attributes:
        root: the dataset root.
        splits: the splits indexed.
        product: the image product.
        num_scanned: samples considered (image/JSON pairs, plus lone images and lone JSONs).
        num_valid: rows of the index.
        num_bad: samples skipped (``num_scanned - num_valid``).
        bad_by_reason: skipped samples per reason (``"malformed json"``, ``"truncated image"``...).
        examples: up to 3 example paths (relative to the root) per reason.
        num_locations: locations with at least one valid image.
        num_json_read: JSON files opened and parsed.
        num_images_checked: image files opened to check their header and end marker.
        seconds: wall-clock time of the build up to the cache write (scan, checks, clustering).
        workers: scan processes used.
        bad_files: every skipped sample as ``[reason, path, signature]``: the path relative to the
            root and the size and mtime of its JSON and image files
            ([`bad_file_signature`][geossl.datasets.fmow.recheck.bad_file_signature]), so that a
            cached index re-reads only the bad samples whose files changed.
    """

    root: str
    splits: list[str]
    product: str
    num_scanned: int = 0
    num_valid: int = 0
    num_bad: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    num_locations: int = 0
    num_json_read: int = 0
    num_images_checked: int = 0
    seconds: float = 0.0
    workers: int = 1
    bad_files: list[list[Any]] = field(default_factory=list)

    def add_bad(self, reason: str, path: str, count: int = 1) -> None:
        """Count a bad sample, and keep ``[reason, path]`` in `bad_files` for the re-check."""
        super().add_bad(reason, path, count)
        self.bad_files.append([reason, path])

    def merge(self, other: FMoWIndexReport) -> None:
        """Add the counts of ``other`` (a scan chunk) to this report."""
        self.num_scanned += other.num_scanned
        self.num_json_read += other.num_json_read
        self.num_images_checked += other.num_images_checked
        self.merge_bad(other)
        self.bad_files += other.bad_files

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FMoWIndexReport:
        """The inverse of [`to_dict`][geossl.datasets.fmow.report.FMoWIndexReport.to_dict]."""
        return cls(**data)

    def summary_lines(self) -> list[str]:
        """The plain-text summary: one line of totals, then one line per bad reason."""
        files = (
            f"{self.num_images_checked:,} GeoTIFF headers"
            if self.product == "sentinel"
            else f"{self.num_json_read:,} JSON + {self.num_images_checked:,} image files"
        )
        lines = [
            f"fMoW index of {self.root} ({', '.join(self.splits)}, {self.product}): "
            f"{self.num_valid:,} images of {self.num_locations:,} locations; "
            f"{self.num_bad:,} of {self.num_scanned:,} samples skipped; "
            f"{files} read in {self.seconds:.1f} s with {self.workers} worker(s)"
        ]
        return [*lines, *self.reason_lines()]


def _print_summary(report: FMoWIndexReport, progress: bool) -> None:
    print_skip_summary(report.summary_lines(), report, progress, REBUILD_HINT)


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def _check_bad_fraction(report: FMoWIndexReport, max_bad_fraction: float) -> None:
    if report.num_valid == 0:
        what = (
            f"no valid fMoW {report.product} images in {'/'.join(report.splits)}"
            if report.num_scanned
            else f"no fMoW {report.product} images found in {'/'.join(report.splits)}"
        )
        worst = f"; most common problem: {report.worst_reason()}" if report.num_bad else ""
        raise BadDatasetError(report.root, what + worst)
    check_bad_fraction(report.root, report, max_bad_fraction, "fMoW samples")
