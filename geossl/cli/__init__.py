"""The ``geossl`` command: one table of subcommands, each a module of this package.

Building the parser imports no torch and no Lightning (``geossl --help`` answers at once): the
subcommand modules are argparse front-ends that import the library when they run. ``pretrain``,
``finetune`` and ``compare`` hand their arguments to LightningCLI
([geossl.cli.pretrain_cli][], [geossl.cli.finetune_cli][]); the others call one library
function each, so everything they do is also available from Python.

Examples:
    >>> parser = build_parser()
    >>> sorted(COMMANDS) == sorted(parser._subparsers._group_actions[0].choices)
    True
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geossl import __version__
from geossl.cli import datasets, demo, embed, export, finetune, pretrain, probe
from geossl.cli.user_errors import one_line_message, user_error_line

__all__ = ["COMMANDS", "Command", "build_parser", "main", "one_line_message"]


@dataclass(frozen=True)
class Command:
    """A ``geossl`` subcommand.

    Attributes:
        name: The word after ``geossl``.
        add_parser: Adds the subcommand's parser (and its help line) to ``geossl``'s.
        run: Runs it on the parsed arguments (argparse commands).
        run_raw: Runs it on the raw arguments after the name (commands whose flags are
            LightningCLI's); exactly one of ``run`` and ``run_raw`` is set.
    """

    name: str
    add_parser: Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], object]
    run: Callable[[argparse.Namespace], None] | None = None
    run_raw: Callable[[list[str]], None] | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.run_raw is None):
            raise ValueError(f"command {self.name!r}: give exactly one of run and run_raw")


#: The subcommands, in the order ``geossl --help`` lists them.
COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command("pretrain", pretrain.add_parser, run_raw=pretrain.run),
        Command("finetune", finetune.add_finetune_parser, run_raw=finetune.run_finetune_command),
        Command("evaluate", finetune.add_evaluate_parser, run=finetune.run_evaluate_command),
        Command("compare", finetune.add_compare_parser, run_raw=finetune.run_compare_command),
        Command("probe", probe.add_parser, run=probe.run),
        Command("datasets", datasets.add_parser, run=datasets.run),
        Command("export", export.add_parser, run=export.run),
        Command("embed", embed.add_parser, run=embed.run),
        Command("demo", demo.add_parser, run=demo.run),
    )
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser (LightningCLI commands are listed here, parsed there).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="geossl",
        description="Geography-aware self-supervised learning for satellite and aerial imagery.",
    )
    parser.add_argument("--version", action="version", version=f"geossl {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of its one line (also GEOSSL_DEBUG=1)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}"
    )
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def _run(argv: list[str]) -> int:
    """Dispatch a command; returns the exit code."""
    command = COMMANDS.get(argv[0]) if argv else None
    if command is not None and command.run_raw is not None:
        command.run_raw(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    run = COMMANDS[args.command].run
    if run is not None:  # always: a command without run_raw has run
        run(args)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``geossl`` command line.

    An error that is the user's to fix prints one line, ``geossl: error: ...``, and exits with 2
    ([`user_error_line`][geossl.cli.user_errors.user_error_line]); ``--debug`` before the
    subcommand (or ``GEOSSL_DEBUG=1``) shows its traceback instead.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("GEOSSL_DEBUG"))
    while args and args[0] == "--debug":  # before the subcommand, whose flags are its own
        debug = True
        args.pop(0)
    try:
        code = _run(args)
    except Exception as error:
        line = None if debug else user_error_line(error)
        if line is None:
            raise
        print(f"geossl: error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)
