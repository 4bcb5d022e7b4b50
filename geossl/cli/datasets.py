"""``geossl datasets {sample,download,index}``: generate, download and index datasets.

A thin argparse front-end: every action calls one library function, imported when it runs, so
``geossl --help`` loads no torch.
"""

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["add_parser", "run"]

_T = TypeVar("_T")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl datasets sample DATASET`` and ``{download,index} fmow``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    datasets = sub.add_parser("datasets", help="generate, download and index datasets")
    dsub = datasets.add_subparsers(dest="action", required=True, metavar="{sample,download,index}")

    sample = dsub.add_parser(
        "sample", help="write a small seeded sample in the real on-disk layout"
    )
    sample.add_argument(
        "dataset",
        choices=["fmow", "fmow-sentinel", "rasters", "xview", "spacenet1", "spacenet2", "scenes"],
    )
    sample.add_argument("--output", required=True, type=Path, help="folder to create")
    sample.add_argument(
        "--locations",
        type=int,
        default=None,
        help="fmow / fmow-sentinel: number of locations (default 48 / 24)",
    )
    sample.add_argument(
        "--dates",
        type=int,
        default=5,
        help="rasters: acquisition dates of the co-registered GeoTIFF time series (default 5)",
    )
    sample.add_argument(
        "--images", type=int, default=12, help="xview: number of images (default 12)"
    )
    sample.add_argument(
        "--tiles", type=int, default=8, help="spacenet1/2: number of image chips (default 8)"
    )
    sample.add_argument(
        "--classes", type=int, default=4, help="scenes: number of classes (2-6, default 4)"
    )
    sample.add_argument(
        "--per-class", type=int, default=10, help="scenes: images per class (default 10)"
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--full", action="store_true", help="fMoW-full layout (_rgb.tif + 8-band _ms.tif)"
    )
    sample.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty folder"
    )

    download = dsub.add_parser("download", help="download from the public S3 bucket (resumable)")
    download.add_argument("dataset", choices=["fmow"])
    download.add_argument("--root", required=True, type=Path)
    download.add_argument("--subset", choices=["rgb", "full"], default="rgb")
    download.add_argument("--splits", nargs="+", default=["train", "val"])
    download.add_argument(
        "--max-locations", type=int, default=None, help="per split, for a quick start"
    )
    download.add_argument("--workers", type=int, default=8)
    download.add_argument(
        "--base-url", default=None, help="mirror of the bucket (default: public S3)"
    )

    index = dsub.add_parser(
        "index", help="build (or reuse) the cached image index and print its summary"
    )
    index.add_argument("dataset", choices=["fmow"])
    index.add_argument("--root", required=True, type=Path)
    index.add_argument("--splits", nargs="+", default=["train", "val"])
    index.add_argument(
        "--product",
        choices=["rgb", "msrgb", "ms", "sentinel"],
        default="rgb",
        help="sentinel: fMoW-Sentinel (CSVs + 13-band GeoTIFFs; splits train, val, test)",
    )
    index.add_argument("--num-geo-clusters", type=int, default=100)
    index.add_argument("--seed", type=int, default=0)
    index.add_argument("--workers", type=int, default=None)
    index.add_argument("--rebuild", action="store_true", help="ignore the cache and scan again")


def run(args: argparse.Namespace) -> None:
    """Run ``geossl datasets ...``.

    Args:
        args: The parsed arguments.
    """
    if args.action == "sample":
        _run_sample(args)
    elif args.action == "download":
        _run_download(args)
    elif args.action == "index":
        _run_index(args)


def _generate(args: argparse.Namespace, generate: Callable[..., _T], **options: Any) -> _T:
    """Call a ``generate_*_sample`` with the options every sample shares.

    Args:
        args: The parsed ``sample`` arguments.
        generate: The generator, called as ``generate(output, seed=, overwrite=, **options)``.
        **options: The generator's own keyword arguments.

    Returns:
        What ``generate`` returns.
    """
    return generate(args.output, seed=args.seed, overwrite=args.overwrite, **options)


def _splits_text(images_per_split: Mapping[str, int]) -> str:
    """``"train 3, val 1"``: the splits that hold images, with their counts."""
    return ", ".join(f"{k} {v}" for k, v in images_per_split.items() if v)


def _run_sample(args: argparse.Namespace) -> None:
    """Run ``geossl datasets sample DATASET``: write the sample and print what it holds."""
    if args.dataset == "scenes":
        from geossl.synthetic.scenes import generate_scene_sample

        scenes = _generate(
            args, generate_scene_sample, classes=args.classes, per_class=args.per_class
        )
        print(
            f"wrote {args.classes * args.per_class:,} scenes of {args.classes} classes and "
            f"labels.csv to {scenes} (geossl probe --weights W {scenes})"
        )
    elif args.dataset == "xview":
        from geossl.synthetic.xview import generate_xview_sample

        xview = _generate(args, generate_xview_sample, images=args.images)
        print(
            f"wrote {len(xview.image_ids):,} GeoTIFFs and {xview.num_features:,} boxes "
            f"({len(xview.missing_image_ids)} image(s) missing on purpose, as in xView) to "
            f"{xview.root}"
        )
    elif args.dataset.startswith("spacenet"):
        from geossl.synthetic.spacenet import generate_spacenet_sample

        spacenet = _generate(
            args, generate_spacenet_sample, collection=args.dataset, tiles=args.tiles
        )
        print(
            f"wrote {len(spacenet.tiles):,} {args.dataset} chips "
            f"({', '.join(spacenet.products)}) to {spacenet.dataset_dir}"
        )
    elif args.dataset == "rasters":
        _run_sample_rasters(args)
    else:
        _run_sample_fmow(args)


def _run_sample_rasters(args: argparse.Namespace) -> None:
    """Run ``geossl datasets sample rasters``."""
    from geossl.synthetic.rasters import generate_raster_timeseries_sample

    raster_summary = _generate(args, generate_raster_timeseries_sample, num_dates=args.dates)
    height, width = raster_summary.size
    print(
        f"wrote {len(raster_summary.files):,} GeoTIFFs ({len(raster_summary.dates)} dates, "
        f"{raster_summary.num_bands} bands, {width}x{height} px, EPSG:{raster_summary.epsg}) "
        f"to {raster_summary.root}"
    )


def _run_sample_fmow(args: argparse.Namespace) -> None:
    """Run ``geossl datasets sample {fmow,fmow-sentinel}``."""
    if args.dataset == "fmow-sentinel":
        from geossl.synthetic.fmow_sentinel import generate_fmow_sentinel_sample

        sentinel = _generate(
            args,
            generate_fmow_sentinel_sample,
            locations=24 if args.locations is None else args.locations,
        )
        print(
            f"wrote {sentinel.num_images:,} 13-band GeoTIFFs of {sentinel.num_locations:,} "
            f"locations ({_splits_text(sentinel.images_per_split)}; {sentinel.num_failed} "
            f"failed download(s) left out of the CSVs, as in fMoW-Sentinel) to {sentinel.root}"
        )
        return
    from geossl.synthetic.fmow import generate_fmow_sample

    summary = _generate(
        args,
        generate_fmow_sample,
        locations=48 if args.locations is None else args.locations,
        full=args.full,
    )
    print(
        f"wrote {summary.num_images:,} images of {summary.num_locations:,} locations "
        f"({_splits_text(summary.images_per_split)}; {summary.num_files:,} files) to "
        f"{summary.root}"
    )


def _run_download(args: argparse.Namespace) -> None:
    """Run ``geossl datasets download fmow``; exit 1 when any file failed."""
    from geossl.datasets.fmow.download import FMOW_BASE_URL, download_fmow

    report = download_fmow(
        args.root,
        subset=args.subset,
        splits=args.splits,
        max_locations=args.max_locations,
        workers=args.workers,
        base_url=args.base_url or FMOW_BASE_URL,
    )
    print(
        f"downloaded {report.downloaded:,} files ({report.bytes / 1e6:,.1f} MB), "
        f"{report.skipped_existing:,} already complete, {len(report.failed):,} failed"
    )
    for path, reason in report.failed[:10]:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    if len(report.failed) > 10:
        print(
            f"  ... and {len(report.failed) - 10:,} more; run the command again to retry them",
            file=sys.stderr,
        )
    if report.failed:
        raise SystemExit(1)


def _run_index(args: argparse.Namespace) -> None:
    """Run ``geossl datasets index fmow``."""
    from geossl.datasets.fmow.index import build_fmow_index

    index = build_fmow_index(
        args.root,
        splits=tuple(args.splits),
        product=args.product,
        num_geo_clusters=args.num_geo_clusters,
        seed=args.seed,
        rebuild=args.rebuild,
        workers=args.workers,
    )
    source = "loaded from cache" if index.from_cache else "built"
    print(f"index {source}: {len(index.table):,} images -> {index.cache_path}")
