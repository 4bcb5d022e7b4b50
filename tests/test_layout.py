"""The package layout: no import cycle between geossl's packages (imports inside functions too)."""

from collections import defaultdict

from benchmarks import import_graph


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in import_graph.ROOT.rglob("*.py"):
        source = import_graph.package_of(import_graph.module_name(path))
        for target in import_graph.imports_of(path):
            dest = import_graph.package_of(target)
            if "geossl" not in (source, dest) and source != dest:
                graph[source].add(dest)
    assert import_graph.find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {
        "models": {"weights"},
        "weights": {"trainers"},
        "trainers": {"models"},
        "cli": {"models"},
    }
    assert import_graph.find_cycles(graph) == [["models", "trainers", "weights"]]
