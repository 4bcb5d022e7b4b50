"""An embedding run as a GeoParquet dataset: work units, shards, parts and their manifest.

``geossl embed ... --output DIR`` (``--format geoparquet`` and an output without a suffix) writes a
folder that readers open as one table (``geopandas.read_parquet(DIR)``,
``pyarrow.dataset.dataset(DIR)``, DuckDB's ``read_parquet('DIR/*.parquet')``), made of parts that
can be written by many processes and machines at once and resumed after a crash:

- A **work unit** is a band of whole chip rows of one raster (about `UNIT_CHIPS` chips: at least
  one chip row) or up to `UNIT_CHIPS` images of one fMoW folder. Units are listed in input order
  (sources as found, rows top to bottom), each with a stable key (the resolved file and its row
  or image range) and the fingerprint of its input files (size and modification time).
- A **shard** ``I/N`` takes every N-th unit starting at the I-th (round robin: balanced, and the
  same split on every machine given the same inputs). ``--shard`` or, without it,
  ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (job arrays) or ``RANK``/``WORLD_SIZE``
  (torchrun) say which; see [`Shard.from_environment`][geossl.embed.dataset.Shard.from_environment].
- Each unit becomes one **part**, ``{stem}-r{first row}-{key hash}.s{I}of{N}.parquet``, written
  under a hidden temporary name and renamed when complete, so no two processes ever write the same
  file and a killed run leaves no partial file under a final name. A part's footer records its
  unit (key, input fingerprint) and the run fingerprint; the shard's manifest
  ``_geossl/units-s{I}of{N}.jsonl`` gets one line per finished part.
- The **run fingerprint** hashes what makes two runs' rows comparable: the weights' SHA-256, the
  pooling, the normalisation, the chip size, stride, bands, nodata threshold and the embedding
  size (not the device, the precision or the time). ``_geossl/run.json`` holds it; a run with
  other weights or options into the same folder is refused unless ``--overwrite``, which then
  deletes the parts of the other run only.

A rerun skips the units whose part exists with the same run and input fingerprints, redoes units
whose input changed (deleting their old part first) and any unit that had no part yet. Files whose
names start with ``_`` or ``.`` (the manifest, the previews in ``_preview/``, temporary parts) are
ignored by Parquet dataset readers.

Example:
    >>> shard = Shard.parse("1/3")
    >>> tuple(u for u in range(7) if shard.owns(u))
    (1, 4)
    >>> Shard.from_environment({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1",
    ...                         "SLURM_ARRAY_TASK_COUNT": "8"})
    Shard(index=4, count=8)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geossl.embed.sources import RasterSource, Source

__all__ = [
    "MANIFEST_FOLDER",
    "UNIT_CHIPS",
    "DoneParts",
    "Shard",
    "WorkUnit",
    "file_fingerprint",
    "finished_parts",
    "is_dataset_output",
    "part_name",
    "run_fingerprint",
    "source_fingerprint",
    "work_units",
]

#: Chips per work unit (a raster unit is at least one whole chip row): ~8 MB of 512-d float32
#: embeddings per part, few enough parts for a continent (about 10^5 at 4 x 10^8 chips).
UNIT_CHIPS = 4096

#: The dataset's own files: the run description and the shards' manifests.
MANIFEST_FOLDER = "_geossl"

#: The metadata fields that make two runs' rows the same embeddings (the run fingerprint).
_FINGERPRINT_FIELDS = (
    "normalisation",
    "pooling",
    "chip_size",
    "stride",
    "bands",
    "max_nodata",
    "embedding_dim",
    "unit_chips",  # other units are other row ranges: their parts would overlap
    "pca",  # GeoTIFF runs: components instead of dimensions
    "max_chips",  # GeoTIFF runs: a partial grid is not a finished one
)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``: the work units ``u`` with ``u % count == index``.

    Attributes:
        index: 0-based shard number.
        count: number of shards.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"--shard {self.index}/{self.count}: needs 0 <= I < N (I counts from 0)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` (``--shard``) as a shard."""
        top, _, bottom = text.partition("/")
        try:
            index, count = int(top), int(bottom)
        except ValueError:
            message = f"--shard takes I/N, e.g. 0/4 (I counts from 0); got {text!r}"
            raise ValueError(message) from None
        return cls(index, count)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Shard | None:
        """The shard of a job array or torchrun process, None outside them.

        SLURM job arrays (``SLURM_ARRAY_TASK_ID`` minus ``SLURM_ARRAY_TASK_MIN``, of
        ``SLURM_ARRAY_TASK_COUNT``; the same shape as Kubernetes indexed Jobs'
        ``JOB_COMPLETION_INDEX`` of the job's completions, which has no count variable and needs
        ``--shard``), then torchrun's ``RANK`` of ``WORLD_SIZE``.

        Args:
            environ: the environment (default ``os.environ``).
        """
        env = os.environ if environ is None else environ
        slurm = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
        if slurm[0] is not None and slurm[1] is not None:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return cls(int(slurm[0]) - first, int(slurm[1]))
        rank, world = env.get("RANK"), env.get("WORLD_SIZE")
        if rank is not None and world is not None and int(world) > 1:
            return cls(int(rank), int(world))
        return None

    @property
    def label(self) -> str:
        """``s0001of0004``: the shard in file names."""
        return f"s{self.index:04d}of{self.count:04d}"

    def owns(self, unit: int) -> bool:
        """Whether the unit at position ``unit`` of the run's list is this shard's."""
        return unit % self.count == self.index


#: The shard of an unsharded run.
WHOLE = Shard(0, 1)


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """A band of chip rows of a raster (or a run of fMoW images): one part of the dataset.

    Attributes:
        position: its place in the run's list (what shards split).
        source: index of its source in the run.
        start: first chip row (raster) or image (fMoW).
        stop: one past the last.
        key: stable identity: the resolved file (or folder) and the range.
        fingerprint: size and modification time of its input files.
    """

    position: int
    source: int
    start: int
    stop: int
    key: str
    fingerprint: str


def file_fingerprint(paths: Iterable[Path]) -> str:
    """16 hex digits of the files' names, sizes and modification times (no file is read)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def source_fingerprint(source: RasterSource) -> str:
    """A raster's input fingerprint: its file's, or a STAC item's VRT text (its asset hrefs).

    A STAC item's VRT lives in a new temporary folder at every run, so its file says nothing;
    the VRT's text (the hrefs, bands and grid) is the same for the same item and assets.
    """
    if source.item_id is not None:
        return hashlib.sha256(source.path.read_bytes()).hexdigest()[:16]
    return file_fingerprint([source.path.resolve()])


def _source_key(source: RasterSource) -> str:
    """A raster's stable identity: the resolved file, or a STAC item's id and hrefs."""
    if source.item_id is not None:
        return f"stac:{source.item_id}:{source.row_source}"
    return str(source.path.resolve())


def work_units(sources: Sequence[Source], unit_chips: int = UNIT_CHIPS) -> list[WorkUnit]:
    """The run's work units, in input order (see the module docstring).

    Args:
        sources: the run's sources.
        unit_chips: chips (fMoW: images) per unit; a raster unit holds whole chip rows.

    Returns:
        The units; ``position`` numbers them from 0.
    """
    units: list[WorkUnit] = []
    for index, source in enumerate(sources):
        if isinstance(source, RasterSource):
            path, fingerprint = _source_key(source), source_fingerprint(source)
            rows = max(1, unit_chips // max(1, source.grid.n_cols))
            n_rows = source.grid.n_rows
            ranges = [(r, min(r + rows, n_rows)) for r in range(0, n_rows, rows)]
            keys = [f"{path}#rows={a}-{b}" for a, b in ranges]
            prints = [fingerprint] * len(ranges)
        else:
            root = source.root.resolve()
            ranges = [
                (a, min(a + unit_chips, len(source.images)))
                for a in range(0, len(source.images), unit_chips)
            ]
            keys = [f"{root}#images={a}-{b}" for a, b in ranges]
            prints = [file_fingerprint(source.images[a:b]) for a, b in ranges]
        for (start, stop), key, fingerprint in zip(ranges, keys, prints, strict=True):
            units.append(WorkUnit(len(units), index, start, stop, key, fingerprint))
    return units


def run_fingerprint(metadata: Mapping[str, Any]) -> str:
    """Hash of what makes two runs' rows the same embeddings (see the module docstring).

    Args:
        metadata: the run's metadata (``model.sha256`` and the fingerprint fields).

    Returns:
        16 hex digits.
    """
    model = metadata.get("model") or {}
    fields = {name: metadata.get(name) for name in _FINGERPRINT_FIELDS}
    fields["weights_sha256"] = model.get("sha256")
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The fields of two runs' metadata that differ, for the refusal message."""
    old_model, new_model = old.get("model") or {}, new.get("model") or {}
    changed = [
        f"{name} {old.get(name)!r} -> {new.get(name)!r}"
        for name in _FINGERPRINT_FIELDS
        if old.get(name) != new.get(name)
    ]
    if old_model.get("sha256") != new_model.get("sha256"):
        changed.insert(0, "the weights")
    return ", ".join(changed) or "the run fingerprint"


def part_name(unit: WorkUnit, sources: Sequence[Source], shard: Shard) -> str:
    """The file name of a unit's part: ``{stem}-r{start}-{key hash}.s{I}of{N}.parquet``."""
    source = sources[unit.source]
    stem = source.path.stem if isinstance(source, RasterSource) else source.name
    kind = "r" if isinstance(source, RasterSource) else "i"
    digest = hashlib.sha256(unit.key.encode()).hexdigest()[:8]
    return f"{stem}-{kind}{unit.start:06d}-{digest}.{shard.label}.parquet"


def is_dataset_output(output: Path, fmt: str) -> bool:
    """Whether ``--output`` names a GeoParquet dataset folder (geoparquet, no file suffix)."""
    return fmt == "geoparquet" and (output.is_dir() or not output.suffix)


@dataclass(frozen=True, slots=True)
class DoneParts:
    """The finished parts found in a dataset folder.

    Attributes:
        units: per unit key, ``(part file, input fingerprint, run fingerprint)``.
    """

    units: dict[str, tuple[Path, str, str]]


def _footer_unit(path: Path) -> tuple[str, str, str] | None:
    """``(key, input fingerprint, run fingerprint)`` from a part's footer; None if unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path).metadata or {}
        info = json.loads(meta.get(b"geossl", b"{}"))
        unit = info["unit"]
        return str(unit["key"]), str(unit["fingerprint"]), str(info["run_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished_parts(folder: Path) -> DoneParts:
    """Read the shards' manifests, and the footers of parts that no manifest lists.

    A part is renamed before its manifest line is written: a crash in between leaves a part
    that only its footer describes, which is read here (a part without a readable footer is not
    counted as finished; the unit is redone and the part replaced).

    Args:
        folder: the dataset folder.

    Returns:
        The finished parts.
    """
    units: dict[str, tuple[Path, str, str]] = {}
    parts = {p.name: p for p in folder.glob("*.parquet")} if folder.is_dir() else {}
    listed: set[str] = set()
    manifests = folder / MANIFEST_FOLDER
    for manifest in sorted(manifests.glob("units-*.jsonl")) if manifests.is_dir() else []:
        for line in manifest.read_text().splitlines():
            try:
                entry = json.loads(line)
                name, key = str(entry["part"]), str(entry["key"])
                record = (str(entry["fingerprint"]), str(entry["run_fingerprint"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: its part's footer says the same
            if name in parts:
                units[key] = (parts[name], *record)
                listed.add(name)
    for name, path in parts.items():
        if name not in listed and (found := _footer_unit(path)) is not None:
            units[found[0]] = (path, found[1], found[2])
    return DoneParts(units)


def append_manifest(folder: Path, shard: Shard, entry: Mapping[str, Any]) -> None:
    """Append one finished part to the shard's manifest (one JSON line, flushed to disk)."""
    manifests = folder / MANIFEST_FOLDER
    manifests.mkdir(parents=True, exist_ok=True)
    with open(manifests / f"units-{shard.label}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(entry)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
