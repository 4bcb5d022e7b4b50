"""``geossl pretrain``: pick a preset with ``--dataset`` and hand the rest to LightningCLI.

This front-end only reads the preset files: ``geossl pretrain --help`` lists the presets
without importing torch or Lightning. The LightningCLI itself is
[geossl.cli.pretrain_cli][], imported when a run starts.
"""

import argparse
from collections import defaultdict

import yaml

from geossl.cli._args import split_flag, wants_help
from geossl.cli.user_errors import check_config_files
from geossl.configs import list_presets, preset_path, preset_summary

__all__ = ["DEFAULT_DATAMODULE", "add_parser", "data_help_lines", "preset_lines", "run"]

#: The data module of a ``data`` section without ``class_path`` (the rasters preset names
#: ``geossl.datamodules.RasterTimeSeriesDataModule``).
DEFAULT_DATAMODULE = "geossl.datamodules.FMoWDataModule"

_USAGE = "geossl pretrain --dataset NAME [--data.root DIR | --data.paths DIR] [LightningCLI flags]"

_DESCRIPTION = """\
Pretrain a backbone with MoCo-v2 and the geography-aware terms (tp, geo, co2, scrl), any
combination, on fMoW, fMoW-Sentinel or your own GeoTIFF time series.

--dataset NAME applies the preset configs/pretrain/NAME.yaml first; every later --config and
flag overrides it:
{presets}

Common flags:
  --data.root DIR          the fMoW / fMoW-Sentinel folder (geossl datasets sample ...)
  --data.paths DIR         rasters: GeoTIFF files or folders of them
  --model.losses '{{tp: 1, geo: 1}}'
                           the loss terms and their weights (moco, tp, geo, co2, scrl)
  --trainer.max_epochs N   also --trainer.devices N, --trainer.precision bf16-mixed, ...
  --config FILE            more YAML on top of the preset (repeatable; later wins)
  --ckpt_path FILE         resume a run (weights, optimiser, schedule, MoCo queue)
  --print_config           print the resolved configuration and stop

Every option with its type and default: geossl pretrain --dataset NAME --help (--model.* are
GeoSSLTask's, --trainer.* Lightning's). The data options (--data.*), by data module:
{data_help}
Reference: docs/cli.md; the data sets: docs/datasets/."""


def preset_lines() -> list[str]:
    """One line per pretraining preset: its ``--dataset`` name and summary.

    Returns:
        The lines, sorted by name (``-`` spelling, which ``--dataset`` accepts).
    """
    names = [name.replace("_", "-") for name in list_presets()]
    width = max(len(name) for name in names) + 2 if names else 0
    return [f"  {name:<{width}}{preset_summary(name)}" for name in names]


def data_help_lines() -> list[str]:
    """One line per data module the presets use: the command that lists its ``--data.*`` options.

    Returns:
        ``  geossl pretrain --data.help CLASS   preset, preset, ...`` lines.
    """
    presets: dict[str, list[str]] = defaultdict(list)
    for name in list_presets():
        config = yaml.safe_load(preset_path(name).read_text())
        data = config.get("data") if isinstance(config, dict) else None
        class_path = data.get("class_path") if isinstance(data, dict) else None
        presets[str(class_path or DEFAULT_DATAMODULE)].append(name.replace("_", "-"))
    commands = {c: f"geossl pretrain --data.help {c.rpartition('.')[2]}" for c in presets}
    width = max(len(c) for c in commands.values()) + 2
    return [f"  {commands[c]:<{width}}{', '.join(names)}" for c, names in presets.items()]


def add_parser(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Add ``geossl pretrain``: listed and helped here, parsed by LightningCLI.

    Args:
        sub: The ``geossl`` sub-parsers.

    Returns:
        The sub-parser, whose help is ``geossl pretrain --help``.
    """
    return sub.add_parser(
        "pretrain",
        help="pretrain a backbone: geossl pretrain --dataset fmow [--data.root DIR] [flags]",
        usage=_USAGE,
        description=_DESCRIPTION.format(
            presets="\n".join(preset_lines()), data_help="\n".join(data_help_lines())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )


def run(argv: list[str]) -> None:
    """Run ``geossl pretrain``: the presets' help, or a LightningCLI fit.

    ``--help`` alone prints the presets and the common flags; with ``--dataset`` (or any
    other argument) it is LightningCLI's full list of options.

    Args:
        argv: The arguments after ``pretrain``.
    """
    dataset, rest = split_flag(argv, "--dataset", "--dataset fmow")
    if dataset is None and wants_help(rest) and len(rest) == 1:
        parser = add_parser(argparse.ArgumentParser(prog="geossl").add_subparsers())
        print(parser.format_help().rstrip())
        return
    check_config_files(rest)  # before LightningCLI, whose YAML errors do not name the file
    from geossl.cli.pretrain_cli import build_args, run_pretrain

    run_pretrain(build_args(rest, dataset))
