"""What an embedding run did: `EmbedReport`, counts and rates for people and scripts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from geossl.embed.chips import ChipBlock

__all__ = ["EmbedReport"]


@dataclass
class EmbedReport:
    """What an embedding run did.

    Attributes:
        outputs: the embedding files written (one GeoParquet, or one GeoTIFF per raster).
        previews: the preview files written (PNG and GeoTIFF per raster or fMoW folder).
        num_sources: rasters and fMoW folders embedded.
        num_chips: chips of the grids (fMoW: images) considered.
        num_embedded: chips embedded (rows of the GeoParquet, valid pixels of the GeoTIFFs).
        num_skipped_nodata: chips skipped because more than ``max_nodata`` of them was nodata.
        skipped_invalid: fMoW images skipped, by reason (bad JSON, no footprint, unreadable...).
        embedding_dim: size D of the embeddings.
        seconds: wall-clock time of the embedding pass (reading, model, writing).
        total_seconds: wall-clock time of the whole run (checks, PCA, previews included).
        output_bytes: total size of ``outputs``.
        units: dataset runs: the work units of this shard.
        units_done_before: dataset runs: those of them an earlier run had finished (skipped).
        dataset: the GeoParquet dataset folder of a dataset run (``outputs`` are its new parts).

    Example:
        >>> report = EmbedReport(num_sources=1, num_chips=4, num_embedded=3, seconds=0.5)
        >>> report.num_skipped_nodata = 1
        >>> report.chips_per_s
        6.0
    """

    outputs: list[Path] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    num_sources: int = 0
    num_chips: int = 0
    num_embedded: int = 0
    num_skipped_nodata: int = 0
    skipped_invalid: dict[str, int] = field(default_factory=dict)
    embedding_dim: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    output_bytes: int = 0
    units: int = 0
    units_done_before: int = 0
    dataset: Path | None = None

    def add_block(self, block: ChipBlock) -> None:
        """Count the chips of an embedded block."""
        invalid = sum(block.invalid.values())
        self.num_chips += block.num_considered
        self.num_embedded += block.num_kept
        self.num_skipped_nodata += block.num_considered - block.num_kept - invalid
        for reason, count in block.invalid.items():
            self.skipped_invalid[reason] = self.skipped_invalid.get(reason, 0) + count

    @property
    def chips_per_s(self) -> float:
        """Chips embedded per second of the embedding pass."""
        return self.num_embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One paragraph for people: counts, rate, where the files are."""
        skipped = f"{self.num_skipped_nodata:,} skipped (mostly nodata)"
        invalid = sum(self.skipped_invalid.values())
        if invalid:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped_invalid.items()))
            skipped += f", {invalid:,} invalid fMoW images ({reasons})"
        where = str(self.outputs[0]) if len(self.outputs) == 1 else f"{len(self.outputs)} files"
        if len(self.outputs) > 1:
            where += f" in {self.outputs[0].parent}"
        if self.dataset is not None:
            where = f"{len(self.outputs):,} new part(s) in the dataset {self.dataset}"
        lines = [
            f"embedded {self.num_embedded:,} of {self.num_chips:,} chips from "
            f"{self.num_sources:,} source(s) ({skipped}) in {self.seconds:.1f} s: "
            f"{self.chips_per_s:,.1f} chips/s",
            f"wrote {where} ({_human_bytes(self.output_bytes)}, D={self.embedding_dim})",
        ]
        if self.units:
            lines.append(
                f"work units: {self.units:,} in this shard, {self.units_done_before:,} of them "
                "finished before (skipped)"
            )
        if self.previews:
            lines.append(f"previews: {self.previews[0].parent}")
        return "\n".join(lines)


def _human_bytes(size: int) -> str:
    """``size`` in B, kB, MB or GB (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size) // 3), 3)
    return f"{size / 1000**exponent:,.1f} {('B', 'kB', 'MB', 'GB')[exponent]}"
