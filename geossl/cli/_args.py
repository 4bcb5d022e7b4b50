"""Argument helpers shared by the ``geossl`` subcommands (standard library only)."""

from collections.abc import Sequence

__all__ = ["split_flag", "wants_help"]


def split_flag(
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

    Examples:
        >>> split_flag(["--dataset", "fmow", "--data.root", "x"], "--dataset")
        ('fmow', ['--data.root', 'x'])
        >>> split_flag(["--dataset=rasters"], "--dataset")
        ('rasters', [])
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


def wants_help(argv: Sequence[str]) -> bool:
    """Whether the arguments ask for help (``-h`` or ``--help``).

    Args:
        argv: The arguments after the command.

    Returns:
        True if ``-h`` or ``--help`` is among them.
    """
    return "-h" in argv or "--help" in argv
