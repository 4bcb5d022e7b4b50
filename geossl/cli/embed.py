"""``geossl embed``: rasters or fMoW folders to GeoParquet / GeoPackage / GeoTIFF embeddings."""

import argparse
from pathlib import Path

__all__ = ["add_parser", "parse_number_list", "parse_scale", "run"]

#: geossl.embed.plan.FORMATS, repeated so that --help needs no torch (a test keeps the two equal).
_FORMATS = ("geoparquet", "gpkg", "geotiff")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl embed``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    embed = sub.add_parser(
        "embed",
        help="embed rasters (chip by chip) or fMoW folders (per image) with pretrained weights: "
        "GeoParquet or GeoTIFF, plus a false-colour PCA preview",
    )
    _add_input_and_output_arguments(embed)
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
        "--cog", action="store_true", help="geotiff: cloud-optimised GeoTIFFs (with overviews)"
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


def _add_input_and_output_arguments(embed: argparse.ArgumentParser) -> None:
    """The weights, the inputs (files, folders, STAC), the output and how it is split."""
    embed.add_argument("--weights", required=True, type=Path, help="weights file (.pth/.ckpt)")
    embed.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="GeoTIFF/COG/VRT files, folders of them (recursive), fMoW folders",
    )
    embed.add_argument(
        "--stac",
        default=None,
        metavar="ITEMS",
        help="a STAC ItemCollection JSON file or URL, or a STAC API /search URL (needs "
        "pystac-client): one raster per item, rows carry the item id and datetime",
    )
    embed.add_argument(
        "--assets",
        default=None,
        help="--stac: the assets to read, their bands stacked in this order, e.g. red,green,blue "
        "or visual",
    )
    embed.add_argument(
        "--output",
        required=True,
        type=Path,
        help="the .parquet / .gpkg file (geoparquet, gpkg), a folder without suffix (geoparquet: "
        "a dataset of parts, resumable and shardable) or a folder (geotiff: one file per raster)",
    )
    embed.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="embed shard I (from 0) of N of the work units into a dataset folder; default: "
        "SLURM_ARRAY_TASK_ID/COUNT or torchrun's RANK/WORLD_SIZE when set, else everything",
    )
    embed.add_argument(
        "--format",
        choices=_FORMATS,
        default="geoparquet",
        help="one GeoParquet row per chip, one GeoPackage feature per chip (for GDAL/QGIS "
        "builds without the Parquet driver), or one GeoTIFF pixel per chip (default geoparquet)",
    )


def parse_number_list(text: str) -> list[int]:
    """``"4,3,2"`` -> ``[4, 3, 2]`` for ``--bands``."""
    try:
        return [int(item) for item in text.replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(
            f"--bands takes band indexes separated by commas, e.g. 4,3,2; got {text!r}"
        ) from None


def parse_scale(text: str) -> float:
    """``"1/10000"`` or ``"0.0001"`` -> 0.0001 for ``--scale``."""
    top, _, bottom = text.partition("/")
    try:
        value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--scale takes a number or a fraction like 1/255; got {text!r}") from None
    return value


def run(args: argparse.Namespace) -> None:
    """Run ``geossl embed``.

    Args:
        args: The parsed arguments.
    """
    from geossl.cli.runtime import resolve_device
    from geossl.embed import EmbedOptions, embed_rasters
    from geossl.embed.dataset import Shard
    from geossl.embed.stac import parse_assets, stac_rasters
    from geossl.weights import load_backbone

    # One VRT per --stac item, in a temporary folder that lives as long as `stac`.
    stac = stac_rasters(args.stac, parse_assets(args.assets) if args.assets is not None else None)
    inputs = [*args.inputs, *stac.paths]
    if not inputs:
        raise ValueError("nothing to embed: give rasters or fMoW folders (INPUT ...) or --stac")

    bands = parse_number_list(args.bands) if args.bands is not None else None
    scale = parse_scale(args.scale) if args.scale is not None else None
    shard = Shard.parse(args.shard) if args.shard is not None else Shard.from_environment()
    device = resolve_device(args.device)
    loaded = load_backbone(args.weights, device=device, backbone=args.backbone)
    meta = loaded.meta
    options = EmbedOptions(
        chip_size=meta.image_size if args.chip_size is None else args.chip_size,
        stride=args.stride,
        bands=tuple(bands) if bands is not None else None,
        fmt=args.format,
        pca=args.pca,
        batch_size=args.batch_size,
        device=device,
        max_nodata=args.max_nodata,
        workers=args.workers,
        overwrite=args.overwrite,
        preview=not args.no_preview,
        fmow_product=args.fmow_product,
        shard=shard,
        cog=args.cog,
    )
    report = embed_rasters(
        loaded.model,
        inputs,
        args.output,
        mean=meta.mean,
        std=meta.std,
        scale=scale if scale is not None else meta.scale,
        options=options,
        model_info={
            # Absolute: the outputs outlive the folder the command ran in.
            "weights": str(Path(args.weights).resolve()),
            "sha256": meta.sha256_full,
            "backbone": meta.backbone,
            "method": meta.method,
            "band_names": list(meta.bands),
            "image_size": meta.image_size,
        },
    )
    stac.close()
    print(report.summary())
