"""The package's shape, as ARCHITECTURE.md states it, enforced.

The rule in one line: the top of ``pcv/`` holds only the commands and
``config``, ``cli``, ``errors``, ``__init__``; everything else lives in a
package named for its job, and a package imports only the packages of the
layers below its own (:data:`LAYERS`), never a command.
Imports are counted wherever they stand in a file, inside functions too.
"""

import ast
import pathlib

import pytest

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


#: The commands: ``python -m pcv.<name>``, thin mains on top of everything.
COMMANDS = ("train", "evaluate", "predict", "export", "prepare", "pq", "pretrained", "bench")
#: What else may sit at the top of pcv/.
TOP_LEVEL = ("__init__", "config", "cli", "errors")
#: The layers, lowest first: a module may import from its own package and from the layers below its own.
LAYERS = (
    ("pcv.errors",),
    ("pcv.voting",),  # the layer library: pure JAX/numpy
    ("pcv.config",),  # the schema (validates grids with pcv.voting)
    ("pcv.runtime",),  # paths, files, the work dir and its lock, hosts, metrics files, the console
    ("pcv.data", "pcv.models", "pcv.viz"),  # examples and targets; the network; pictures
    ("pcv.inference",),  # logits -> panoptic maps, the Predictor, export and the bundle's loader
    ("pcv.evaluation",),  # PQ, mIoU, AP, the Evaluator and its metrics, calibration
    ("pcv.training",),  # the loop, step, state, losses, checkpoints, init_from, the recipe
    ("pcv.benchmarks", "pcv.configs"),  # what the bench and the shipped configs use
    ("pcv.cli",),  # flags, --config and its overrides, one-line errors: the commands' own
    tuple(f"pcv.{c}" for c in COMMANDS),
)
#: The lines a command may have: a main that turns flags into one library call and an exit code.
COMMAND_LINES = 150


def layer_of(module: str) -> tuple[int, str]:
    """``(layer index, group)`` of a module: its package under pcv, or itself at the top."""
    parts = module.split(".")
    group = ".".join(parts[:2]) if len(parts) > 1 else module
    for i, layer in enumerate(LAYERS):
        if group in layer:
            return i, group
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py: add its package to LAYERS")


def test_no_import_cycle_in_pcv():
    graph = module_graph()
    assert "pcv.train" in graph and "pcv.training.trainer" in graph["pcv.train"]  # the graph is read, not empty
    assert cycles(graph) == []


def test_the_top_of_pcv_holds_only_commands_config_cli_errors():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == sorted(COMMANDS + TOP_LEVEL)
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(
        g.split(".")[1]
        for layer in LAYERS
        for g in layer
        if g.count(".") == 1 and g.split(".")[1] not in COMMANDS + TOP_LEVEL
    )


def test_every_import_goes_down_the_layers():
    offenders = []
    for module, deps in module_graph().items():
        if module == "pcv":  # the package root loads its public names lazily, by name only
            continue
        mine, group = layer_of(module)
        for dep in deps:
            if dep == "pcv":  # lazy_exports, which every package __init__ uses
                continue
            theirs, their_group = layer_of(dep)
            if their_group != group and theirs >= mine:
                offenders.append(f"{module} -> {dep}")
    assert offenders == []


def test_the_layer_check_finds_an_upward_import():
    assert layer_of("pcv.data.pipeline")[0] < layer_of("pcv.training.trainer")[0]
    assert layer_of("pcv.data.pipeline")[0] == layer_of("pcv.models.resnet")[0]  # siblings may not import each other
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("pcv.utils.misc")


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_are_thin_and_do_not_import_each_other(command):
    path = PACKAGE / f"{command}.py"
    lines = len(path.read_text().splitlines())
    assert lines <= COMMAND_LINES, f"pcv/{command}.py has {lines} lines: move its library part into a package"
    others = {f"pcv.{c}" for c in COMMANDS} - {f"pcv.{command}"}
    assert module_graph()[f"pcv.{command}"] & others == set()
    tree = ast.parse(path.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def test_every_package_init_only_names_its_exports():
    # One style: a docstring, then lazy_exports(__name__, {name: module}); no code of its own.
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE or init.parent.name == "configs":
            continue
        tree = ast.parse(init.read_text())
        kinds = [type(n).__name__ for n in tree.body]
        assert kinds == ["Expr", "ImportFrom", "Assign"], f"{init}: {kinds}"
