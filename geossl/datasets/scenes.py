r"""A folder of labelled scenes (``labels.csv``): what ``geossl probe`` evaluates weights on.

Layout: ``{root}/labels.csv`` with the header ``path,class_name,class_idx`` and one row per
image, ``path`` relative to ``root`` (JPEG, PNG or GeoTIFF). ``class_idx`` runs over
``0 .. K-1`` and names the same class on every row; the real SIRI-WHU scene set
(``../shared/data/real/siri_whu``) is in this layout. Every problem is a one-line error that
names the file (and the CSV line).

Examples:
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png"):
    ...     Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name)
    >>> _ = (root / "labels.csv").write_text(
    ...     "path,class_name,class_idx\na.png,water,1\nb.png,field,0\n")
    >>> scenes = LabelledScenes(root)
    >>> first = scenes[0]
    >>> scenes.classes, len(scenes), first["image"].shape, int(first["label"])
    (('field', 'water'), 2, torch.Size([3, 8, 8]), 1)
"""

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError

__all__ = [
    "LABELS_FILE",
    "SPLIT_FRACTIONS",
    "LabelledScenes",
    "read_scene_image",
    "read_scene_labels",
    "stratified_split",
]

#: The labels file of a scene folder.
LABELS_FILE = "labels.csv"

#: Share of each class in train / val / test (``geossl probe``'s split of a scene folder).
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

_COLUMNS = ("path", "class_name", "class_idx")
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class _SceneLabels:
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]


def read_scene_labels(root: str | os.PathLike[str]) -> tuple[list[str], list[int], list[str]]:
    """Read and check ``{root}/labels.csv``.

    Args:
        root: the scene folder.

    Returns:
        ``(paths, labels, classes)``: image paths relative to ``root``, their class indexes,
        and the class names by index.

    Raises:
        DatasetNotFoundError: if ``root`` or its ``labels.csv`` does not exist.
        BadDatasetError: for a wrong header, an empty file, a malformed or inconsistent row
            (``labels.csv:LINE``: a class index that is not an integer, a name with two indexes
            or an index with two names, indexes that skip a value), a missing image, or fewer
            than two classes.
    """
    labels = _read_labels(Path(root))
    return list(labels.paths), list(labels.labels), list(labels.classes)


def _read_labels(root: Path) -> _SceneLabels:
    csv_path = root / LABELS_FILE
    if not root.is_dir():
        raise DatasetNotFoundError(root, "scene folder does not exist", "scenes")
    if not csv_path.is_file():
        raise DatasetNotFoundError(root, f"no {LABELS_FILE} in the scene folder", "scenes")
    with csv_path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _COLUMNS:
            raise BadDatasetError(
                csv_path, f"the header must be {','.join(_COLUMNS)}, got {header}"
            )
        paths: list[str] = []
        labels: list[int] = []
        name_of: dict[int, tuple[str, int]] = {}
        idx_of: dict[str, tuple[int, int]] = {}
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{csv_path}:{line}"
            if len(row) != 3:
                raise BadDatasetError(
                    where, f"expected 3 columns ({','.join(_COLUMNS)}), got {row}"
                )
            path, name, text = (cell.strip() for cell in row)
            try:
                idx = int(text)
            except ValueError:
                raise BadDatasetError(
                    where, f"class_idx must be an integer, got {text!r}"
                ) from None
            if not name or idx < 0:
                raise BadDatasetError(where, f"unknown class {name!r} with class_idx {idx}")
            if idx in name_of and name_of[idx][0] != name:
                first, first_line = name_of[idx]
                raise BadDatasetError(
                    where,
                    f"class_idx {idx} is {name!r} here but {first!r} on line {first_line}",
                )
            if name in idx_of and idx_of[name][0] != idx:
                first_idx, first_line = idx_of[name]
                raise BadDatasetError(
                    where,
                    f"class {name!r} has class_idx {idx} here but {first_idx} on line {first_line}",
                )
            name_of.setdefault(idx, (name, line))
            idx_of.setdefault(name, (idx, line))
            if not (root / path).is_file():
                raise BadDatasetError(where, f"image not found: {root / path}")
            paths.append(path)
            labels.append(idx)
    if not paths:
        raise BadDatasetError(csv_path, "no images listed")
    count = max(name_of) + 1
    absent = sorted(set(range(count)) - set(name_of))
    if absent:
        raise BadDatasetError(
            csv_path, f"class_idx must run over 0..{count - 1}; no image has {absent[:5]}"
        )
    if count < 2:
        raise BadDatasetError(csv_path, f"one class only ({name_of[0][0]!r}): nothing to classify")
    classes = tuple(name_of[i][0] for i in range(count))
    return _SceneLabels(tuple(paths), tuple(labels), classes)


def read_scene_image(path: Path) -> Tensor:
    """Read one scene image: ``[C, H, W]``, uint8 for 8-bit files, float32 (raw values) otherwise.

    Args:
        path: a JPEG, PNG (read as RGB) or GeoTIFF (every band).

    Returns:
        The pixels.

    Raises:
        BadDatasetError: if the file cannot be read (one line that names it).
    """
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            import warnings

            import rasterio

            with warnings.catch_warnings():
                # A scene chip needs no georeference to be classified.
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    array = src.read()
        else:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        # rasterio's errors are OSError subclasses; PIL raises OSError for truncated files.
        raise BadDatasetError(path, f"unreadable image ({error})") from None
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.dtype == torch.uint8 else tensor.float()


class LabelledScenes(NonGeoDataset):
    """The images of a scene folder with their class (see the module doc for the layout).

    Samples: ``image`` ``[C, H, W]`` (uint8 for 8-bit files, float32 raw values otherwise;
    images keep their size) and ``label`` ``int64`` scalar.

    Args:
        root: the scene folder (holds ``labels.csv``).

    Raises:
        DatasetNotFoundError: if the folder or its ``labels.csv`` is missing.
        BadDatasetError: for a bad ``labels.csv`` (see ``read_scene_labels``).

    Attributes:
        classes: class names by index.
        labels: the class index of every image, in file order.

    Example:
        >>> import tempfile
        >>> from geossl.synthetic.scenes import generate_scene_sample
        >>> root = generate_scene_sample(tempfile.mkdtemp() + "/scenes", classes=3, per_class=4)
        >>> scenes = LabelledScenes(root)
        >>> first = scenes[0]
        >>> len(scenes), scenes.classes, int(first["label"])
        (12, ('checks', 'rings', 'stripes'), 0)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        found = _read_labels(self.root)
        self.paths = found.paths
        self.labels = found.labels
        self.classes = found.classes

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """The image and label of row ``index``.

        Raises:
            BadDatasetError: if the image cannot be read (names the file).
        """
        return {
            "image": read_scene_image(self.root / self.paths[index]),
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
        }

    def plot(
        self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw a sample (torchgeo's ``plot`` contract).

        Args:
            sample: a sample of this dataset (``prediction`` is shown too when present).
            show_titles: write the class (and the prediction) above the image.
            suptitle: an optional figure title.

        Returns:
            The figure.
        """
        image = sample["image"][:3].float()
        image = image / 255.0 if sample["image"].dtype == torch.uint8 else image
        low, high = image.min(), image.max()
        image = (image - low) / (high - low).clamp(min=1e-12)
        figure = Figure(figsize=(4, 4))
        axes = figure.subplots()
        axes.imshow(image.permute(1, 2, 0).numpy())
        axes.axis("off")
        if show_titles:
            title = f"label: {self.classes[int(sample['label'])]}"
            if "prediction" in sample:
                title += f"\nprediction: {self.classes[int(sample['prediction'])]}"
            axes.set_title(title)
        if suptitle is not None:
            figure.suptitle(suptitle)
        return figure

    def __repr__(self) -> str:
        return (
            f"LabelledScenes({str(self.root)!r}: {len(self)} images, {len(self.classes)} classes)"
        )


def stratified_split(
    labels: Sequence[int], seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, list[int]]:
    """A fixed, seeded split of every class into train / val / test.

    Each class's indexes are shuffled with ``numpy.random.default_rng(seed)`` and cut by
    ``fractions`` (rounded; val and test get at least one image of every class, train the
    rest).

    Args:
        labels: the class of every sample.
        seed: the shuffle's seed.
        fractions: train, val and test shares.

    Returns:
        ``{"train", "val", "test"}`` -> sorted sample indexes.

    Raises:
        ValueError: if a class has fewer than 3 samples (one per split).

    Examples:
        >>> parts = stratified_split([0] * 10 + [1] * 5, seed=0)
        >>> [len(parts[name]) for name in ("train", "val", "test")]
        [9, 3, 3]
    """
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in np.unique(array):
        members = np.flatnonzero(array == label)
        if len(members) < 3:
            raise ValueError(
                f"class {int(label)} has {len(members)} image(s); the probe needs at least 3 per "
                "class (train, val, test)"
            )
        members = members[rng.permutation(len(members))]
        n_val = max(1, round(fractions[1] * len(members)))
        n_test = max(1, round(fractions[2] * len(members)))
        n_val = min(n_val, len(members) - n_test - 1)
        parts["test"] += members[:n_test].tolist()
        parts["val"] += members[n_test : n_test + n_val].tolist()
        parts["train"] += members[n_test + n_val :].tolist()
    return {name: sorted(indexes) for name, indexes in parts.items()}
