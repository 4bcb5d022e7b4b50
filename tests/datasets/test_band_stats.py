"""Band statistics: the pooled estimator against numpy, the nodata rule, the cache."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.datasets.band_stats import (
    BandMoments,
    BandStatistics,
    band_stats_key,
    cached_band_statistics,
    files_fingerprint,
    valid_pixels,
)


def test_moments_match_numpy_pooled_over_uneven_blocks() -> None:
    rng = np.random.default_rng(0)
    # Blocks of very different sizes (one empty) around 0.9 with a tiny spread: a sum-of-squares
    # formula would cancel here, the pairwise update must not.
    blocks = [0.9 + 1e-4 * rng.standard_normal((3, n)) for n in (1, 500, 0, 37, 4096)]
    moments = BandMoments(3)
    for block in blocks:
        moments.update(torch.from_numpy(block))
    stats = moments.result()
    pooled = np.concatenate(blocks, axis=1)
    np.testing.assert_allclose(stats.mean, pooled.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, pooled.std(axis=1, ddof=0), rtol=1e-7)
    assert stats.num_pixels == (pooled.shape[1],) * 3
    assert stats.num_samples == len(blocks)


def test_analytic_case() -> None:
    moments = BandMoments(2)
    moments.update(np.array([[0.0, 1.0], [0.25, 0.75]]))
    moments.update(np.array([[0.0, 1.0], [0.75, 0.25]]))
    stats = moments.result()
    assert stats.mean == (0.5, 0.5)
    assert stats.std == (0.5, 0.25)  # population std (ddof=0) of {0, 1, 0, 1}, {.25, .75, ...}


def test_constant_band_warns_and_no_pixel_fails() -> None:
    moments = BandMoments(2)
    moments.update(np.array([[0.2, 0.4], [0.3, 0.3]]))
    with pytest.warns(UserWarning, match=r"band\(s\) \[2\] are constant over 4 patches"):
        std = moments.result("4 patches").std
    assert std[0] == pytest.approx(0.1)
    assert std[1] == 1.0
    empty = BandMoments(2)
    empty.update(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"no valid \(non-nodata\) pixel in x: .*model\.mean"):
        empty.result("x")
    with pytest.raises(ValueError, match=r"expected \[2, N\] pixels, got \[3, 4\]"):
        empty.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="num_bands"):
        BandMoments(0)


def test_valid_pixels_rule() -> None:
    raw = torch.tensor(
        [
            [[0.0, 0.0, 5.0], [0.0, 7.0, float("nan")]],
            [[0.0, 3.0, 0.0], [0.0, 0.0, 1.0]],
        ]
    )  # [C=2, H=2, W=3]
    # Nodata only where every band is 0; a 0 in one band is data; NaN is never data.
    expected = torch.tensor([[False, True, True], [False, True, False]])
    assert torch.equal(valid_pixels(raw, 0.0), expected)
    assert torch.equal(valid_pixels(raw, None), torch.tensor([[True] * 3, [True, True, False]]))
    integers = raw.nan_to_num(0.0).to(torch.int32)  # integer data: no NaN test
    assert int(valid_pixels(integers, 0).sum()) == 4
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        valid_pixels(raw[0], 0.0)


def test_cache_is_read_back_and_keyed(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> BandStatistics:
        calls.append(1)
        return BandStatistics((0.1, 0.2), (0.3, 0.4), (10, 10), 2)

    key = band_stats_key({"files": [["a.tif", 1, 2]], "bands": None})
    path = tmp_path / "cache" / "stats.json"
    first, cached = cached_band_statistics(path, key, compute, {"what": "test"})
    assert (first.mean, cached, len(calls)) == ((0.1, 0.2), False, 1)
    again, cached = cached_band_statistics(path, key, compute)
    assert (again, cached, len(calls)) == (first, True, 1)
    saved = json.loads(path.read_text())
    assert saved["key"] == key
    assert saved["source"] == {"what": "test"}
    # Another key (e.g. another num_samples) recomputes and overwrites.
    other = band_stats_key({"files": [["a.tif", 1, 2]], "bands": [1]})
    assert other != key
    cached_band_statistics(path, other, compute)
    assert len(calls) == 2
    # A corrupt file is recomputed with a warning, never trusted.
    path.write_text("{not json")
    with pytest.warns(UserWarning, match=r"corrupt band statistics cache"):
        cached_band_statistics(path, other, compute)
    assert len(calls) == 3


def test_unwritable_cache_warns_and_still_returns(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the cache folder should be
    stats = BandStatistics((0.5,), (0.2,), (4,), 1)
    with pytest.warns(
        UserWarning, match=r"cannot write the band statistics cache.*data\.cache_dir"
    ):
        got, cached = cached_band_statistics(blocker / "stats.json", "k", lambda: stats)
    assert (got, cached) == (stats, False)


def test_from_dict_rejects_bad_statistics() -> None:
    good = BandStatistics((0.5,), (0.2,), (4,), 1).to_dict()
    assert BandStatistics.from_dict(good).std == (0.2,)
    with pytest.raises(ValueError, match="lengths differ"):
        BandStatistics.from_dict({**good, "std": [0.2, 0.3]})
    with pytest.raises(ValueError, match="std <= 0"):
        BandStatistics.from_dict({**good, "std": [0.0]})
    with pytest.raises(ValueError, match="KeyError"):
        BandStatistics.from_dict({"mean": [0.5]})


def test_fingerprint_follows_the_files(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    path.write_bytes(b"1234")
    before = files_fingerprint([path, str(path)])
    assert before == [[str(path), 4, os.stat(path).st_mtime_ns]]
    os.utime(path, ns=(0, 10**9))
    assert files_fingerprint([path]) != before
