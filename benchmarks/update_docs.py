"""Render ``docs/benchmarks.md`` from the JSON files in ``benchmarks/results/``.

Every benchmark script writes ``{"machine": {...}, "results": [{...}, ...]}``; each file becomes a
section with the
machine line, a table of the results (every key but ``command``) and the exact commands.

    python -m benchmarks.update_docs
"""

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "benchmarks.md"
ABLATION_PAGE = REPO / "docs" / "ablation.md"
DOWNSTREAM_PAGE = REPO / "docs" / "finetune.md"

INTRO = """# Benchmarks

Figures measured with the scripts in `benchmarks/`; each writes JSON to `benchmarks/results/` and
this page is rendered from those files by `python -m benchmarks.update_docs` (the loss-term ablation
goes to [its own page](ablation.md)). Every figure names the machine it was taken on; GPU figures
are only ever reported with the device name.
"""


def _cell(value: Any) -> str:
    """Format one table cell."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_section(name: str, data: dict[str, Any]) -> str:
    """Render one results file as a Markdown section."""
    lines = [f"## {name.replace('_', ' ')}", ""]
    for key in ("machine", "versions", "dataset", "settings"):
        info = data.get(key, {})
        if info:
            described = ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, list))
            lines += [f"{key.capitalize()}: {described}", ""]
    for note in data.get("notes", []):
        lines += [note, ""]
    results: list[dict[str, Any]] = data.get("results") or data.get("runs") or []
    columns = [c for c in dict.fromkeys(k for row in results for k in row) if c != "command"]
    if results:
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("| " + " | ".join("---" for _ in columns) + " |")
        for row in results:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        lines.append("")
    commands = [row["command"] for row in results if "command" in row]
    top = data.get("command") or []
    commands = [*([top] if isinstance(top, str) else top), *commands]
    if commands:
        lines += ["Commands:", "", "```bash", *dict.fromkeys(commands), "```", ""]
    return "\n".join(lines)


def render_into(page: Path, files: list[Path]) -> None:
    """Replace the results block of a hand-written page with the rendered tables."""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = page.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{page}: the markers {start} / {end} are missing")
    tables = "\n".join(render_section(p.stem, json.loads(p.read_text())) for p in files)
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    page.write_text(f"{before}{start}\n\n{tables}\n{end}{after}")
    print(f"wrote {page}")


NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"


def kept_notes(page: Path) -> str:
    """The hand-written block of ``page`` between the notes markers, markers included ("" if none).

    ``docs/benchmarks.md`` is regenerated from :data:`INTRO` and the results; text written by hand
    between ``<!-- notes:start -->`` and ``<!-- notes:end -->`` (the performance notes) survives.
    """
    text = page.read_text() if page.is_file() else ""
    if NOTES_START not in text or NOTES_END not in text:
        return ""
    body = text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0]
    return f"{NOTES_START}{body}{NOTES_END}\n"


def main() -> None:
    """Write the pages: ablation results into docs/ablation.md, the rest into docs/benchmarks.md."""
    files = sorted(RESULTS.glob("*.json"))
    # The deciding ablation (real labelled scenes, several seeds) first, then the smoke-scale ones.
    ablations = sorted(
        (p for p in files if p.stem.startswith("ablation_")),
        key=lambda p: p.stem != "ablation_siri_whu",
    )
    downstream = [p for p in files if p.stem.startswith("downstream_")]
    sections = [
        render_section(path.stem, json.loads(path.read_text()))
        for path in files
        if path not in ablations and path not in downstream
    ]
    body = (
        "\n".join(sections) if sections else "No results yet: run the scripts in `benchmarks/`.\n"
    )
    notes = kept_notes(PAGE)
    PAGE.write_text(INTRO + "\n" + (notes + "\n" if notes else "") + body)
    print(f"wrote {PAGE}")
    if ablations:
        render_into(ABLATION_PAGE, ablations)
    if downstream:
        render_into(DOWNSTREAM_PAGE, downstream)


if __name__ == "__main__":
    main()
