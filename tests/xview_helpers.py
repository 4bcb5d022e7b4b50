"""Seeded xView samples for the xView tests: one per session and set of arguments."""

from typing import Any

import pytest

from geossl.synthetic.xview import XViewSampleSummary, generate_xview_sample

#: Small enough for quick tests, big enough for a few 128 px chips per image.
TINY_SAMPLE: dict[str, Any] = {"images": 10, "image_size": 256, "seed": 0}

_SHARED: dict[tuple[tuple[str, Any], ...], XViewSampleSummary] = {}


def shared_xview_sample(
    tmp_path_factory: pytest.TempPathFactory, **kwargs: Any
) -> XViewSampleSummary:
    """:func:`generate_xview_sample` once per session and arguments (tests only read it; the
    reader's cache folder is written into it)."""
    args = {**TINY_SAMPLE, **kwargs}
    key = tuple(sorted(args.items()))
    if key not in _SHARED:
        _SHARED[key] = generate_xview_sample(tmp_path_factory.mktemp("xview") / "xview", **args)
    return _SHARED[key]
