"""Work units, shards, part names and the finished-part scan of a GeoParquet dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from geossl.embed import find_sources
from geossl.embed.dataset import (
    MANIFEST_FOLDER,
    Shard,
    append_manifest,
    finished_parts,
    is_dataset_output,
    part_name,
    run_fingerprint,
    work_units,
)
from geossl.embed.writers import GeoParquetWriter
from tests.embed.embed_helpers import write_raster


def test_shard_parse_and_round_robin() -> None:
    assert Shard.parse("2/5") == Shard(2, 5)
    owned = [[u for u in range(10) if Shard(i, 3).owns(u)] for i in range(3)]
    assert sorted(u for units in owned for u in units) == list(range(10))  # a partition
    assert [len(units) for units in owned] == [4, 3, 3]  # balanced
    for text, message in (("3/3", "needs 0 <= I < N"), ("1", "takes I/N"), ("a/b", "takes I/N")):
        with pytest.raises(ValueError, match=message):
            Shard.parse(text)


def test_shard_from_job_arrays_and_torchrun() -> None:
    # SLURM arrays may start at 1 (--array=1-8): the index counts from SLURM_ARRAY_TASK_MIN.
    slurm = {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert Shard.from_environment(slurm) == Shard(7, 8)
    assert Shard.from_environment({"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert Shard.from_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert Shard.from_environment({}) is None
    # SLURM wins: a job array of torchrun jobs shards by array task.
    assert Shard.from_environment({**slurm, "RANK": "1", "WORLD_SIZE": "2"}) == Shard(7, 8)


def test_work_units_cover_every_chip_row_once(tmp_path: Path) -> None:
    a = write_raster(tmp_path / "a.tif", np.zeros((3, 80, 40), np.uint8))  # 10 x 5 chips of 8
    b = write_raster(tmp_path / "b.tif", np.zeros((3, 16, 16), np.uint8))  # 2 x 2
    sources = find_sources([a, b], in_chans=3, chip_size=8, stride=8)
    units = work_units(sources, unit_chips=12)  # 12 chips: 2 rows of 5 for a, 2 rows of 2... for b
    assert [(u.source, u.start, u.stop) for u in units] == [
        (0, 0, 2), (0, 2, 4), (0, 4, 6), (0, 6, 8), (0, 8, 10), (1, 0, 2),
    ]  # fmt: skip
    assert [u.position for u in units] == list(range(6))
    assert len({u.key for u in units}) == 6
    assert len({part_name(u, sources, Shard(0, 1)) for u in units}) == 6
    assert part_name(units[1], sources, Shard(1, 4)).startswith("a-r000002-")
    assert part_name(units[1], sources, Shard(1, 4)).endswith(".s0001of0004.parquet")
    # The fingerprint follows the file: another modification time is another fingerprint.
    before = units[0].fingerprint
    os.utime(a, ns=(1, 1))
    assert work_units(sources, unit_chips=12)[0].fingerprint != before
    assert work_units(sources, unit_chips=12)[5].fingerprint == units[5].fingerprint


def test_run_fingerprint_ignores_time_and_device_only() -> None:
    meta = {"model": {"sha256": "ab"}, "chip_size": 224, "created": "t1", "precision": "bf16"}
    same = {**meta, "created": "t2", "precision": "fp32"}
    assert run_fingerprint(meta) == run_fingerprint(same)
    assert run_fingerprint(meta) != run_fingerprint({**meta, "chip_size": 256})
    assert run_fingerprint(meta) != run_fingerprint({**meta, "model": {"sha256": "cd"}})


def test_is_dataset_output(tmp_path: Path) -> None:
    assert is_dataset_output(tmp_path / "embeddings", "geoparquet")
    assert not is_dataset_output(tmp_path / "embeddings.parquet", "geoparquet")
    assert not is_dataset_output(tmp_path / "grids", "geotiff")


def _part(path: Path, key: str, run: str) -> None:
    meta = {"run_fingerprint": run, "unit": {"key": key, "fingerprint": "f" + key}}
    GeoParquetWriter(path, 2, meta).close()


def test_finished_parts_reads_manifests_and_unlisted_footers(tmp_path: Path) -> None:
    _part(tmp_path / "listed.parquet", "k1", "run")
    _part(tmp_path / "renamed-before-the-kill.parquet", "k2", "run")  # no manifest line
    entry = {"part": "listed.parquet", "key": "k1", "fingerprint": "fk1", "run_fingerprint": "run"}
    append_manifest(tmp_path, Shard(0, 2), entry)
    gone = {**entry, "part": "deleted.parquet", "key": "k3"}
    append_manifest(tmp_path, Shard(1, 2), gone)  # its part no longer exists
    manifest = tmp_path / MANIFEST_FOLDER / "units-s0001of0002.jsonl"
    with manifest.open("a") as handle:
        handle.write('{"part": "cut by a ki')  # a line cut by kill -9
    (tmp_path / "not-a-part.parquet").write_bytes(b"PAR1 garbage")
    done = finished_parts(tmp_path)
    assert sorted(done.units) == ["k1", "k2"]
    assert done.units["k2"] == (tmp_path / "renamed-before-the-kill.parquet", "fk2", "run")
    assert json.loads(manifest.read_text().splitlines()[0])["key"] == "k3"
    assert finished_parts(tmp_path / "missing").units == {}
