"""``geossl export weights``: a pretraining checkpoint's backbone for torchgeo and timm."""

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl export weights``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    export = sub.add_parser("export", help="export pretrained weights for torchgeo / timm")
    esub = export.add_subparsers(dest="action", required=True, metavar="{weights}")
    weights = esub.add_parser(
        "weights",
        help="write the backbone of a pretraining checkpoint as .pth (timm state dict), "
        ".safetensors (timm pretrained file), .ckpt (torchgeo weights=PATH) and .json (metadata)",
    )
    weights.add_argument("checkpoint", type=Path, help="a geossl pretraining checkpoint (.ckpt)")
    weights.add_argument("--output", required=True, type=Path, help="folder to write to")
    weights.add_argument("--overwrite", action="store_true", help="replace existing files")


def run(args: argparse.Namespace) -> None:
    """Run ``geossl export weights``.

    Args:
        args: The parsed arguments.
    """
    from geossl.weights import export_weights

    exported = export_weights(args.checkpoint, args.output, overwrite=args.overwrite)
    meta = exported.meta
    print(
        f"exported {meta.backbone} ({meta.method}, {meta.in_chans} bands, step "
        f"{meta.global_step}) sha256 {meta.sha256}:"
    )
    print(f"  {exported.weights}  timm state dict (torch.load + load_state_dict)")
    print(
        f"  {exported.safetensors}  timm: timm.create_model({meta.backbone!r}, pretrained=True, "
        "num_classes=0, pretrained_cfg_overlay=dict(file=PATH))"
    )
    print(
        f"  {exported.checkpoint}  torchgeo trainers (ClassificationTask(weights=PATH), ...); "
        "not for timm (it would keep random weights)"
    )
    print(f"  {exported.metadata}  metadata (bands, normalisation, recipe)")
    print(
        "  torchgeo models and tasks also take geossl.weights.GeoSSLWeights.from_file(PATH) "
        "(any of the files)"
    )
