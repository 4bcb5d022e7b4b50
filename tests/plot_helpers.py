"""What the tests ask of a picture that people look at."""

from pathlib import Path

import numpy as np
from PIL import Image


def assert_readable_png(path: Path, *, min_width: int = 800, min_height: int = 400) -> None:
    """A real PNG, a screenful, and not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert width >= min_width, (width, height)
    assert height >= min_height, (width, height)
    assert pixels.std() > 5
