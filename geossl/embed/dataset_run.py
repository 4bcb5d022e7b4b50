"""Embed into a GeoParquet dataset: this shard's unfinished work units, one part each.

The layout, the units, the shards and the fingerprints are described in
[`geossl.embed.dataset`][geossl.embed.dataset]; this module runs them with the same reader threads,
model batching and row writer as a one-file run ([`geossl.embed.pipeline`][geossl.embed.pipeline]).
Blocks of consecutive units flow through one read-ahead queue and one batching loop, so the
model never waits at a part boundary; a part is renamed to its final name and its manifest line
appended only once all its rows are written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from geossl.embed.chips import ChipBlock
from geossl.embed.dataset import (
    MANIFEST_FOLDER,
    WHOLE,
    Shard,
    WorkUnit,
    append_manifest,
    fingerprint_differences,
    finished_parts,
    part_name,
    run_fingerprint,
    work_units,
)
from geossl.embed.plan import EmbedOptions, OutputPlan, _source_files
from geossl.embed.preview import (
    PCAAccumulator,
    _batch_embeddings,
    _row_batches,
    _scores_from_rows,
    _write_previews,
)
from geossl.embed.reading import _prefetch, _ReadSpec, _source_tasks
from geossl.embed.report import EmbedReport
from geossl.embed.runner import _embed_blocks, _Model
from geossl.embed.sink import _Sink
from geossl.embed.sources import RasterSource, Source
from geossl.utils.io import atomic_write_bytes

__all__ = ["check_dataset_output", "embed_dataset"]

#: The run description in the dataset folder.
_RUN_FILE = "run.json"

#: The previews of an unsharded run, inside the dataset (ignored by Parquet readers).
PREVIEW_FOLDER = "_preview"


def check_dataset_output(folder: Path, sources: Sequence[Source], options: EmbedOptions) -> None:
    """Refuse a dataset output that is a file, an input, or a folder of something else.

    Args:
        folder: the ``--output`` folder.
        sources: the run's sources.
        options: the run's options.

    Raises:
        FileExistsError: the folder is a file, or holds files that are not a dataset's.
        ValueError: the folder is an input, or ``max_chips`` is set (it has no meaning per unit).
    """
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(
            f"{folder} is a file; a GeoParquet dataset is a folder (name a .parquet file for one "
            "file)"
        )
    if options.max_chips is not None:
        raise ValueError("max_chips does not apply to a GeoParquet dataset output")
    inputs = _source_files(sources)
    resolved = folder.resolve()
    inside = next((p for r, p in inputs.items() if resolved in (r, *r.parents)), None)
    if inside is not None:
        raise ValueError(
            f"--output {folder}: the input {inside} is inside it; write the embeddings elsewhere"
        )
    if folder.is_dir():  # even with --overwrite: it replaces a dataset, not a folder
        foreign = [p for p in folder.iterdir() if p.name[0] not in "._" and p.suffix != ".parquet"]
        if foreign:
            raise FileExistsError(
                f"{folder} holds other files ({foreign[0].name}, ...); a GeoParquet dataset "
                "needs its own folder"
            )


@dataclass(slots=True)
class _DatasetRun:
    """One shard's run into a dataset folder."""

    folder: Path
    sources: Sequence[Source]
    options: EmbedOptions
    metadata: dict[str, Any]
    report: EmbedReport
    shard: Shard = WHOLE
    fingerprint: str = ""
    written: list[Path] = field(default_factory=list)


def embed_dataset(
    folder: Path,
    sources: Sequence[Source],
    options: EmbedOptions,
    metadata: dict[str, Any],
    report: EmbedReport,
    runner: _Model,
    spec: _ReadSpec,
) -> None:
    """Embed this shard's unfinished units into ``folder`` (see the module docstring).

    Args:
        folder: the dataset folder (made if missing).
        sources: the run's sources.
        options: the run's options (``shard``, ``overwrite``, ``preview``, batching...).
        metadata: the run's metadata (written into every part's footer and ``run.json``).
        report: filled with the counts, the parts written and the previews.
        runner: the model.
        spec: what the reader threads need.

    Raises:
        FileExistsError: the folder holds another run's parts and ``overwrite`` is False.
    """
    metadata = {**metadata, "unit_chips": options.unit_chips}
    run = _DatasetRun(folder, sources, options, metadata, report, options.shard or WHOLE)
    run.fingerprint = run_fingerprint(metadata)
    folder.mkdir(parents=True, exist_ok=True)
    _claim_folder(run)
    for temporary in folder.glob(f".*.{run.shard.label}.parquet.*"):  # left by a killed run
        temporary.unlink(missing_ok=True)
    todo = _units_to_do(run)
    _embed_units(run, todo, runner, spec)
    report.outputs, report.dataset = run.written, folder
    report.output_bytes = sum(p.stat().st_size for p in run.written)
    if run.shard.count == 1 and options.preview:
        _write_dataset_previews(run)


def _claim_folder(run: _DatasetRun) -> None:
    """Write ``run.json``, or check that the one there describes the same embeddings."""
    path = run.folder / MANIFEST_FOLDER / _RUN_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if saved.get("run_fingerprint") == run.fingerprint:
            return
        if not run.options.overwrite:
            changed = fingerprint_differences(saved.get("metadata") or {}, run.metadata)
            raise FileExistsError(
                f"{run.folder} holds embeddings made with other settings ({changed}); pass "
                "--overwrite to replace them, or write elsewhere"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    description = {"run_fingerprint": run.fingerprint, "metadata": run.metadata}
    atomic_write_bytes(path, json.dumps(description, indent=2).encode())


def _units_to_do(run: _DatasetRun) -> list[WorkUnit]:
    """This shard's units that have no up-to-date part; stale parts are deleted."""
    done = finished_parts(run.folder)
    for key, (path, _, other_run) in list(done.units.items()):
        if other_run != run.fingerprint:
            if not run.options.overwrite:
                raise FileExistsError(
                    f"{path}: a part made with other settings than {run.folder}/"
                    f"{MANIFEST_FOLDER}/{_RUN_FILE} says; pass --overwrite to replace it"
                )
            path.unlink(missing_ok=True)  # --overwrite: another run's rows go
            del done.units[key]
    units = work_units(run.sources, run.options.unit_chips)
    mine = [u for u in units if run.shard.owns(u.position)]
    todo = []
    for unit in mine:
        found = done.units.get(unit.key)
        if found is not None and found[1] == unit.fingerprint:
            continue
        if found is not None:  # the input changed since: its rows are redone
            found[0].unlink(missing_ok=True)
        todo.append(unit)
    run.report.units = len(mine)
    run.report.units_done_before = len(mine) - len(todo)
    return todo


def _tagged(task: Callable[[], ChipBlock], unit: int) -> ChipBlock:
    block = task()
    block.unit = unit
    return block


def _unit_tasks(
    units: Sequence[WorkUnit], sources: Sequence[Source], spec: _ReadSpec
) -> Iterator[Callable[[], ChipBlock]]:
    """The block reads of ``units``, in order, each block tagged with its unit."""
    for unit in units:
        reads = _source_tasks(unit.source, sources[unit.source], spec, unit.start, unit.stop)
        yield from (partial(_tagged, read, unit.position) for _, read in reads)


def _unit_items(unit: WorkUnit, sources: Sequence[Source]) -> int:
    source = sources[unit.source]
    if isinstance(source, RasterSource):
        return (unit.stop - unit.start) * source.grid.n_cols
    return unit.stop - unit.start


class _Part:
    """One unit's part: written under a hidden name, renamed and listed when complete."""

    def __init__(self, run: _DatasetRun, unit: WorkUnit, dim: int) -> None:
        self.run, self.unit = run, unit
        self.path = run.folder / part_name(unit, run.sources, run.shard)
        self.temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        metadata = {
            **run.metadata,
            "run_fingerprint": run.fingerprint,
            "shard": f"{run.shard.index}/{run.shard.count}",
            "unit": {"key": unit.key, "fingerprint": unit.fingerprint},
        }
        self.sink = _Sink(run.sources, [], dim, metadata, rows=self.temporary, compress=True)
        self.rows = 0

    def write(self, block: ChipBlock) -> None:
        self.sink.write(block)
        self.rows += block.num_kept

    def finish(self) -> None:
        self.sink.close()
        os.replace(self.temporary, self.path)
        entry = {
            "part": self.path.name,
            "key": self.unit.key,
            "fingerprint": self.unit.fingerprint,
            "run_fingerprint": self.run.fingerprint,
            "rows": self.rows,
        }
        append_manifest(self.run.folder, self.run.shard, entry)
        self.run.written.append(self.path)

    def abort(self) -> None:
        self.sink.abort()
        self.temporary.unlink(missing_ok=True)


def _embed_units(
    run: _DatasetRun, todo: Sequence[WorkUnit], runner: _Model, spec: _ReadSpec
) -> None:
    """Read, embed and write ``todo``, one part per unit."""
    options, report = run.options, run.report
    by_position = {unit.position: unit for unit in todo}
    part: _Part | None = None
    start = time.perf_counter()
    with ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(
                total=sum(_unit_items(u, run.sources) for u in todo),
                desc=f"Embedding (shard {run.shard.index}/{run.shard.count})",
                unit="chip",
                disable=not options.progress,
                dynamic_ncols=True,
            )
        )
        tasks = _unit_tasks(todo, run.sources, spec)
        blocks = stack.enter_context(
            closing(_prefetch(tasks, options.workers, 2 * options.workers + 2))
        )
        try:
            for block in _embed_blocks(blocks, runner, options.batch_size, report.embedding_dim):
                if part is None or block.unit != part.unit.position:
                    if part is not None:
                        part.finish()
                    part = _Part(run, by_position[block.unit], report.embedding_dim)
                report.add_block(block)
                part.write(block)
                bar.update(block.num_considered)
            if part is not None:
                part.finish()
                part = None
        except BaseException:
            if part is not None:
                part.abort()
            raise
    report.seconds = time.perf_counter() - start


def _write_dataset_previews(run: _DatasetRun) -> None:
    """PCA previews of the whole dataset (unsharded runs), when new rows or no previews."""
    folder = run.folder / PREVIEW_FOLDER
    plan = OutputPlan(
        [], [(folder / f"{s.name}.png", folder / f"{s.name}.tif") for s in run.sources]
    )
    files = [p for pair in plan.previews for p in pair]
    if not run.written and all(p.exists() for p in files):
        run.report.previews = files
        return
    accumulator = PCAAccumulator()
    for batch in _row_batches(run.folder, "geoparquet"):
        accumulator.update(_batch_embeddings(batch.column(5), len(batch)))
    fitted = accumulator.fit(3)
    if fitted is None:
        return
    scores = _scores_from_rows(run.folder, run.sources, fitted)
    with ExitStack() as stack:
        run.report.previews = _write_previews(
            stack, run.sources, plan, scores, fitted, run.metadata
        )
