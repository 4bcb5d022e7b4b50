"""A GeoParquet dataset output: shards, readers, resume after kill -9, refusals, torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from geossl.embed.dataset import MANIFEST_FOLDER, Shard
from tests.embed.embed_helpers import run_embed, write_raster

ROOT = Path(__file__).resolve().parents[2]

#: 12 chips per unit: 3 units of 4 chip rows... see `rasters`.
UNIT = 12


@pytest.fixture
def rasters(tmp_path: Path) -> list[Path]:
    """Two rasters in two UTM zones: 12 x 6 chips (6 units of 2 rows) and 4 x 4 (2 units)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    a = write_raster(folder / "a.tif", rng.integers(1, 255, (3, 96, 48), dtype=np.uint8))
    b = write_raster(
        folder / "b.tif", rng.integers(1, 255, (3, 32, 32), dtype=np.uint8), crs="EPSG:32619"
    )
    return [a, b]


def _rows(path: Path) -> pd.DataFrame:
    frame = gpd.read_parquet(path)
    frame["wkb"] = frame.geometry.to_wkb()
    frame["embedding"] = frame.embedding.map(tuple)
    columns = [c for c in frame.columns if c != "geometry"]
    ordered: pd.DataFrame = frame[columns].sort_values(["source", "row_off", "col_off"])
    return ordered.reset_index(drop=True)


def _parts(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_two_shards_give_the_rows_of_one_run(rasters: list[Path], tmp_path: Path) -> None:
    one = tmp_path / "one.parquet"
    run_embed(rasters, one)
    folder = tmp_path / "dataset"
    reports = [run_embed(rasters, folder, shard=Shard(i, 2), unit_chips=UNIT) for i in range(2)]
    assert [r.units for r in reports] == [4, 4]
    names = sorted(_parts(folder))
    assert len(names) == 8
    assert sum(".s0000of0002." in n for n in names) == 4  # named by shard: no collisions
    assert not list(folder.glob(".*"))  # no temporary left
    pd.testing.assert_frame_equal(_rows(folder), _rows(one))
    # One table for every reader, never concatenated by geossl; the footprints stay CRS84
    # geometry across the two UTM zones.
    frame = gpd.read_parquet(folder)
    assert frame.crs is not None
    assert frame.crs.to_epsg() == 4326
    assert set(frame.source_crs) == {"EPSG:32618", "EPSG:32619"}
    assert ds.dataset(folder, format="parquet").count_rows() == len(frame)
    duckdb = pytest.importorskip("duckdb")
    query = f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')"
    assert duckdb.sql(query).fetchall() == [(len(frame),)]


def test_a_rerun_skips_finished_units(rasters: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    first = run_embed(rasters, folder, unit_chips=UNIT)
    assert (first.units, first.units_done_before) == (8, 0)
    assert first.previews
    assert all(p.parent == folder / "_preview" for p in first.previews)
    before = _parts(folder)
    again = run_embed(rasters, folder, unit_chips=UNIT)
    assert (again.units, again.units_done_before, again.num_embedded) == (8, 8, 0)
    assert again.outputs == []
    assert "8 of them finished before (skipped)" in again.summary()
    assert _parts(folder) == before  # nothing rewritten


def test_a_changed_input_is_redone_alone(rasters: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    run_embed(rasters, folder, unit_chips=UNIT)
    before = _parts(folder)
    write_raster(rasters[1], np.full((3, 32, 32), 7, np.uint8), crs="EPSG:32619")
    again = run_embed(rasters, folder, unit_chips=UNIT)
    assert (again.units_done_before, len(again.outputs)) == (6, 2)
    after = _parts(folder)
    assert sorted(after) == sorted(before)  # the same names, b's parts replaced
    assert {n for n in after if after[n] != before[n]} == {p.name for p in again.outputs}
    rows = _rows(folder)
    b_rows = rows[rows.source == str(rasters[1])]
    assert len(b_rows) == 16
    assert len(set(b_rows.embedding)) == 1  # the new, constant image


def test_other_settings_are_refused_unless_overwrite(rasters: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    run_embed(rasters, folder, unit_chips=UNIT)
    with pytest.raises(FileExistsError, match=r"other settings \(stride 8 -> 4\); pass --overwr"):
        run_embed(rasters, folder, unit_chips=UNIT, stride=4)
    replaced = run_embed(rasters, folder, unit_chips=UNIT, stride=4, overwrite=True)
    assert replaced.units_done_before == 0
    assert len(_rows(folder)) == replaced.num_embedded  # no row of the stride-8 run is left


def test_dataset_refusals(rasters: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--shard writes a GeoParquet dataset"):
        run_embed(rasters, tmp_path / "one.parquet", shard=Shard(0, 2))
    with pytest.raises(ValueError, match="is inside it; write the embeddings elsewhere"):
        run_embed(rasters, rasters[0].parent, fmt="geoparquet")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files \(todo.txt"):
        run_embed(rasters, tmp_path / "notes")


#: Embeds `rasters` into `folder` with a model that kills its own process (SIGKILL, no clean-up
#: of any kind) at its 7th batch: the 5th unit of 8 is being written.
_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from tests.embed.embed_helpers import BandMean, run_embed

class Killer(BandMean):
    calls = 0
    def forward(self, x):
        Killer.calls += 1
        if Killer.calls == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)

*rasters, folder = map(Path, sys.argv[1:])
run_embed(rasters, folder, unit_chips={unit}, model=Killer(), batch_size=6, workers=1)
"""


def test_a_killed_run_resumes(rasters: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    script = textwrap.dedent(_KILLED_RUN.format(unit=UNIT))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    killed = subprocess.run(
        [sys.executable, "-c", script, *map(str, rasters), str(folder)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    finished = _parts(folder)
    assert 0 < len(finished) < 8
    for name in finished:  # every file under a final name is a complete part
        assert len(gpd.read_parquet(folder / name)) in (12, 0, 16, 8)
    assert list(folder.glob(".*.tmp"))  # the part being written when killed, hidden
    resumed = run_embed(rasters, folder, unit_chips=UNIT)
    assert resumed.units_done_before == len(finished)
    assert not list(folder.glob(".*.tmp"))  # the killed run's temporary is cleaned up
    one = tmp_path / "one.parquet"
    run_embed(rasters, one)
    pd.testing.assert_frame_equal(_rows(folder), _rows(one))
    lines = (folder / MANIFEST_FOLDER / "units-s0000of0001.jsonl").read_text().splitlines()
    assert len(lines) == 8


def test_two_torchrun_processes_give_the_rows_of_one_run(
    rasters: list[Path], tmp_path: Path
) -> None:
    # torchrun sets RANK / WORLD_SIZE: each process takes its shard without --shard.
    folder = tmp_path / "dataset"
    weights = tmp_path / "test_resnet.pth"
    timm = pytest.importorskip("timm")
    import torch

    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_port", "0", "-m", "geossl", "embed", "--weights", str(weights)),
        *("--backbone", "test_resnet", "--chip-size", "16", "--device", "cpu", "--workers", "0"),
        *(*map(str, rasters), "--output", str(folder)),
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(_parts(folder))
    assert {n.rsplit(".", 2)[1] for n in names} == {"s0000of0002", "s0001of0002"}
    from geossl.cli import main

    one = tmp_path / "one.parquet"
    main(
        [
            *("embed", "--weights", str(weights), "--backbone", "test_resnet"),
            *("--chip-size", "16", "--device", "cpu", "--workers", "0", "--no-preview"),
            *(*map(str, rasters), "--output", str(one)),
        ]
    )
    sharded, whole = _rows(folder), _rows(one)
    assert len(sharded) == len(whole) == 18 + 4
    pd.testing.assert_frame_equal(
        sharded.drop(columns="embedding"), whole.drop(columns="embedding")
    )
    assert np.allclose(
        np.stack(list(sharded.embedding)), np.stack(list(whole.embedding)), atol=1e-5
    )
