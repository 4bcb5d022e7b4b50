"""A seeded scene folder in the layout ``geossl probe`` reads (``labels.csv`` + JPEGs).

Each class is a texture family (stripes, checks, blobs, ...) with its own colour; every image
draws its phase, orientation, scale and noise from the seed, so a good feature extractor
separates the classes and a poor one does not. The layout is SIRI-WHU's as
``../shared/data/real/siri_whu`` holds it: ``images/{class}/{NNNN}.jpg`` and
``labels.csv`` (``path,class_name,class_idx``, classes in alphabetical order).

Examples:
    >>> import tempfile
    >>> from geossl.datasets.scenes import LabelledScenes
    >>> root = generate_scene_sample(tempfile.mkdtemp() + "/scenes", classes=3, per_class=4)
    >>> scenes = LabelledScenes(root)
    >>> len(scenes), scenes.classes
    (12, ('checks', 'rings', 'stripes'))
"""

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from geossl.synthetic.common import prepare_sample_folder
from geossl.utils.io import atomic_write_bytes

__all__ = ["SCENE_TEXTURES", "generate_scene_sample"]

#: The texture families, in the order ``classes=N`` takes them.
SCENE_TEXTURES = ("stripes", "checks", "rings", "blobs", "gradient", "dots")

_COLOURS = np.array(
    [
        [0.80, 0.35, 0.20],
        [0.25, 0.60, 0.30],
        [0.20, 0.40, 0.80],
        [0.70, 0.70, 0.25],
        [0.55, 0.30, 0.65],
        [0.30, 0.70, 0.70],
    ]
)


def _texture(name: str, size: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A ``[size, size]`` pattern in ``[0, 1]`` of the family ``name``."""
    grid: npt.NDArray[np.float64] = np.mgrid[0:size, 0:size].astype(np.float64) / size
    yy, xx = grid[0], grid[1]
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    freq = rng.uniform(4, 8)
    phase = rng.uniform(0, 2 * np.pi)
    pattern: object
    if name == "stripes":
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + phase)
    elif name == "checks":
        pattern = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v))
    elif name == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * freq * np.hypot(xx - cx, yy - cy) + phase)
    elif name == "blobs":
        field = np.zeros((size, size))
        for _ in range(6):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.15)
            field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))
        pattern = np.clip(field, 0, 1)
    elif name == "gradient":
        pattern = np.clip(u * rng.uniform(0.8, 1.2), 0, 1)
    else:  # dots: a regular grid of small discs
        cell = 1 / freq
        du = np.mod(u + phase / (2 * np.pi), cell) / cell - 0.5
        dv = np.mod(v, cell) / cell - 0.5
        pattern = np.hypot(du, dv) < 0.25
    return np.asarray(pattern, dtype=np.float64)


def generate_scene_sample(
    root: str | os.PathLike[str],
    *,
    classes: int = 4,
    per_class: int = 10,
    size: int = 48,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a scene folder of ``classes x per_class`` JPEGs with its ``labels.csv``.

    Args:
        root: the folder to create.
        classes: number of classes (2 to 6), the first of ``SCENE_TEXTURES``.
        per_class: images per class (>= 3: the probe splits each class in three).
        size: image side in pixels.
        seed: the seed of every random draw.
        overwrite: replace the generator's files in a non-empty folder.

    Returns:
        The folder.

    Raises:
        ValueError: for an out-of-range argument.
        FileExistsError: for a non-empty folder without ``overwrite``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     root = generate_scene_sample(folder, classes=2, per_class=3, size=8)
        ...     print((root / "labels.csv").read_text().splitlines()[:2])
        ['path,class_name,class_idx', 'images/checks/0000.jpg,checks,0']
    """
    if not 2 <= classes <= len(SCENE_TEXTURES):
        raise ValueError(f"classes must be in 2..{len(SCENE_TEXTURES)}, got {classes}")
    if per_class < 3 or size < 8:
        raise ValueError(f"per_class >= 3 and size >= 8 are needed, got {per_class}, {size}")
    folder = prepare_sample_folder(root, overwrite, ["images", "labels.csv"])
    rng = np.random.default_rng(seed)
    names = sorted(SCENE_TEXTURES[:classes])
    rows = ["path,class_name,class_idx"]
    for idx, name in enumerate(names):
        family = SCENE_TEXTURES.index(name)
        (folder / "images" / name).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            pattern = _texture(name, size, rng)
            colour = _COLOURS[family] * rng.uniform(0.85, 1.15, 3)
            pixels = pattern[..., None] * colour + rng.normal(0, 0.05, (size, size, 3))
            image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))
            path = Path("images") / name / f"{number:04d}.jpg"
            image.save(folder / path, quality=92)
            rows.append(f"{path.as_posix()},{name},{idx}")
    atomic_write_bytes(folder / "labels.csv", ("\n".join(rows) + "\n").encode())
    return folder
