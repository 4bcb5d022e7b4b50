"""The usage examples in geossl's docstrings run, and show what they say."""

import doctest
import importlib
import pkgutil

import pytest

import geossl


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(geossl.__path__, "geossl."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
