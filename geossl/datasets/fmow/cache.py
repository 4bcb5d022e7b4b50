"""The fMoW index's Parquet cache: its schema, metadata, atomic write and checked read."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geossl.datasets.fmow.constants import INDEX_COLUMNS, INDEX_FORMAT_VERSION
from geossl.datasets.fmow.report import FMoWIndexReport
from geossl.utils.io import atomic_output

__all__: list[str] = []

_INDEX_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t in INDEX_COLUMNS])
_METADATA_KEY = b"geossl.fmow_index"


def _write_cache(
    table: pa.Table, path: Path, metadata: dict[str, Any], row_group_size: int = 131_072
) -> None:
    """Write ``table`` with its metadata to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = table.schema.with_metadata({_METADATA_KEY: json.dumps(metadata).encode()})
    with (
        atomic_output(path) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
    ):
        for batch in table.to_batches(max_chunksize=row_group_size):
            writer.write_batch(batch)


def _read_cache(path: Path) -> tuple[pa.Table, npt.NDArray[np.float64], FMoWIndexReport]:
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise ValueError("no geossl metadata")
    metadata = json.loads(raw)
    if metadata.get("version") != INDEX_FORMAT_VERSION:
        raise ValueError(f"index format version {metadata.get('version')}")
    if table.schema.remove_metadata() != _INDEX_SCHEMA:
        raise ValueError("unexpected columns")
    centroids = np.asarray(metadata["centroids"], dtype=np.float64).reshape(-1, 3)
    return table, centroids, FMoWIndexReport.from_dict(metadata["report"])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    for name in ("path", "split", "category", "location", "country_code"):
        frame[name] = frame[name].astype("str")
    return frame


def _save_index(
    table: pa.Table,
    cache_path: Path,
    params: dict[str, Any],
    centroids: npt.NDArray[np.float64],
    report: FMoWIndexReport,
) -> None:
    """Write the cache with its metadata; a cache that cannot be written only warns."""
    metadata = {
        **params,
        "centroids": centroids.tolist(),
        "report": report.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        _write_cache(table, cache_path, metadata)
    except OSError as err:
        warnings.warn(
            f"{cache_path}: cannot write the fMoW index cache ({err.strerror or err}); "
            "pass cache_dir to a writable folder to avoid re-indexing",
            RuntimeWarning,
            stacklevel=3,  # build_fmow_index's caller, as when this was inline
        )
