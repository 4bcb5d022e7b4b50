"""The manifest of an fMoW release and the selection of the files to download.

Each release of the public SpaceNet bucket has a ``manifest.json.bz2`` listing its files:
[`parse_manifest`][geossl.datasets.fmow.manifest.parse_manifest] reads it into
[`ManifestEntry`][geossl.datasets.fmow.manifest.ManifestEntry] rows;
[`select_files`][geossl.datasets.fmow.manifest.select_files] picks those of the requested splits,
products and first locations.
"""

from __future__ import annotations

import bz2
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from geossl.datasets.fmow.constants import FMOW_ANONYMOUS_SPLITS

__all__ = ["ManifestEntry", "ManifestError", "parse_manifest", "select_files"]


class ManifestError(ValueError):
    """The manifest is not a (bz2-compressed) JSON list of paths; the message is one line."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the manifest.

    Attributes:
        path: the path relative to the subset's root
            (``train/airport/airport_0/airport_0_0_rgb.jpg``).
        size: the size in bytes when the manifest gives it, else ``None``.
    """

    path: str
    size: int | None = None


_PATH_KEYS = ("path", "key", "Key", "name", "file")


_SIZE_KEYS = ("size", "Size", "bytes", "content_length", "ContentLength")


def _entry_from_object(obj: Any, where: str) -> ManifestEntry:
    if isinstance(obj, str):
        return ManifestEntry(obj)
    if isinstance(obj, dict):
        path = next((obj[k] for k in _PATH_KEYS if isinstance(obj.get(k), str)), None)
        if path is None:
            raise ManifestError(f"{where}: manifest entry without a path: {str(obj)[:120]}")
        size = next((obj[k] for k in _SIZE_KEYS if k in obj), None)
        if size is not None:
            try:
                size = int(size)
            except (TypeError, ValueError):
                raise ManifestError(f"{where}: bad size {size!r} for {path}") from None
            if size < 0:
                raise ManifestError(f"{where}: negative size {size} for {path}")
        return ManifestEntry(path, size)
    raise ManifestError(f"{where}: manifest entry is neither a path nor an object: {obj!r:.120}")


def parse_manifest(
    data: bytes, subset: str = "rgb", where: str = "manifest"
) -> list[ManifestEntry]:
    """Parse a manifest: bz2-compressed (or plain) JSON.

    Accepted shapes: a list of paths; a list of objects with a path
    (``path``/``key``/``Key``/``name``) and an optional size (``size``/``Size``/``bytes``); an
    object ``{path: size}``; or an object whose ``files``/``objects``/``Contents`` entry is such a
    list. A leading ``fmow-{subset}/`` is stripped.

    Args:
        data: the file's bytes.
        subset: ``"rgb"`` or ``"full"``; selects the prefix to strip.
        where: the file or URL named in error messages.

    Returns:
        The entries, duplicates removed, in manifest order.

    Raises:
        ManifestError: when the data is not a manifest.
    """
    try:
        raw = bz2.decompress(data) if data[:3] == b"BZh" else data
        obj = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise ManifestError(f"{where}: not a valid manifest.json.bz2 ({exc})") from None
    items: Any = obj
    if isinstance(obj, dict):
        key = next((k for k in ("files", "objects", "Contents") if k in obj), None)
        if key is not None:
            items = obj[key]
            if not isinstance(items, list):
                raise ManifestError(f"{where}: manifest {key!r} is not a list")
        else:
            items = [{"path": k, "size": v} for k, v in obj.items()]
    if not isinstance(items, list):
        raise ManifestError(f"{where}: manifest is not a JSON list but {type(items).__name__}")
    prefix = f"fmow-{subset}/"
    seen: set[str] = set()
    out: list[ManifestEntry] = []
    for item in items:
        entry = _entry_from_object(item, where)
        path = entry.path.lstrip("/")
        path = path.removeprefix(prefix)
        if path in seen or not path or path.endswith("/"):
            continue
        seen.add(path)
        out.append(ManifestEntry(path, entry.size))
    return out


def _natural_key(text: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _product_of(name: str) -> str | None:
    stem = name.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[1] if "_" in stem else None


def select_files(
    entries: Sequence[ManifestEntry],
    splits: Sequence[str],
    products: Sequence[str],
    max_locations: int | None = None,
    mappings: dict[str, list[dict[str, str]]] | None = None,
) -> list[ManifestEntry]:
    """Keep the manifest entries of ``splits`` and ``products``, and the first locations.

    Train/val locations are ``{split}/{category}/{category}_{loc}``, test/seq locations
    ``{split}/{id}``; "first" is natural sort order (``airport_2`` before ``airport_10``). Test/seq
    also bring ``{split}_gt_mapping.json`` and the ``{split}_gt/`` JSONs: with ``max_locations``,
    those of the kept ids when ``mappings[split]`` (the parsed mapping) is given, else the first
    ``max_locations`` ground-truth folders.

    Args:
        entries: the manifest.
        splits: splits among `FMOW_SPLITS`.
        products: products to keep (``rgb``, ``msrgb``, ``ms``); their ``.json`` come along.
        max_locations: per split, keep only the first N locations; ``None`` keeps all.
        mappings: parsed ``{split}_gt_mapping.json`` lists, by split.

    Returns:
        The selected entries, sorted by path.
    """
    wanted_products = set(products)
    by_loc: dict[tuple[str, str], list[ManifestEntry]] = {}
    extra: list[ManifestEntry] = []
    for e in entries:
        parts = e.path.split("/")
        top = parts[0]
        if len(parts) == 1:
            if top.endswith("_gt_mapping.json") and top[: -len("_gt_mapping.json")] in splits:
                extra.append(e)
            continue
        split, kind = (top[:-3], "gt") if top.endswith("_gt") else (top, "img")
        if split not in splits or _product_of(parts[-1]) not in wanted_products:
            continue
        depth = 3 if (kind == "gt" or split not in FMOW_ANONYMOUS_SPLITS) else 2
        if len(parts) <= depth:
            continue
        by_loc.setdefault((kind, "/".join(parts[:depth])), []).append(e)

    keep: set[str] = set()
    for split in splits:
        img_locs = sorted(
            (loc for kind, loc in by_loc if kind == "img" and loc.split("/")[0] == split),
            key=_natural_key,
        )
        gt_locs = sorted(
            (loc for kind, loc in by_loc if kind == "gt" and loc.split("/")[0] == f"{split}_gt"),
            key=_natural_key,
        )
        if max_locations is not None:
            img_locs = img_locs[:max_locations]
            mapping = (mappings or {}).get(split)
            if mapping is not None:
                kept = set(img_locs)
                gt_wanted = {m.get("input") for m in mapping if m.get("output") in kept}
                gt_locs = [g for g in gt_locs if g in gt_wanted]
            else:
                gt_locs = gt_locs[:max_locations]
        keep.update(f"img|{loc}" for loc in img_locs)
        keep.update(f"gt|{loc}" for loc in gt_locs)

    out = list(extra)
    for (kind, loc), files in by_loc.items():
        if f"{kind}|{loc}" in keep:
            out.extend(files)
    return sorted(out, key=lambda e: e.path)


def _safe_relative(path: str) -> bool:
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and "\\" not in path and bool(p.parts)
