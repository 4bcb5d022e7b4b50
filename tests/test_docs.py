"""The MkDocs site builds with --strict (broken links and missing API objects fail it)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which("mkdocs") is None, reason="mkdocs is not installed (pip install -e '.[test]')"
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cli_page = (tmp_path / "site" / "cli" / "index.html").read_text()
    # The CLI reference is generated from the parsers: the help text of each command is in the page.
    assert "--locations" in cli_page
    assert "--max-locations" in cli_page
