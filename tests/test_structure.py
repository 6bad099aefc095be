"""The package's shape: no import cycle between pcv's modules, counting imports inside functions too."""

import ast
import pathlib

import pcv

PACKAGE = pathlib.Path(pcv.__file__).parent


def module_graph() -> dict[str, set[str]]:
    """``{module: modules of pcv it imports}`` from the source, wherever in the file the import is."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_pcv():
    graph = module_graph()
    assert "pcv.train" in graph and "pcv.evaluator" in graph["pcv.train"]  # the graph is read, not empty
    assert cycles(graph) == []


def test_library_modules_do_not_import_the_commands():
    # The commands (python -m pcv.<name>) sit on top; nothing below them imports one.
    commands = {"pcv.train", "pcv.evaluate", "pcv.predict", "pcv.prepare", "pcv.pq", "pcv.pretrained", "pcv.bench"}
    graph = module_graph()
    offenders = {m: graph[m] & commands for m in graph if m not in commands and graph[m] & commands}
    assert offenders == {}
