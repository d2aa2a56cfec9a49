"""edgeseg's modules import each other in one direction: no circles, never from a floor to one above.

The imports are read from the source with `ast` (nothing is executed), including imports inside
functions (lazy imports still tie modules together); imports under `if TYPE_CHECKING:` are left
out. Not edges: the implicit import of a package's `__init__` by its submodules, and modules a
registry names by string (`lazy_loader("edgeseg.runtime.keras_backend", ...)`): a plugin depends
on its registry, not the other way round.

A new top-level module or package must be given a floor in LAYERS before this test passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import edgeseg

PACKAGE_DIR = Path(edgeseg.__file__).parent

# Floors, lowest first. A module may import modules on its own floor or below, never above.
LAYERS: tuple[frozenset[str], ...] = (
    # the ground floor: what every artifact and message is made of ("edgeseg" is the package root)
    frozenset({"edgeseg", "errors", "spec", "fileio", "size", "artifact", "onnxmeta", "evalmetrics", "robot"}),
    # what the robot and the data are: datasets, Keras builders, runners, navigation
    frozenset({"data", "models", "runtime", "nav", "world", "sources", "scoring"}),
    # the stages that make and judge artifacts
    frozenset({"calib", "export", "train", "verify", "bench"}),
    # what puts the stages together: live streams, engine building
    frozenset({"stream", "engine"}),
    # what people run
    frozenset({"demo", "report", "doctor", "cli", "__main__"}),
)

# Imports that break the rules today, (importer, imported); an importer ending in ".*" stands for
# every module of that package. Each is a known debt with its issue; the test fails on any import
# not listed here, and on a listed one that no longer exists (then delete its line).
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
}


def _known_exception(module: str, target: str) -> tuple[str, str] | None:
    """The KNOWN_EXCEPTIONS key that allows `module` to import `target`, if any."""
    for importer, imported in KNOWN_EXCEPTIONS:
        if imported == target and (importer == module or (
                importer.endswith(".*") and module.startswith(importer[:-1]))):
            return importer, imported
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _known_module(name: str) -> str:
    """The module `name` lives in: itself, or the nearest package above it (for `pkg.function`)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _targets(module: str, node: ast.AST) -> list[str]:
    """The edgeseg modules one import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "edgeseg"]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package.pop()
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        if base.split(".")[0] != "edgeseg":
            return []
        # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return []


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imports(module: str) -> set[str]:
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(MODULES[module].read_text(), str(MODULES[module]))]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            stack.extend(node.orelse)
            continue
        for target in _targets(module, node):
            target = _known_module(target)
            if target != module:
                found.add(target)
        stack.extend(ast.iter_child_nodes(node))
    return found


GRAPH: dict[str, set[str]] = {module: _imports(module) for module in MODULES}


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"edgeseg.{top} has no floor: add {top!r} to one of LAYERS in {__file__}")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _graph_without_known_exceptions() -> dict[str, set[str]]:
    return {m: {t for t in targets if _known_exception(m, t) is None} for m, targets in GRAPH.items()}


def test_the_import_reader_sees_top_level_lazy_and_package_imports():
    # A reader that saw nothing would pass every rule below; these edges are known to exist.
    assert "edgeseg.runtime.preprocess" in GRAPH["edgeseg.calib.readers"]  # top-level import
    assert "edgeseg.data.sources" in GRAPH["edgeseg.train.evaluate"]  # inside a function
    assert "edgeseg.runtime.keras_backend" in GRAPH["edgeseg.export.loading"]  # one name of a module
    assert "edgeseg.data.sources" in GRAPH["edgeseg.data"]  # a package __init__
    assert sum(len(targets) for targets in GRAPH.values()) > 150


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_a_package_wide_exception_covers_its_modules_only(monkeypatch):
    monkeypatch.setitem(KNOWN_EXCEPTIONS, ("edgeseg.runtime.*", "edgeseg.engine.manifest"), "example")
    assert _known_exception("edgeseg.runtime.onnxruntime_backend", "edgeseg.engine.manifest")
    assert _known_exception("edgeseg.stream.sinks", "edgeseg.engine.manifest") is None
    assert _known_exception("edgeseg.runtime.segmenter", "edgeseg.engine.build") is None


def test_no_import_circles():
    circles = _cycles(_graph_without_known_exceptions())
    assert not circles, "import circles in edgeseg: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_import_from_a_lower_floor_to_a_higher_one():
    upward = [
        f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
        for module, targets in sorted(_graph_without_known_exceptions().items())
        for target in sorted(targets)
        if _floor(target) > _floor(module)
    ]
    assert not upward, "imports that climb a floor:\n" + "\n".join(upward)


def test_known_exceptions_still_exist():
    used = {_known_exception(m, t) for m, targets in GRAPH.items() for t in targets}
    stale = [f"{a} -> {b}" for a, b in KNOWN_EXCEPTIONS if (a, b) not in used]
    assert not stale, f"fixed, so delete from KNOWN_EXCEPTIONS: {', '.join(stale)}"


def test_the_runtime_imports_nothing_that_builds_or_trains():
    # edgeseg.runtime runs on the robot with numpy, OpenCV and ONNX Runtime/TensorRT only.
    forbidden = ("edgeseg.calib", "edgeseg.data", "edgeseg.train", "edgeseg.export", "edgeseg.engine.build",
                 "edgeseg.engine.trt_build", "edgeseg.engine.ort_build")
    found = [
        f"{module} -> {target}"
        for module, targets in sorted(_graph_without_known_exceptions().items())
        if module.startswith("edgeseg.runtime")
        for target in sorted(targets)
        if target.startswith(forbidden)
    ]
    assert not found, "the runtime imports " + ", ".join(found)
