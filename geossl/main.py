"""The ``geossl`` command: pretraining, dataset tools and the demo.

``geossl pretrain`` hands everything but ``--dataset`` to LightningCLI (see :mod:`geossl.cli`); the
other commands are
small argparse front-ends over library functions, so everything they do is also available from
Python.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from geossl import __version__
from geossl.errors import NonFiniteLossError

#: Errors that are the user's to fix (bad data, bad config value): printed as one line, no
#: traceback.
#: Set GEOSSL_DEBUG=1 to get the traceback.
_USER_ERRORS: tuple[type[Exception], ...] = (
    FileNotFoundError,
    FileExistsError,
    ValueError,
    NonFiniteLossError,
)

DEMO_LOCATIONS = 160


def _split_flag(
    argv: Sequence[str], flag: str, example: str = "--dataset fmow"
) -> tuple[str | None, list[str]]:
    """Take ``FLAG VALUE`` (or ``FLAG=VALUE``) out of arguments meant for LightningCLI.

    Args:
        argv: The arguments after the command.
        flag: The flag, e.g. ``--dataset``.
        example: A usage example for the error message.

    Returns:
        The value (or None) and the remaining arguments.

    Raises:
        ValueError: If the flag has no value.
    """
    value: str | None = None
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == flag:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise ValueError(f"{flag} needs a value, e.g. {example}")
            value = items[i + 1]
            i += 2
            continue
        if item.startswith(f"{flag}="):
            value = item.split("=", 1)[1]
        else:
            rest.append(item)
        i += 1
    return value, rest


def _split_dataset_flag(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take ``--dataset NAME`` (or ``--dataset=NAME``) out of the pretrain arguments.

    Args:
        argv: The arguments after ``pretrain``.

    Returns:
        The preset name (or None) and the remaining arguments for LightningCLI.

    Raises:
        ValueError: If ``--dataset`` has no value.
    """
    return _split_flag(argv, "--dataset", "--dataset fmow")


def _datasets_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl datasets sample {fmow,rasters}`` and ``{download,index} fmow``."""
    datasets = sub.add_parser("datasets", help="generate, download and index datasets")
    dsub = datasets.add_subparsers(dest="action", required=True, metavar="{sample,download,index}")

    sample = dsub.add_parser(
        "sample", help="write a small seeded sample in the real on-disk layout"
    )
    sample.add_argument(
        "dataset",
        choices=["fmow", "fmow-sentinel", "rasters", "xview", "spacenet1", "spacenet2"],
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


def _export_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl export weights``."""
    export = sub.add_parser("export", help="export pretrained weights for torchgeo / timm")
    esub = export.add_subparsers(dest="action", required=True, metavar="{weights}")
    weights = esub.add_parser(
        "weights",
        help="write the backbone of a pretraining checkpoint as .pth (timm state dict), "
        ".ckpt (torchgeo weights=PATH) and .json (metadata)",
    )
    weights.add_argument("checkpoint", type=Path, help="a geossl pretraining checkpoint (.ckpt)")
    weights.add_argument("--output", required=True, type=Path, help="folder to write to")
    weights.add_argument("--overwrite", action="store_true", help="replace existing files")


def _embed_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl embed``."""
    embed = sub.add_parser(
        "embed",
        help="embed rasters (chip by chip) or fMoW folders (per image) with pretrained weights: "
        "GeoParquet or GeoTIFF, plus a false-colour PCA preview",
    )
    embed.add_argument("--weights", required=True, type=Path, help="weights file (.pth/.ckpt)")
    embed.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="GeoTIFF/COG/VRT files, folders of them (recursive), fMoW folders",
    )
    embed.add_argument(
        "--output",
        required=True,
        type=Path,
        help="the .parquet file (geoparquet) or a folder (geotiff: one file per raster)",
    )
    embed.add_argument(
        "--format",
        choices=["geoparquet", "geotiff"],
        default="geoparquet",
        help="one GeoParquet row per chip, or one GeoTIFF pixel per chip (default geoparquet)",
    )
    embed.add_argument(
        "--chip-size", type=int, default=None, help="chip side in pixels (default: the weights')"
    )
    embed.add_argument(
        "--stride", type=int, default=None, help="step between chips (default: the chip size)"
    )
    embed.add_argument(
        "--bands", default=None, help="1-based band indexes, e.g. 4,3,2 (default: all but alpha)"
    )
    embed.add_argument("--batch-size", type=int, default=64, help="chips per forward pass")
    embed.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    embed.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    embed.add_argument(
        "--pca", type=int, default=None, metavar="N", help="geotiff: keep N principal components"
    )
    embed.add_argument(
        "--max-nodata",
        type=float,
        default=0.5,
        help="skip chips with a larger share of nodata pixels (default 0.5)",
    )
    embed.add_argument(
        "--scale",
        default=None,
        help="raw value to [0, 1] factor, e.g. 1/10000 (default: the weights', 1/255 for RGB)",
    )
    embed.add_argument("--workers", type=int, default=2, help="reader threads (default 2)")
    embed.add_argument(
        "--fmow-product", choices=["rgb", "msrgb", "ms"], default=None, help="fMoW images to embed"
    )
    embed.add_argument(
        "--backbone", default=None, help="timm architecture of a bare state dict without metadata"
    )
    embed.add_argument("--no-preview", action="store_true", help="skip the PCA preview images")


def _downstream_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl finetune`` (parsed by LightningCLI), ``evaluate`` and ``compare``."""
    from geossl.finetune import DOWNSTREAM_TASKS

    tasks = ", ".join(DOWNSTREAM_TASKS)
    sub.add_parser(
        "finetune",
        help=f"fine-tune on a downstream task: geossl finetune --task {{{tasks}}} --weights W "
        "[--data.init_args.root DIR] [LightningCLI flags]",
        add_help=False,
    )
    evaluate = sub.add_parser(
        "evaluate", help="test a fine-tuned checkpoint on a split: metrics JSON and a table"
    )
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint of geossl finetune")
    evaluate.add_argument("--task", choices=list(DOWNSTREAM_TASKS), default=None)
    evaluate.add_argument("--split", default=None, help="split to test (default: the run's)")
    evaluate.add_argument("--root", default=None, help="dataset root (default: the run's)")
    evaluate.add_argument("--batch-size", type=int, default=None)
    evaluate.add_argument("--num-workers", type=int, default=None)
    evaluate.add_argument(
        "--output", type=Path, default=None, help="folder for metrics.json (default: eval-SPLIT)"
    )
    evaluate.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default)")
    compare = sub.add_parser(
        "compare",
        help="fine-tune from several weights with the same settings and print the table: "
        "geossl compare --task T --weights random imagenet run.ckpt [LightningCLI flags]",
        add_help=False,
    )
    del compare


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser (``pretrain`` is listed here but parsed by LightningCLI).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="geossl",
        description="Geography-aware self-supervised learning for satellite and aerial imagery.",
    )
    parser.add_argument("--version", action="version", version=f"geossl {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{pretrain,finetune,evaluate,compare,datasets,export,embed,demo}",
    )
    sub.add_parser(
        "pretrain",
        help="pretrain a backbone: geossl pretrain --dataset fmow [--data.root DIR] [flags]",
        add_help=False,
    )
    _downstream_parsers(sub)
    _datasets_parser(sub)
    _export_parser(sub)
    _embed_parser(sub)
    demo = sub.add_parser(
        "demo", help="generate the fMoW sample if absent and pretrain on it briefly (CPU)"
    )
    demo.add_argument(
        "--workdir", type=Path, default=Path("geossl-demo"), help="where the sample and runs go"
    )
    demo.add_argument("--locations", type=int, default=DEMO_LOCATIONS)
    demo.add_argument("--max-epochs", type=int, default=3)
    return parser


def run_demo(workdir: Path, locations: int = DEMO_LOCATIONS, max_epochs: int = 3) -> Path:
    """Generate the fMoW sample (if absent) and pretrain the demo recipe on it.

    Args:
        workdir: Folder for the sample (``fmow-sample``) and the runs (``runs``).
        locations: Locations in the generated sample.
        max_epochs: Training epochs.

    Returns:
        The run folder.
    """
    from geossl.cli import run_pretrain
    from geossl.configs import preset_path
    from geossl.datasets.fmow_sample import generate_fmow_sample

    sample = workdir / "fmow-sample"
    if not (sample / "train").is_dir():
        print(
            f"geossl demo: generating the fMoW sample ({locations} locations) in {sample}",
            file=sys.stderr,
        )
        generate_fmow_sample(sample, locations=locations, seed=0)
    else:
        print(f"geossl demo: reusing the fMoW sample in {sample}", file=sys.stderr)
    cli = run_pretrain(
        [
            "--config",
            str(preset_path("fmow_demo")),
            "--data.root",
            str(sample),
            "--trainer.max_epochs",
            str(max_epochs),
            "--trainer.logger.init_args.save_dir",
            str(workdir / "runs"),
        ]
    )
    run_dir = Path(str(cli.trainer.log_dir))
    ckpt = cli.trainer.checkpoint_callback
    ckpt_path = getattr(ckpt, "last_model_path", "") if ckpt is not None else ""
    print(
        f"geossl demo: done. checkpoint: {ckpt_path or run_dir}  logs: {run_dir}", file=sys.stderr
    )
    return run_dir


def _run(argv: list[str]) -> int:
    """Dispatch a command; returns the exit code."""
    if argv and argv[0] == "pretrain":
        from geossl.cli import build_args, run_pretrain

        dataset, rest = _split_dataset_flag(argv[1:])
        run_pretrain(build_args(rest, dataset))
        return 0

    if argv and argv[0] == "finetune":
        _run_finetune(argv[1:])
        return 0
    if argv and argv[0] == "compare":
        _run_compare(argv[1:])
        return 0

    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        _run_evaluate(args)
    elif args.command == "demo":
        run_demo(args.workdir, args.locations, args.max_epochs)
    elif args.command == "datasets":
        _run_datasets(args)
    elif args.command == "export":
        _run_export(args)
    elif args.command == "embed":
        _run_embed(args)
    return 0


def _task_and_weights(argv: Sequence[str], command: str) -> tuple[str, str | None, list[str]]:
    """``--task`` and ``--weights`` of finetune/compare, and the LightningCLI rest."""
    from geossl.finetune import DOWNSTREAM_TASKS

    task, rest = _split_flag(argv, "--task", "--task fmow-linear")
    weights, rest = _split_flag(rest, "--weights", "--weights random")
    if task is None:
        if "-h" in rest or "--help" in rest:
            print(
                f"usage: geossl {command} --task {{{','.join(DOWNSTREAM_TASKS)}}} --weights W "
                "[LightningCLI flags]\n\n"
                + "\n".join(f"  {s.name:<14}{s.description}" for s in DOWNSTREAM_TASKS.values())
                + f"\n\ngeossl {command} --task NAME --help lists the task's flags."
            )
            raise SystemExit(0)
        raise ValueError(f"geossl {command} needs --task, one of {', '.join(DOWNSTREAM_TASKS)}")
    return task, weights, rest


def _run_finetune(argv: Sequence[str]) -> None:
    """Run ``geossl finetune``."""
    from geossl.finetune import get_task_spec, run_finetune

    task, weights, rest = _task_and_weights(argv, "finetune")
    result = run_finetune(task, weights, rest)
    print(result.table(get_task_spec(task).metrics))
    print(f"metrics: {result.metrics_path}   best checkpoint: {result.checkpoint}")


def _run_compare(argv: Sequence[str]) -> None:
    """Run ``geossl compare``: one fine-tuning per ``--weights`` value, then the table."""
    from geossl.finetune import format_comparison, get_task_spec, run_compare

    task, first, rest = _task_and_weights(argv, "compare")
    weights = [first] if first is not None else []
    # --weights takes several values: the ones that follow it up to the next flag.
    output, rest = _split_flag(rest, "--output", "--output comparison/")
    while rest and not rest[0].startswith("-"):
        weights.append(rest.pop(0))
    results = run_compare(task, weights, rest, output=output)
    print(format_comparison(results, get_task_spec(task).metrics))
    if output is not None:
        print(f"table: {Path(output) / 'comparison.md'}")


def _run_evaluate(args: argparse.Namespace) -> None:
    """Run ``geossl evaluate``."""
    from geossl.finetune import get_task_spec, run_evaluate

    data: dict[str, object] = {}
    for key, value in (
        ("root", args.root),
        ("batch_size", args.batch_size),
        ("num_workers", args.num_workers),
    ):
        if value is not None:
            data[key] = value
    result = run_evaluate(
        args.checkpoint,
        task=args.task,
        split=args.split,
        data=data,
        output=args.output,
        accelerator=args.accelerator,
    )
    print(result.table(get_task_spec(result.task).metrics))
    print(f"metrics: {result.metrics_path}")


def _run_export(args: argparse.Namespace) -> None:
    """Run ``geossl export weights``."""
    from geossl.export.weights import export_weights

    exported = export_weights(args.checkpoint, args.output, overwrite=args.overwrite)
    meta = exported.meta
    print(
        f"exported {meta.backbone} ({meta.method}, {meta.in_chans} bands, step "
        f"{meta.global_step}) sha256 {meta.sha256}:"
    )
    print(f"  {exported.weights}  timm state dict (torch.load + load_state_dict)")
    print(f"  {exported.checkpoint}  torchgeo trainers (ClassificationTask(weights=PATH), ...)")
    print(f"  {exported.metadata}  metadata (bands, normalisation, recipe)")


def _parse_number_list(text: str) -> list[int]:
    """``"4,3,2"`` -> ``[4, 3, 2]`` for ``--bands``."""
    try:
        return [int(item) for item in text.replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(
            f"--bands takes band indexes separated by commas, e.g. 4,3,2; got {text!r}"
        ) from None


def _parse_scale(text: str) -> float:
    """``"1/10000"`` or ``"0.0001"`` -> 0.0001 for ``--scale``."""
    top, _, bottom = text.partition("/")
    try:
        value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--scale takes a number or a fraction like 1/255; got {text!r}") from None
    return value


def _run_embed(args: argparse.Namespace) -> None:
    """Run ``geossl embed``."""
    import torch

    from geossl.export.embed import embed_rasters
    from geossl.export.weights import load_backbone

    bands = _parse_number_list(args.bands) if args.bands is not None else None
    scale = _parse_scale(args.scale) if args.scale is not None else None
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_backbone(args.weights, device=device, backbone=args.backbone)
    meta = loaded.meta
    report = embed_rasters(
        loaded.model,
        args.inputs,
        args.output,
        mean=meta.mean,
        std=meta.std,
        scale=scale if scale is not None else meta.scale,
        chip_size=args.chip_size or meta.image_size,
        stride=args.stride,
        bands=bands,
        fmt=args.format,
        pca=args.pca,
        batch_size=args.batch_size,
        device=device,
        max_nodata=args.max_nodata,
        workers=args.workers,
        overwrite=args.overwrite,
        preview=not args.no_preview,
        fmow_product=args.fmow_product,
        model_info={
            "weights": str(args.weights),
            "sha256": meta.sha256,
            "backbone": meta.backbone,
            "method": meta.method,
            "band_names": list(meta.bands),
            "image_size": meta.image_size,
        },
    )
    print(report.summary())


def _run_datasets(args: argparse.Namespace) -> None:
    """Run ``geossl datasets ...``."""
    if args.action == "sample" and args.dataset == "xview":
        from geossl.datasets.xview_sample import generate_xview_sample

        xview = generate_xview_sample(
            args.output, images=args.images, seed=args.seed, overwrite=args.overwrite
        )
        print(
            f"wrote {len(xview.image_ids):,} GeoTIFFs and {xview.num_features:,} boxes "
            f"({len(xview.missing_image_ids)} image(s) missing on purpose, as in xView) to "
            f"{xview.root}"
        )
    elif args.action == "sample" and args.dataset.startswith("spacenet"):
        from geossl.datasets.spacenet_sample import generate_spacenet_sample

        spacenet = generate_spacenet_sample(
            args.output,
            collection=args.dataset,
            tiles=args.tiles,
            seed=args.seed,
            overwrite=args.overwrite,
        )
        print(
            f"wrote {len(spacenet.tiles):,} {args.dataset} chips "
            f"({', '.join(spacenet.products)}) to {spacenet.dataset_dir}"
        )
    elif args.action == "sample" and args.dataset == "rasters":
        from geossl.datasets.rasters_sample import generate_raster_timeseries_sample

        raster_summary = generate_raster_timeseries_sample(
            args.output, num_dates=args.dates, seed=args.seed, overwrite=args.overwrite
        )
        height, width = raster_summary.size
        print(
            f"wrote {len(raster_summary.files):,} GeoTIFFs ({len(raster_summary.dates)} dates, "
            f"{raster_summary.num_bands} bands, {width}x{height} px, EPSG:{raster_summary.epsg}) "
            f"to {raster_summary.root}"
        )
    elif args.action == "sample" and args.dataset == "fmow-sentinel":
        from geossl.datasets.fmow_sentinel_sample import generate_fmow_sentinel_sample

        sentinel = generate_fmow_sentinel_sample(
            args.output,
            locations=24 if args.locations is None else args.locations,
            seed=args.seed,
            overwrite=args.overwrite,
        )
        splits = ", ".join(f"{k} {v}" for k, v in sentinel.images_per_split.items() if v)
        print(
            f"wrote {sentinel.num_images:,} 13-band GeoTIFFs of {sentinel.num_locations:,} "
            f"locations ({splits}; {sentinel.num_failed} failed download(s) left out of the "
            f"CSVs, as in fMoW-Sentinel) to {sentinel.root}"
        )
    elif args.action == "sample":
        from geossl.datasets.fmow_sample import generate_fmow_sample

        summary = generate_fmow_sample(
            args.output,
            locations=48 if args.locations is None else args.locations,
            seed=args.seed,
            full=args.full,
            overwrite=args.overwrite,
        )
        splits = ", ".join(f"{k} {v}" for k, v in summary.images_per_split.items() if v)
        print(
            f"wrote {summary.num_images:,} images of {summary.num_locations:,} locations "
            f"({splits}; {summary.num_files:,} files) to {summary.root}"
        )
    elif args.action == "download":
        from geossl.datasets.fmow_download import FMOW_BASE_URL, download_fmow

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
    elif args.action == "index":
        from geossl.datasets.fmow_index import build_fmow_index

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


#: How jsonargparse reports a class of a subclass-mode section (``model:``/``data:`` with a
#: ``class_path``) whose constructor raised: the constructor's message is one of the listed errors.
_UNION_ERROR = "Does not validate against any of the Union subtypes"


def one_line_message(error: BaseException) -> str:
    """The one line a user sees for ``error``: its first line, or the constructor's own message.

    Args:
        error: The exception.

    Returns:
        The line to print after ``geossl: error:``.
    """
    lines = [line.strip() for line in str(error).strip().splitlines()]
    if not lines or not lines[0]:
        return type(error).__name__
    if lines[0].startswith(_UNION_ERROR):
        # "Errors:" then "- <constructor message>" per subtype; the NoneType one says nothing.
        reasons = [
            line[2:]
            for line in lines
            if line.startswith("- ") and not line.startswith("- Expected a <class 'NoneType'>")
        ]
        if reasons:
            return reasons[0]
    return lines[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``geossl`` command line.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _run(args)
    except _USER_ERRORS as error:
        if os.environ.get("GEOSSL_DEBUG"):
            raise
        print(f"geossl: error: {one_line_message(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)
