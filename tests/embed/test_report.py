"""What a run reports: counts per block, the rate, the summary for people."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geossl.embed.chips import ChipBlock
from geossl.embed.report import EmbedReport, _human_bytes


def _block(kept: int, considered: int, invalid: dict[str, int]) -> ChipBlock:
    return ChipBlock(
        source=0,
        pixels=np.zeros((kept, 3, 4, 4), np.float32),
        rows=np.zeros(kept, np.int64),
        cols=np.zeros(kept, np.int64),
        windows=np.zeros((kept, 4), np.int64),
        nodata_fraction=np.zeros(kept, np.float32),
        num_considered=considered,
        invalid=invalid,
    )


def test_blocks_are_counted() -> None:
    report = EmbedReport(num_sources=1, embedding_dim=8, seconds=2.0)
    report.add_block(_block(3, 5, {}))
    report.add_block(_block(1, 4, {"no footprint": 2}))
    assert (report.num_chips, report.num_embedded, report.num_skipped_nodata) == (9, 4, 3)
    assert report.skipped_invalid == {"no footprint": 2}
    assert report.chips_per_s == 2.0
    assert EmbedReport().chips_per_s == 0.0


def test_summary(tmp_path: Path) -> None:
    report = EmbedReport(
        outputs=[tmp_path / "a.tif", tmp_path / "b.tif"],
        num_sources=2,
        num_chips=10,
        num_embedded=8,
        num_skipped_nodata=1,
        skipped_invalid={"invalid json": 1},
        embedding_dim=3,
        seconds=4.0,
        output_bytes=2_500,
    )
    lines = report.summary().splitlines()
    assert lines[0] == (
        "embedded 8 of 10 chips from 2 source(s) (1 skipped (mostly nodata), 1 invalid fMoW "
        "images (invalid json 1)) in 4.0 s: 2.0 chips/s"
    )
    assert lines[1] == f"wrote 2 files in {tmp_path} (2.5 kB, D=3)"


def test_human_bytes() -> None:
    assert _human_bytes(999) == "999 B"
    assert _human_bytes(1_500_000) == "1.5 MB"
    assert _human_bytes(7 * 10**12) == "7,000.0 GB"
