"""Locate geossl's YAML presets (``configs/`` in a checkout, ``geossl/_configs`` in a wheel)."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """Return the folder that holds the ``pretrain/*.yaml`` presets.

    A wheel carries them as ``geossl/_configs`` (hatch ``force-include``); a source checkout or an
    editable install
    reads the repository's top-level ``configs/`` folder, so there is a single copy of every preset.

    Returns:
        The configs folder.

    Raises:
        FileNotFoundError: If neither location exists (a broken install).
    """
    for candidate in (_PACKAGE_DIR / "_configs", _PACKAGE_DIR.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"geossl's configs folder is missing next to {_PACKAGE_DIR}: reinstall geossl"
    )


def list_presets(task: str = "pretrain") -> list[str]:
    """List the preset names available for a task (``geossl pretrain --dataset NAME``).

    Args:
        task: The sub-folder of the configs folder.

    Returns:
        Sorted preset names (file stems).
    """
    return sorted(p.stem for p in (config_dir() / task).glob("*.yaml"))


def preset_path(name: str, task: str = "pretrain") -> Path:
    """Return the YAML file of a preset.

    Args:
        name: Preset name, e.g. ``"fmow"``; ``-`` and ``_`` are interchangeable.
        task: The sub-folder of the configs folder.

    Returns:
        The path of ``configs/{task}/{name}.yaml``.

    Raises:
        ValueError: If the preset does not exist; the message lists the valid ones.
    """
    path = config_dir() / task / f"{name}.yaml"
    if not path.is_file():  # fmow-sentinel names configs/pretrain/fmow_sentinel.yaml
        path = config_dir() / task / f"{name.replace('-', '_')}.yaml"
    if not path.is_file():
        valid = ", ".join(list_presets(task)) or "none"
        raise ValueError(f"unknown --dataset {name!r} for {task}: choose one of {valid}")
    return path


def preset_summary(name: str, task: str = "pretrain") -> str:
    """Return the one-line summary of a preset: the text of its first comment line.

    Every preset opens with ``# <what it trains, on what>``; ``geossl pretrain --help`` lists
    them. Reading one line keeps ``--help`` free of YAML parsing and of any torch import.

    Args:
        name: Preset name (``-`` and ``_`` are interchangeable).
        task: The sub-folder of the configs folder.

    Returns:
        The summary, without the leading ``#``; ``""`` when the file does not start with a
        comment.
    """
    with preset_path(name, task).open(encoding="utf-8") as file:
        first = file.readline().strip()
    return first.lstrip("#").strip() if first.startswith("#") else ""
