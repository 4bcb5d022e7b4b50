"""MkDocs hook: put the live ``--help`` of every ``geossl`` command into the CLI reference.

The page holds markers like ``<!-- geossl-help: datasets sample -->``; each is replaced at build
time by that command's
argparse help, so the reference cannot drift from the code.
"""

import argparse
import re
from typing import Any

from geossl.cli import build_parser

_MARKER = re.compile(r"<!-- geossl-help:\s*(?P<command>[\w ]*?)\s*-->")


def _find_parser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """Walk the sub-parsers of ``parser`` along ``words``."""
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            raise ValueError(
                f"the CLI reference names an unknown command: geossl {' '.join(words)}"
            )
        parser = actions[0].choices[word]
    return parser


def _help_text(command: str) -> str:
    """Return the help text of ``geossl COMMAND`` as a fenced block."""
    parser = _find_parser(build_parser(), command.split())
    return "```text\n" + parser.format_help().rstrip() + "\n```"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the help markers of a page."""
    return _MARKER.sub(lambda m: _help_text(m.group("command")), markdown)
