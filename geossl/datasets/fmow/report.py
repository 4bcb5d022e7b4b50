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

__all__ = ["FMoWIndexReport"]

logger = logging.getLogger(__name__)


_MAX_EXAMPLES = 3


@dataclass
class FMoWIndexReport:
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

    @property
    def bad_fraction(self) -> float:
        """Fraction of the scanned samples that were skipped (0 when nothing was scanned)."""
        return self.num_bad / self.num_scanned if self.num_scanned else 0.0

    def add_bad(self, reason: str, path: str, count: int = 1) -> None:
        """Count ``count`` bad samples of ``reason`` (keeping ``path`` as an example)."""
        self.num_bad += count
        self.bad_by_reason[reason] = self.bad_by_reason.get(reason, 0) + count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(path)

    def merge(self, other: FMoWIndexReport) -> None:
        """Add the counts of ``other`` (a scan chunk) to this report."""
        self.num_scanned += other.num_scanned
        self.num_json_read += other.num_json_read
        self.num_images_checked += other.num_images_checked
        for reason, count in other.bad_by_reason.items():
            examples = other.examples.get(reason, [])
            self.add_bad(reason, examples[0] if examples else "", count)
            kept = self.examples[reason]
            for path in examples[1:]:
                if len(kept) < _MAX_EXAMPLES:
                    kept.append(path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FMoWIndexReport:
        """The inverse of [`to_dict`][geossl.datasets.fmow.report.FMoWIndexReport.to_dict]."""
        return cls(**data)

    def worst_reason(self) -> str:
        """``"reason (count), e.g. path"`` for the most frequent bad reason, ``""`` when none."""
        if not self.bad_by_reason:
            return ""
        reason, count = max(self.bad_by_reason.items(), key=lambda item: (item[1], item[0]))
        example = self.examples.get(reason) or [""]
        return f"{reason} ({count}), e.g. {example[0]}"

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
        for reason, count in sorted(self.bad_by_reason.items(), key=lambda item: -item[1]):
            examples = ", ".join(self.examples.get(reason, []))
            lines.append(f"  {reason}: {count:,} (e.g. {examples})")
        return lines


def _print_summary(report: FMoWIndexReport, progress: bool) -> None:
    lines = report.summary_lines()
    if not progress:
        for line in lines:
            logger.info(line)
        if report.num_bad:
            logger.warning(
                "fMoW index of %s: %d of %d samples skipped (%s)",
                report.root,
                report.num_bad,
                report.num_scanned,
                report.worst_reason(),
            )
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        print("\n".join(lines), file=sys.stderr)
        return
    console = Console(stderr=True, soft_wrap=True)
    console.print(lines[0], highlight=False)
    if report.bad_by_reason:
        bad = Table(title="skipped samples", title_justify="left")
        bad.add_column("reason")
        bad.add_column("count", justify="right")
        bad.add_column("examples")
        for reason, count in sorted(report.bad_by_reason.items(), key=lambda item: -item[1]):
            bad.add_row(reason, f"{count:,}", "\n".join(report.examples.get(reason, [])))
        console.print(bad)


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
    if report.bad_fraction > max_bad_fraction:
        raise BadDatasetError(
            report.root,
            f"{report.num_bad} of {report.num_scanned} fMoW samples are bad "
            f"({100 * report.bad_fraction:.0f}% > max_bad_fraction={max_bad_fraction}); "
            f"most common problem: {report.worst_reason()}",
        )
