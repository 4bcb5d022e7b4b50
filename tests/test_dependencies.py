"""pyproject's dependencies are exactly what geossl imports (plus three documented run-time needs).

A package that geossl imports but does not declare works wherever a test tool or another
package happens to pull it in, and breaks a bare ``pip install``; a declared package that
nothing imports is dead weight. Both are checked here from the source, without importing it.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Declared but never imported by geossl, and why each is needed.
NEEDED_WITHOUT_IMPORT = {
    "requests": "torchgeo 0.8.1 imports it at import time but declares it only in an extra",
    "pycocotools": "torchmetrics' MeanAveragePrecision (xView AP50) computes through it",
    "jsonargparse": "LightningCLI parses with jsonargparse[signatures]",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    """Normalised distribution name -> requirement string, from ``[project] dependencies``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {}
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert match is not None, requirement
        names[_normalise(match.group(0))] = requirement
    return names


def _extras() -> dict[str, str]:
    """Normalised distribution name -> extra, from the optional dependencies but ``test``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {}
    for extra, requirements in project["optional-dependencies"].items():
        if extra == "test":
            continue
        for requirement in requirements:
            match = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert match is not None, requirement
            names[_normalise(match.group(0))] = extra
    return names


def _module_level_imports() -> set[str]:
    """Top-level third-party modules that some geossl file imports at module level."""
    found: set[str] = set()
    for path in sorted((REPO / "geossl").rglob("*.py")):
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _imported_modules() -> dict[str, str]:
    """Top-level third-party module -> the first geossl file that imports it."""
    own = {"geossl"}
    found: dict[str, str] = {}
    for path in sorted((REPO / "geossl").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared().keys() | _extras().keys()
    missing = {}
    for module, where in _imported_modules().items():
        names = {_normalise(d) for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = where
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_declared_package_is_imported_or_explained() -> None:
    distributions = importlib.metadata.packages_distributions()
    imported = {_normalise(d) for m in _imported_modules() for d in distributions.get(m, [m])}
    unused = set(_declared()) - imported - set(NEEDED_WITHOUT_IMPORT)
    assert not unused, f"declared but nothing in geossl/ imports them: {sorted(unused)}"
    for name in NEEDED_WITHOUT_IMPORT:
        assert name not in imported, f"{name} is imported now: drop it from NEEDED_WITHOUT_IMPORT"


def test_optional_packages_are_imported_lazily() -> None:
    # An extra (pystac-client for STAC API searches) is imported inside the function that needs
    # it, never at module level: a bare install must import every geossl module.
    extras = _extras()
    eager = {
        module
        for module in _module_level_imports() - set(sys.stdlib_module_names)
        if _normalise(module) in extras
    }
    assert not eager, f"optional packages imported at module level: {sorted(eager)}"
    assert "pystac-client" in extras


def test_torchgeo_is_the_tested_range() -> None:
    requirement = _declared()["torchgeo"]
    # GeoSlice (geossl.datasets.rasters) is new in torchgeo 0.8; 0.9+ is untested.
    assert ">=0.8.1" in requirement
    assert "<0.9" in requirement


def test_the_import_scan_sees_the_imports() -> None:
    # The scan itself: it must find the packages that geossl certainly imports, including
    # function-level imports (``import torch`` inside a CLI command) and submodule imports.
    modules = _imported_modules()
    assert {"torch", "lightning", "torchgeo", "rasterio", "yaml", "safetensors"} <= set(modules)
    assert "os" not in modules
    assert "geossl" not in modules
