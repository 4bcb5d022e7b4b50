"""The skip bookkeeping shared by fMoW and the raster stacks: counts, table, limits, blank check."""

import re
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.skips import (
    BLANK_IMAGE,
    LoadFailures,
    RasterSkipReport,
    blank_images,
    check_bad_fraction,
    print_skip_summary,
)


def test_the_skip_table_shows_full_file_names(capsys: pytest.CaptureFixture[str]) -> None:
    # rich cut the examples column with an ellipsis at the terminal's width (80 when captured).
    long_path = "train/" + "/".join(f"very_long_folder_name_{i}" for i in range(6)) + "/x_rgb.jpg"
    report = RasterSkipReport("root", num_scanned=3)
    report.add_bad("truncated image", long_path)
    report.add_bad("missing json", "train/a/b_rgb.jpg")
    print_skip_summary(report.summary_lines(), report, progress=True, hint="re-scan: --x true")
    err = capsys.readouterr().err
    assert "…" not in err
    # The folded path reads back whole once the table's borders and padding are removed.
    assert long_path in re.sub(r"[\s│┃|]", "", err)
    assert err.rstrip().endswith("re-scan: --x true")


def test_no_hint_without_skips(capsys: pytest.CaptureFixture[str]) -> None:
    report = RasterSkipReport("root", num_scanned=3)
    print_skip_summary(report.summary_lines(), report, progress=True, hint="re-scan")
    assert "re-scan" not in capsys.readouterr().err


def test_too_many_bad_is_one_line() -> None:
    report = RasterSkipReport("stack", num_scanned=4)
    report.add_bad("truncated file", "stack/a.tif", count=3)
    check_bad_fraction("stack", report, 0.75, "raster files")
    with pytest.raises(BadDatasetError) as error:
        check_bad_fraction("stack", report, 0.5, "raster files")
    assert str(error.value) == (
        "stack: 3 of 4 raster files are bad (75% > max_bad_fraction=0.5); most common problem: "
        "truncated file (3), e.g. stack/a.tif"
    )


def test_blank_images_are_one_flat_colour() -> None:
    images = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
    images[1, 2, 7, 7] = 127  # one pixel differs: not blank
    images[2] = 0
    images[3, 1] = 5  # each band constant: a flat colour, blank
    assert blank_images(images).tolist() == [True, False, True, True]
    assert blank_images(torch.zeros(0, 3, 2, 2)).tolist() == []


def test_load_failures_count_by_reason_and_stop() -> None:
    failures = LoadFailures("data", max_failures=1)
    with pytest.warns(RuntimeWarning, match="data/a.jpg: blank image"):
        failures.record("data/a.jpg", BLANK_IMAGE)
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError) as error:
        failures.record("data/b.jpg", "unreadable image", "truncated")
    assert failures.by_reason == {BLANK_IMAGE: 1, "unreadable image": 1}
    assert "\n" not in str(error.value)
    assert "last data/b.jpg: unreadable image (truncated)" in str(error.value)


class _Flaky(Dataset[int]):
    """Every odd item fails (a blank image), counted by the dataset's LoadFailures."""

    def __init__(self) -> None:
        self.failures = LoadFailures("data", max_failures=10, reasons=(BLANK_IMAGE,))

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if index % 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.failures.record(f"data/{index}.jpg", BLANK_IMAGE)
        return index


def test_the_summary_counts_the_failures_of_every_loader_worker() -> None:
    dataset = _Flaky()
    assert list(DataLoader(dataset, batch_size=None, num_workers=2)) == list(range(8))
    assert dataset.failures.count == 0  # the workers counted, not this process
    assert dataset.failures.summary() == (
        "data: 4 images failed and were replaced (each warned, naming its file): blank image: 4"
    )
