"""Real time-series experiments of :mod:`benchmarks.ablation`: derived labels, spatial hold-out.

For each co-registered stack in ``../shared/data/real/timeseries``:

1. The stack is split by columns: the western ``TRAIN_FRACTION`` of every date is written to
   GeoTIFFs in the work folder (windowed copies that keep the CRS, the transform and the dates in
   the file names); pretraining sees only those. The eastern part is held out.
2. Every date is cut into non-overlapping ``PATCH`` px cells. Two probes, with labels that
   pretraining never sees:

   * ``retrieval_top1`` (held-out east only): label = the cell; bank = the east cells at the
     even-numbered dates, queries = the same cells at the odd-numbered dates, k = 1. Right when the
     nearest bank patch is the same place at another date.
   * ``cover_top1``: label = the cell's mean NDVI in three classes split at the tertiles of the
     stack (a land-cover proxy from the NIR and red bands); bank = the west cells, queries = the
     east cells, every date, k = 20.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
import torch
from rasterio.windows import Window

from geossl.evaluation import embed_images, knn_accuracy

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real" / "timeseries"

#: Patch side in pixels (the base config's 64 px views).
PATCH = 64
#: Share of the columns (from the west) that pretraining sees.
TRAIN_FRACTION = 0.6


@dataclass(frozen=True)
class Stack:
    """A co-registered stack and what its bands are."""

    folder: str
    bands: tuple[str, ...]
    nir: int  # 0-based band of near infrared
    red: int  # 0-based band of red


STACKS = (
    Stack("landsat_pucallpa", ("swir1", "nir", "red", "green"), nir=1, red=2),
    Stack("naip_north_dakota", ("red", "green", "blue", "nir"), nir=3, red=0),
)


@dataclass(frozen=True)
class Experiment:
    """One stack's pretraining arguments and probe."""

    name: str
    description: str
    base_args: list[str]
    evaluate: Callable[[torch.nn.Module, list[float], list[float]], dict[str, float]]
    in_chans: int
    mean: list[float]
    std: list[float]


def read_stack(folder: Path) -> tuple[list[Path], npt.NDArray[np.uint8]]:
    """Every date of a stack, cropped to the common size: ``([T] paths, uint8 [T, C, H, W])``."""
    paths = sorted(folder.glob("*.tif"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no GeoTIFFs")
    arrays = []
    for path in paths:
        with rasterio.open(path) as src:
            arrays.append(src.read())
    height = min(a.shape[1] for a in arrays)
    width = min(a.shape[2] for a in arrays)  # NAIP dates differ by one row
    return paths, np.stack([a[:, :height, :width] for a in arrays]).astype(np.uint8)


def write_train_part(paths: list[Path], width: int, out: Path) -> None:
    """Windowed copies of the western ``width`` columns of every date (CRS and transform kept)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = out / path.name
        if target.exists():
            continue
        with rasterio.open(path) as src:
            window = Window(0, 0, width, src.height)
            profile = src.profile | {
                "width": width,
                "transform": src.window_transform(window),
                "driver": "GTiff",
            }
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            profile["tiled"] = False
            with rasterio.open(target, "w", **profile) as dst:
                dst.write(src.read(window=window))


def cells(stack: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Non-overlapping cells: ``(uint8 [T, N, C, P, P], int64 [N] column of each cell's left)``."""
    _, _, height, width = stack.shape
    rows, cols = height // PATCH, width // PATCH
    out = [
        stack[:, :, r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH]
        for r in range(rows)
        for c in range(cols)
    ]
    lefts = np.array([c * PATCH for _ in range(rows) for c in range(cols)], dtype=np.int64)
    return np.stack(out, axis=1), lefts


def ndvi_classes(patches: npt.NDArray[np.uint8], nir: int, red: int) -> npt.NDArray[np.int64]:
    """Mean-NDVI tertile (0, 1, 2) of every patch of ``[..., C, P, P]``."""
    values = patches.astype(np.float32)
    ndvi = (values[..., nir, :, :] - values[..., red, :, :]) / (
        values[..., nir, :, :] + values[..., red, :, :] + 1e-6
    )
    means = ndvi.mean(axis=(-2, -1))
    low, high = np.quantile(means, [1 / 3, 2 / 3])
    classes: npt.NDArray[np.int64] = np.digitize(means, [low, high]).astype(np.int64)
    return classes


def date_regex(paths: list[Path]) -> tuple[str, str]:
    """The file-name date pattern of a stack: ``(regex, strptime format)``."""
    if all(re.fullmatch(r"\d{4}\.tif", p.name) for p in paths):
        return r"^(?P<date>\d{4})\.tif$", "%Y"
    return r"^.*_(?P<date>\d{8})\.tif$", "%Y%m%d"


def timeseries_experiments(workdir: Path, base_config: Path) -> list[Experiment]:
    """One :class:`Experiment` per stack found in ``../shared/data/real/timeseries``.

    Args:
        workdir: where the training parts are written.
        base_config: the model/trainer base config (no ``data`` section).

    Returns:
        The experiments.

    Raises:
        FileNotFoundError: if the real data folder is absent.
    """
    if not REAL.is_dir():
        raise FileNotFoundError(f"{REAL}: the real time series are absent (see its README)")
    experiments = []
    for spec in STACKS:
        paths, stack = read_stack(REAL / spec.folder)
        dates, channels, height, width = stack.shape
        train_width = int(width * TRAIN_FRACTION) // PATCH * PATCH
        train_dir = workdir / spec.folder / "train-part"
        write_train_part(paths, train_width, train_dir)
        scaled = stack[:, :, :, :train_width].astype(np.float32) / 255.0
        mean = [round(float(v), 4) for v in scaled.mean(axis=(0, 2, 3))]
        std = [round(float(v), 4) for v in scaled.std(axis=(0, 2, 3))]
        patches, lefts = cells(stack)  # [T, N, C, P, P]
        cover = ndvi_classes(patches, spec.nir, spec.red)  # [T, N]
        east = lefts >= train_width
        regex, date_format = date_regex(paths)
        base = [
            "--dataset",
            "rasters",
            "--config",
            str(base_config),
            "--data.paths",
            f"[{train_dir}]",
            "--data.filename_regex",
            regex,
            "--data.date_format",
            date_format,
            "--data.patch_size",
            str(PATCH),
            "--data.length",
            "256",
            "--data.batch_size",
            "32",
            "--data.num_workers",
            "1",
            "--data.num_geo_clusters",
            "4",
            "--model.mean",
            str(mean),
            "--model.std",
            str(std),
        ]

        def evaluate(
            backbone: torch.nn.Module,
            mean: list[float],
            std: list[float],
            patches: npt.NDArray[np.uint8] = patches,
            cover: npt.NDArray[np.int64] = cover,
            east: npt.NDArray[np.bool_] = east,
        ) -> dict[str, float]:
            num_dates, num_cells = patches.shape[:2]
            flat = torch.from_numpy(patches.reshape(-1, *patches.shape[2:]))
            features = embed_images(backbone, flat, mean, std).view(num_dates, num_cells, -1)
            cell_ids = torch.arange(num_cells).expand(num_dates, -1)
            east_t = torch.from_numpy(east)
            even, odd = slice(0, None, 2), slice(1, None, 2)
            retrieval = knn_accuracy(
                features[odd][:, east_t].flatten(0, 1),
                cell_ids[odd][:, east_t].flatten(),
                features[even][:, east_t].flatten(0, 1),
                cell_ids[even][:, east_t].flatten(),
                k=1,
            )
            cover_t = torch.from_numpy(cover)
            cover_acc = knn_accuracy(
                features[:, east_t].flatten(0, 1),
                cover_t[:, east_t].flatten(),
                features[:, ~east_t].flatten(0, 1),
                cover_t[:, ~east_t].flatten(),
                k=20,
            )
            return {"retrieval_top1": retrieval, "cover_top1": cover_acc}

        experiments.append(
            Experiment(
                name=spec.folder,
                description=(
                    f"{dates} dates, {channels} bands ({', '.join(spec.bands)}), "
                    f"{width}x{height} px; "
                    f"pretraining on the western {train_width} px, "
                    f"{int(east.sum())} held-out cells of {PATCH} px"
                ),
                base_args=base,
                evaluate=evaluate,
                in_chans=channels,
                mean=mean,
                std=std,
            )
        )
    return experiments
