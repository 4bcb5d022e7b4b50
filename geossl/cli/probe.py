"""``geossl probe``: how good are these weights? kNN and linear probes on frozen features.

    geossl probe --weights runs/fmow/version_0/checkpoints/last.ckpt ../shared/data/real/siri_whu
    geossl probe --weights ResNet50_Weights.FMOW_RGB_GASSL data/eurosat --dataset eurosat

The protocol and the JSON are described in [geossl.evaluation.probe][].
"""

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]

#: geossl.evaluation.probe_data.PROBE_DATASETS, repeated so that --help needs no torch (a test keeps
#: the two equal).
_DATASETS = ("folder", "eurosat", "ucmerced", "resisc45")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl probe``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    probe = sub.add_parser(
        "probe",
        help="score frozen weights on labelled scenes: weighted kNN (k=20) and linear-probe "
        "top-1, per-class figures, a 2-D feature plot",
    )
    probe.add_argument(
        "--weights",
        required=True,
        help="random, imagenet, a torchgeo weights name, or a geossl checkpoint / export",
    )
    probe.add_argument(
        "data",
        type=Path,
        help="a folder with labels.csv (path,class_name,class_idx), or the "
        "root of a torchgeo dataset (--dataset)",
    )
    probe.add_argument(
        "--dataset",
        choices=_DATASETS,
        default="folder",
        help="folder (labels.csv, seeded 60/20/20 split) or a torchgeo dataset on disk with its "
        "own splits (never downloaded)",
    )
    probe.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the JSON to write, a PNG of the features beside it (default probe-DATA.json)",
    )
    probe.add_argument(
        "--backbone", default=None, help="timm architecture (default: the file's, else resnet50)"
    )
    probe.add_argument(
        "--image-size", type=int, default=224, help="side images are resized to (default 224)"
    )
    probe.add_argument("--k", type=int, default=20, help="neighbours of the weighted kNN")
    probe.add_argument("--batch-size", type=int, default=64)
    probe.add_argument("--workers", type=int, default=2, help="image-reading processes")
    probe.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    probe.add_argument("--seed", type=int, default=0, help="split and bootstrap seed")
    probe.add_argument("--overwrite", action="store_true", help="replace an existing result")


def run(args: argparse.Namespace) -> None:
    """Run ``geossl probe``.

    Args:
        args: The parsed arguments.

    Raises:
        FileExistsError: if the result exists and ``--overwrite`` is not given.
    """
    output = args.output or Path(f"probe-{args.data.resolve().name}.json")
    if output.suffix != ".json":
        raise ValueError(f"--output must be a .json file, got {output}")
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    from geossl.cli.runtime import resolve_device
    from geossl.evaluation.probe import run_probe
    from geossl.evaluation.probe_result import write_probe_result

    device = resolve_device(args.device)
    result = run_probe(
        args.weights,
        args.data,
        dataset=args.dataset,
        backbone=args.backbone,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
        k=args.k,
        seed=args.seed,
    )
    png = write_probe_result(result, output)
    print(result.table())
    print(f"result: {output}   features: {png}")
