"""No import circles in the package (#23): every `import` of a tflottery module,
at module level or inside a function, is an edge; the graph must be acyclic.

An import inside a function only hides a circle from Python's import
machinery; the modules still depend on each other, so they count here.
Importing a submodule also runs its package's `__init__`, but that implicit
edge is not counted (a package that imports its own modules would otherwise
be a circle with each of them).
"""
import ast
import pathlib

import tflottery

PACKAGE = pathlib.Path(tflottery.__file__).parent


def module_names():
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _known(name, modules):
    """The longest prefix of a dotted name that is a module of the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name, path, modules):
    """The package modules that module `name` (at `path`) imports anywhere in its code."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            deps.update(_known(a.name, modules) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                deps.add(_known(f"{source}.{alias.name}", modules))
    deps.discard(None)
    deps.discard(name)
    return deps


def circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_graph():
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_finder_sees_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    modules = module_names()
    deps = imports_of("tflottery.masking.wrap", modules["tflottery.masking.wrap"], modules)
    assert "tflottery.masking.prunable" in deps


def test_no_import_circles_in_the_package():
    found = circles(package_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def _crossing(graph, source, target):
    return sorted(f"{a} -> {b}" for a, deps in graph.items() if a.startswith(source)
                  for b in deps if b.startswith(target))


def test_reporting_and_experiments_do_not_import_each_other():
    """Reporting reads run files only; experiments declare their report (ReportSpec) and
    the runner calls it (#23): neither package imports the other, anywhere in its code."""
    graph = package_graph()
    assert not _crossing(graph, "tflottery.reporting", "tflottery.experiments")
    assert not _crossing(graph, "tflottery.experiments", "tflottery.reporting")
    assert _crossing({"tflottery.reporting.x": {"tflottery.experiments.y"}},
                     "tflottery.reporting", "tflottery.experiments")
