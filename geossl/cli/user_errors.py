"""The one line ``geossl`` prints for an error that is the user's to fix, and when it applies.

[`user_error_line`][geossl.cli.user_errors.user_error_line] is the one home of that mapping:
``geossl`` prints its line as ``geossl: error: LINE`` and exits with 2; for any other error
(a bug) it returns None and the traceback shows. ``geossl --debug`` (or ``GEOSSL_DEBUG=1``)
shows the traceback of user errors too. Standard library and PyYAML only, so that ``geossl
--help`` stays fast. docs/errors.md lists every case with its line and what to do.
"""

import argparse
import errno
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from geossl.errors import NonFiniteLossError

__all__ = [
    "USER_ERRORS",
    "argument_error_line",
    "check_config_files",
    "one_line_message",
    "os_error_line",
    "user_error_line",
]

#: Errors that are the user's to fix whatever they say (bad data, bad config value, a bad
#: checkpoint: geossl's `CheckpointError` is a ValueError): their first line names the problem.
USER_ERRORS: tuple[type[Exception], ...] = (
    FileNotFoundError,
    FileExistsError,
    ValueError,
    NonFiniteLossError,
)

#: OSErrors of writing outputs (or reading inputs) that the user fixes: errno -> what to do.
_OS_ADVICE: dict[int, str] = {
    errno.EACCES: "permission denied: write to a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted: write to a folder you may write to",
    errno.EROFS: "read-only file system: write the output somewhere else",
    errno.ENOSPC: "no space left on the device: free some space or write somewhere else",
    errno.EDQUOT: "disk quota exceeded: free some space or write somewhere else",
    errno.EISDIR: "is a folder, where a file is expected",
    errno.ENOTDIR: "a part of the path is a file, where a folder is expected",
    errno.ENAMETOOLONG: "file name too long",
}

#: How jsonargparse reports a class of a subclass-mode section (``model:``/``data:`` with a
#: ``class_path``) whose constructor raised: the constructor's message is one of the listed errors.
_UNION_ERROR = "Does not validate against any of the Union subtypes"

_PARSER_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS_PATH_PROBLEM = "- Problem with given class_path"
_EXPECTED = re.compile(r"-?\s*Expected an? (.+?)(?:\. Got value: (.*))?$")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_CLASS = re.compile(r"<class '([\w.]+)'>")
_TIP = "--help lists every option with its type"


def _type_name(text: str) -> str:
    """``int`` for ``<class 'int'>``, ``null`` for NoneType, the choices of a ``Literal``."""
    text = text.strip()
    if named := _CLASS.fullmatch(text):
        name = named.group(1).rpartition(".")[2]
        return "null" if name == "NoneType" else name
    if text.startswith("typing.Literal[") and text.endswith("]"):
        return "one of " + text[len("typing.Literal[") : -1]
    return text


def _split_types(listing: str) -> list[str]:
    """The items of jsonargparse's ``[A, B[C, D], E]`` (commas inside brackets kept)."""
    items, depth, current = [], 0, ""
    for char in listing.strip().removeprefix("[").removesuffix("]"):
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [_type_name(item) for item in [*items, current] if item.strip()]


def one_line_message(error: BaseException) -> str:
    """The one line a user sees for ``error``: its first line, or the constructor's own message.

    Args:
        error: The exception.

    Returns:
        The line to print after ``geossl: error:``.

    Examples:
        >>> one_line_message(ValueError("data.root: no such folder" + chr(10) + "more detail"))
        'data.root: no such folder'
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


def argument_error_line(message: str) -> str:
    """One line for a jsonargparse parsing error: the option, the value and the expected type.

    jsonargparse nests the error of an option inside its section (``data`` with its
    ``class_path``) and lists every type of a union: 79 lines for ``--data.batch_size abc``.
    This follows the nesting down to the option that failed.

    Args:
        message: the ``ArgumentError``'s text.

    Returns:
        The line that names the option, e.g. ``--data.batch_size: expected int, got 'abc'``
        for a bad value or ``--data.X: no such option`` for an unknown one; else the first line.

    Examples:
        >>> nested = ['Parser key "data":', "- Problem with given class_path 'X':",
        ...           'Parser key "batch_size":', "Expected a <class 'int'>. Got value: abc"]
        >>> argument_error_line(chr(10).join(nested))
        "--data.batch_size: expected int, got 'abc' (--help lists every option with its type)"
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    keys: list[str] = []
    i = 0
    while i < len(lines):
        if key := _PARSER_KEY.match(lines[i]):
            if not keys or keys[-1] != key.group(1):  # jsonargparse repeats some keys
                keys.append(key.group(1))
            if lines[i][key.end() :].strip():  # the reason on the key's line
                lines[i] = lines[i][key.end() :].strip()
                break
        elif lines[i].startswith(_UNION_ERROR):
            rest = lines[i:]
            nested = next((j for j, x in enumerate(rest) if x.startswith(_CLASS_PATH_PROBLEM)), -1)
            if nested < 0:  # a plain union (int | None): its types and the value given
                types = next((x[len("Subtypes:") :] for x in rest if x.startswith("Subtypes:")), "")
                value = next(
                    (x[len("Given value:") :] for x in rest if x.startswith("Given value:")), ""
                )
                return _bad_value(keys, value.strip(), _split_types(types))
            i += nested
        elif not lines[i].startswith(_CLASS_PATH_PROBLEM):
            break
        i += 1
    option = "--" + ".".join(keys) if keys else ""
    reason = lines[i] if i < len(lines) else (lines[0] if lines else "bad arguments")
    if expected := _EXPECTED.match(reason):
        return _bad_value(keys, (expected.group(2) or "").strip(), [_type_name(expected.group(1))])
    if unknown := _NOT_ACCEPTED.search(reason):
        return f"{option}.{unknown.group(1)}: no such option ({_TIP})"
    return f"{option}: {reason}" if option else f"{reason} ({_TIP})"


def _bad_value(keys: Sequence[str], value: str, types: Sequence[str]) -> str:
    """``--KEY: expected TYPE, got 'VALUE' (tip)``."""
    wanted = " or ".join(dict.fromkeys(types)) or "another value"
    got = f", got {value!r}" if value else ""
    return f"--{'.'.join(keys)}: expected {wanted}{got} ({_TIP})"


def os_error_line(error: OSError) -> str | None:
    """One line for an `OSError` the user fixes (permissions, full disk, ...), naming the path.

    Args:
        error: the error.

    Returns:
        The line that names the path, what is wrong and what to do; None for other errors.

    Examples:
        >>> os_error_line(PermissionError(errno.EACCES, "Permission denied", "/out/a.tif"))
        '/out/a.tif: permission denied: write to a folder you may write to, or fix its permissions'
    """
    advice = _OS_ADVICE.get(error.errno) if error.errno is not None else None
    if advice is None:
        return None
    if error.filename is None:  # a write that failed names no file (Lightning's, torch's)
        return f"{advice} (writing an output; geossl --debug shows where)"
    return f"{error.filename}: {advice}"


def user_error_line(error: BaseException) -> str | None:
    """The one line for a user's error, None for a bug (which keeps its traceback).

    Args:
        error: what the command raised.

    Returns:
        The line to print after ``geossl: error:``, or None.

    Examples:
        >>> user_error_line(FileExistsError("out.parquet exists; pass --overwrite"))
        'out.parquet exists; pass --overwrite'
        >>> user_error_line(KeyError("bug")) is None
        True
    """
    if isinstance(error, argparse.ArgumentError):  # jsonargparse's, with exit_on_error=False
        return argument_error_line(str(error))
    if isinstance(error, FileNotFoundError | FileExistsError):
        return one_line_message(error)
    if isinstance(error, OSError):
        return os_error_line(error)
    if isinstance(error, USER_ERRORS):
        return one_line_message(error)
    return None


def _config_files(args: Sequence[str]) -> list[Path]:
    """The files of ``--config FILE`` / ``-c FILE`` / ``--config=FILE`` in ``args``."""
    found: list[str] = []
    items = list(args)
    for i, item in enumerate(items):
        flag, equals, value = item.partition("=")
        if flag not in ("--config", "-c"):
            continue
        if not equals:
            value = items[i + 1] if i + 1 < len(items) else ""
        found.append(value)
    return [Path(value) for value in found if value and Path(value).is_file()]


def check_config_files(args: Sequence[str]) -> None:
    """Refuse a ``--config`` file that is not valid YAML, naming the file and the line.

    jsonargparse reports a YAML syntax error of a ``--config`` file without naming the file.
    Only the syntax is checked (the file is parsed, nothing is built): the values are
    LightningCLI's to check.

    Args:
        args: the LightningCLI arguments.

    Raises:
        ValueError: ``FILE:LINE:COLUMN: not valid YAML: PROBLEM``.

    Examples:
        >>> import tempfile
        >>> config = Path(tempfile.mkdtemp()) / "run.yaml"
        >>> _ = config.write_text("trainer:" + chr(10) + "  max_epochs: [1" + chr(10))
        >>> try:
        ...     check_config_files(["--config", str(config)])
        ... except ValueError as error:
        ...     print(str(error).replace(str(config), "run.yaml"))
        run.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>' (fix it there)
    """
    for path in _config_files(args):
        try:
            list(yaml.compose_all(path.read_text(), Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            problem = error.problem or error.context or "syntax error"
            raise ValueError(f"{where}: not valid YAML: {problem} (fix it there)") from error
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}".splitlines()[0]) from error
