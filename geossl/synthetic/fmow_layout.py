"""The file layout of an fMoW sample: which location goes where, and the files that record it.

`_plan_locations` gives every location its split, category, ``{loc}`` number (and 7-digit id
in the anonymous ``test`` / ``seq`` splits), region and seed; `_LocationFolders` names its
folders; `_SampleFiles` writes the files under the sample's root, the ground-truth copies
of the anonymous splits, the ``{split}_gt_mapping.json`` files and the manifest.
"""

from __future__ import annotations

import bz2
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geossl.datasets.fmow.constants import FMOW_ANONYMOUS_SPLITS, FMOW_SPLITS
from geossl.synthetic.common import _split_counts, write_geotiff
from geossl.synthetic.fmow_scene import _REGIONS, _Region
from geossl.utils.io import atomic_write_bytes


@dataclass
class _Location:
    index: int
    split: str
    category: str
    loc: int  # per category per split number (the ``{loc}`` of ``{category}_{loc}``)
    anon_id: int  # 7-digit id for test/seq, -1 otherwise
    region: _Region
    lat: float
    lon: float
    seed: int


@dataclass(frozen=True)
class _LocationFolders:
    """Where the files of one location go, relative to the sample's root."""

    images: str  # the folder of the images and their JSONs
    stem: str  # file names start ``{stem}_{t}_``
    ground_truth: str  # the ``{split}_gt`` folder of an anonymous split, "" otherwise

    @classmethod
    def of(cls, location: _Location) -> _LocationFolders:
        """The folders of ``location`` (``test`` / ``seq`` ones are named by their 7-digit id)."""
        named = f"{location.category}/{location.category}_{location.loc}"
        if location.split in FMOW_ANONYMOUS_SPLITS:
            anon = f"{location.anon_id:07d}"
            return cls(f"{location.split}/{anon}", anon, f"{location.split}_gt/{named}")
        return cls(f"{location.split}/{named}", f"{location.category}_{location.loc}", "")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


class _SampleFiles:
    """The files of one sample under ``root``: written atomically, listed for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[str] = []
        self.mappings: dict[str, list[dict[str, str]]] = {s: [] for s in FMOW_ANONYMOUS_SPLITS}
        self._made_dirs: set[Path] = set()

    def add_location(self, location: _Location, folders: _LocationFolders) -> None:
        """Record the ``{split}_gt_mapping.json`` entry of a location of an anonymous split."""
        if folders.ground_truth:
            entry = {"input": folders.ground_truth, "output": folders.images}
            self.mappings[location.split].append(entry)

    def write(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``root / rel`` (creating its folder) and list it."""
        path = self.root / rel
        if path.parent not in self._made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path.parent)
        atomic_write_bytes(path, data)
        self.written.append(rel)

    def write_geotiff(self, rel: str, bands: npt.NDArray[Any], epsg: int, transform: Any) -> None:
        """Write a GeoTIFF to ``root / rel`` (creating its folder) and list it."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_geotiff(path, bands, epsg, transform)
        self.written.append(rel)

    def write_image_json(
        self,
        location: _Location,
        folders: _LocationFolders,
        name: str,
        meta: Mapping[str, Any],
    ) -> None:
        """Write the JSON of image ``{name}.{ext}`` (``name``: ``{stem}_{t}_{product}``).

        In an anonymous split the image folder gets the JSON without categories and the
        ``{split}_gt`` folder the full one, named and pointing at the category's file names.
        """
        if not folders.ground_truth:
            self.write(f"{folders.images}/{name}.json", _json_bytes(meta))
            return
        anon = dict(meta)
        anon["bounding_boxes"] = [{"box": b["box"], "ID": b["ID"]} for b in meta["bounding_boxes"]]
        self.write(f"{folders.images}/{name}.json", _json_bytes(anon))
        gt_meta = dict(meta)
        gt_name = f"{location.category}_{location.loc}" + name[len(folders.stem) :]
        gt_meta["img_filename"] = gt_name + str(meta["img_filename"])[len(name) :]
        self.write(f"{folders.ground_truth}/{gt_name}.json", _json_bytes(gt_meta))

    def finish(self) -> list[str]:
        """Write the ground-truth mappings and the manifest; return the manifest (sorted)."""
        for split, entries in self.mappings.items():
            if entries:
                entries.sort(key=lambda e: e["output"])
                self.write(f"{split}_gt_mapping.json", _json_bytes(entries))
        manifest = sorted(self.written)
        atomic_write_bytes(self.root / "manifest.json.bz2", bz2.compress(_json_bytes(manifest)))
        return manifest


def _plan_locations(
    locations: int,
    rng: np.random.Generator,
    fractions: Mapping[str, float],
    categories: Sequence[str],
) -> list[_Location]:
    counts = _split_counts(locations, fractions)
    splits = np.array([s for s in FMOW_SPLITS for _ in range(counts[s])])
    splits = splits[rng.permutation(locations)]
    regions = (np.arange(locations) % len(_REGIONS))[rng.permutation(locations)]
    per_cat_split: dict[tuple[str, str], int] = {}
    anon_ids = {s: rng.permutation(counts[s]).tolist() for s in FMOW_ANONYMOUS_SPLITS}
    anon_next = dict.fromkeys(FMOW_ANONYMOUS_SPLITS, 0)
    out: list[_Location] = []
    for i in range(locations):
        split = str(splits[i])
        category = categories[i % len(categories)]
        loc = per_cat_split.get((split, category), 0)
        per_cat_split[(split, category)] = loc + 1
        anon_id = -1
        if split in anon_ids:
            anon_id = int(anon_ids[split][anon_next[split]])
            anon_next[split] += 1
        region = _REGIONS[int(regions[i])]
        lat = region.lat + region.lat_spread * float(rng.uniform(-1.0, 1.0))
        lon = region.lon + region.lon_spread * float(rng.uniform(-1.0, 1.0))
        lon = (lon + 180.0) % 360.0 - 180.0
        # keep a ~1 km footprint from straddling the antimeridian
        lon = max(-179.98, min(179.98, lon))
        out.append(
            _Location(
                index=i,
                split=split,
                category=category,
                loc=loc,
                anon_id=anon_id,
                region=region,
                lat=lat,
                lon=lon,
                seed=int(rng.integers(0, 2**63 - 1)),
            )
        )
    return out
