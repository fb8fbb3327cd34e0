"""What imports what: the package has no import cycles, and the benchmarks and
examples use the public API only (no ``bayesseg.cli`` names).

The cycle test reads the source with ``ast`` (nothing is imported), so it
also sees the imports inside functions, which a cycle reaches only when the
function runs.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import bayesseg

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bayesseg"


# --------------------------------------------------------------------------
# The package's import graph
# --------------------------------------------------------------------------
def _module_names() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its __init__)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST):
    """Every node of ``tree`` except those under an ``if TYPE_CHECKING:`` (its else runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _edges(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` imports, at module level or in a function.

    * ``import a.b`` and ``import a.b as c``: an edge to ``a.b``.
    * ``from a.b import n``: an edge to ``a.b.n`` when that is a module, else to
      ``a.b`` (relative imports resolved first). ``from a.b import n`` run in a
      module of the package ``a.b`` is an edge to ``a.b``: importing a name
      from one's own package runs the package's ``__init__``.
    * ``importlib.import_module("a.b")`` with a literal name: an edge to ``a.b``
      (a computed name, as in ``bayesseg._registration``, is not followed).
    * ``import bayesseg as bs`` followed by ``bs.data.f()``: the attribute
      lazily imports ``bayesseg.data`` through the package's PEP 562
      ``__getattr__`` when the line runs, so every ``bs.<submodule>`` is an
      edge to ``bayesseg.<submodule>`` and every ``bs.<name>`` of the names
      the package re-exports (``bs.ELBO``) an edge to the submodule that owns
      it (``bayesseg._NAMES``). The ``import bayesseg`` itself is no edge:
      the top-level ``__init__`` imports only ``_registration``, ``_backend``
      and ``_version`` eagerly (and those import no other bayesseg module),
      so counting it would put every module on a cycle through the package
      that no import order can run into.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    aliases: set[str] = set()  # local names bound to the top-level package
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
                if alias.name.split(".")[0] == "bayesseg" and (
                    alias.asname is None or alias.name == "bayesseg"
                ):
                    aliases.add(alias.asname or "bayesseg")
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
                if source == "bayesseg" and alias.name in bayesseg._NAMES:
                    found.add(f"bayesseg.{bayesseg._NAMES[alias.name]}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    for node in _nodes(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            if node.attr in bayesseg._SUBMODULES:
                found.add(f"bayesseg.{node.attr}")
            elif node.attr in bayesseg._NAMES:
                found.add(f"bayesseg.{bayesseg._NAMES[node.attr]}")
    # The top-level package is no edge (see above), nor is a module itself.
    return {name for name in found if name in modules and name not in ("bayesseg", module)}


def import_graph() -> dict[str, set[str]]:
    """``{module: the package modules it imports}`` over every ``bayesseg/**/*.py``."""
    modules = _module_names()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (each sorted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(root: str) -> None:
        # Iterative, so a long chain cannot reach Python's recursion limit.
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(components)


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth first)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def test_the_graph_reads_imports_in_functions_and_lazy_attributes():
    graph = import_graph()
    # bayesseg.recipes.series imports bayesseg inside its functions and calls bs.imbalance.
    assert "bayesseg.imbalance" in graph["bayesseg.recipes.series"]
    assert "bayesseg._validation" in graph["bayesseg.recipes.series"]
    assert "bayesseg.elbo" in graph["bayesseg.recipes.series"]  # bs.ELBO, a re-exported name
    assert "bayesseg" not in graph["bayesseg.recipes.series"]
    # bayesian_twin imports the layer modules inside the function.
    assert "bayesseg.layers.conv" in graph["bayesseg.layers.twins"]
    assert _resolve("bayesseg.layers.base", False, 1, "twins") == "bayesseg.layers.twins"
    assert _resolve("bayesseg.layers", True, 1, None) == "bayesseg.layers"
    assert _resolve("bayesseg.layers.base", False, 2, "kl") == "bayesseg.kl"
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _a_cycle({"a": {"b"}, "b": {"a", "c"}, "c": {"a"}}, ["a", "b", "c"]) == ["a", "b", "a"]


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    components = strongly_connected(graph)
    lines = []
    for component in components:
        lines.append(f"{len(component)} modules: {', '.join(component)}")
        lines.append("  e.g. " + " -> ".join(_a_cycle(graph, component)))
        for name in component:
            inside = sorted(graph[name] & set(component))
            lines.append(f"  {name} -> {', '.join(inside)}")
    assert not components, "import cycles (imports inside functions counted):\n" + "\n".join(lines)


# --------------------------------------------------------------------------
# Benchmarks and examples use the public API: no bayesseg.cli names
# --------------------------------------------------------------------------
def _cli_uses(source: str) -> list[str]:
    """What in ``source`` reaches ``bayesseg.cli`` other than running it as a command.

    Flagged: ``import bayesseg.cli...``, ``from bayesseg.cli... import``, ``from
    bayesseg import cli``, ``<bayesseg>.cli`` attributes, and string constants
    naming ``bayesseg.cli...`` (``importlib.import_module``, ``runpy``) except
    right after ``"-m"`` in a command list (``[python, "-m", "bayesseg.cli",
    ...]`` runs the public command line) and except bare strings (docstrings).
    """
    tree = ast.parse(source)

    def is_cli(name: str | None) -> bool:
        return bool(name) and (name == "bayesseg.cli" or name.startswith("bayesseg.cli."))

    found, aliases, allowed = [], set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            allowed.add(id(node.value))  # a docstring or another bare string
        if isinstance(node, ast.List | ast.Tuple):
            for before, element in zip(node.elts, node.elts[1:], strict=False):
                if isinstance(before, ast.Constant) and before.value == "-m":
                    allowed.add(id(element))
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_cli(alias.name):
                    found.append(f"line {node.lineno}: import {alias.name}")
                if alias.name == "bayesseg" or (alias.asname is None and "." in alias.name):
                    aliases.add(alias.asname or "bayesseg")
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [a.name for a in node.names]
            if is_cli(node.module) or (node.module == "bayesseg" and "cli" in names):
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(names)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "cli":
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                found.append(f"line {node.lineno}: {node.value.id}.cli")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and is_cli(node.value)
            and id(node) not in allowed
        ):
            found.append(f"line {node.lineno}: {node.value!r}")
    return sorted(found, key=lambda text: int(text.split(":")[0].removeprefix("line ")))


def test_the_cli_check_flags_imports_and_allows_the_command():
    flagged = (
        "from bayesseg.cli.demo import _TASK_DEFAULTS\n"
        "import bayesseg.cli.anomaly\n"
        "from bayesseg import cli\n"
        "import bayesseg as bs\n"
        "bs.cli.main([])\n"
        "import importlib; importlib.import_module('bayesseg.cli.training')\n"
    )
    assert [line.split(":")[0] for line in _cli_uses(flagged)] == [
        "line 1",
        "line 2",
        "line 3",
        "line 5",
        "line 6",
    ]
    allowed = (
        '"""Runs python -m bayesseg.cli demo; see bayesseg.cli.demo."""\n'
        "import subprocess, sys\n"
        "import bayesseg as bs\n"
        "subprocess.run([sys.executable, '-m', 'bayesseg.cli', 'demo'])\n"
        "cli = [sys.executable, '-m', 'bayesseg.cli']\n"
        "bs.recipes.SeriesConfig()\n"
    )
    assert _cli_uses(allowed) == []


def test_benchmarks_and_examples_import_no_cli_names():
    files = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))
    assert len(files) > 10
    uses = {
        str(path.relative_to(ROOT)): found
        for path in files
        if (found := _cli_uses(path.read_text()))
    }
    assert not uses, f"bayesseg.cli names outside the command line: {uses}"


# --------------------------------------------------------------------------
# benchmarks/_demo.py: the demo's settings and data, equal to the CLI's
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    """benchmarks/_demo.py as a module (the benchmarks import it from their folder)."""
    spec = importlib.util.spec_from_file_location(
        "_benchmarks_demo", ROOT / "benchmarks" / "_demo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _demo_args(*argv: str):
    from bayesseg.cli.demo import _apply_task_defaults
    from bayesseg.cli.parser import build_parser

    args = build_parser().parse_args(["demo", *argv])
    _apply_task_defaults(args)
    return args


@pytest.mark.parametrize("task", ["lesion", "multiclass"])
def test_the_benchmarks_unet_settings_are_the_demos(demo, task):
    from bayesseg.cli.training import segmentation_config

    args = _demo_args("--task", task, "--seed", "3")
    settings = demo.DEMO_UNET[task]
    for name, value in settings.items():
        expected = 2 if (name, task) == ("num_classes", "lesion") else getattr(args, name)
        assert value == expected, name
    for name, value in demo.DEMO_OPTIONS.items():
        assert getattr(args, name) == value, name
    # As bayesseg/cli/demo.py::_train_unet maps the options.
    options = vars(args) | {
        "normalization": "none",
        "kl_scaling": "per-example",
        "class_weights": args.class_weights,
    }
    assert demo.segmentation_config(task, seed=3) == segmentation_config(options)


@pytest.mark.parametrize("argv", [[], ["--length", "300"]])
def test_the_benchmarks_series_settings_are_the_demos(demo, argv):
    from bayesseg.cli import anomaly

    args = _demo_args("--task", "series", "--seed", "3", *argv)
    assert args.num_images == demo.DEMO_SERIES["num_images"]
    assert args.num_test_images == demo.DEMO_SERIES["num_test_images"]
    assert args.num_samples == demo.DEMO_SERIES["num_samples"]
    assert anomaly.VALIDATION_FRACTION == demo.DEMO_SERIES["validation_fraction"]
    for name, value in demo.DEMO_OPTIONS.items():
        if name != "length":
            assert getattr(args, name) == value, name
    length = int(argv[1]) if argv else None
    assert demo.series_config(3, length=length) == anomaly.series_config(args)
    assert demo.series_config(3, epochs=None).epochs == anomaly.series_config(args).epochs


def test_the_benchmarks_data_are_the_demos(demo):
    import numpy as np

    from bayesseg.cli import anomaly
    from bayesseg.cli.demo import _demo_data

    args = _demo_args(
        "--task",
        "series",
        "--seed",
        "2",
        "--num-images",
        "40",
        "--num-test-images",
        "8",
        "--length",
        "400",
    )
    ours = demo.series_data(2, num_series=40, num_test=8, length=400)
    for mine, theirs in zip(ours, anomaly._anomaly_data(args), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    for task in ("lesion", "multiclass"):
        args = _demo_args(
            "--task",
            task,
            "--seed",
            "2",
            "--num-images",
            "3",
            "--num-test-images",
            "2",
            "--size",
            "16",
        )
        ours = demo.unet_data(task, 2, num_images=3, num_test=2, size=16)
        theirs = _demo_data(args)
        assert ours[-1] == theirs[-1]
        for mine, cli in zip(ours[:-1], theirs[:-1], strict=True):
            np.testing.assert_array_equal(mine, cli)


def test_the_benchmarks_detector_scores_are_the_demos(demo):
    import numpy as np

    from bayesseg.cli import anomaly

    x, y, xv, yv, xt, yt = demo.series_data(1, num_series=40, num_test=10, length=400)
    rng = np.random.default_rng(0)
    scores = np.clip(0.6 * (yt > 0.5) + rng.uniform(0, 0.5, yt.shape), 0, 1)
    labels = yt > 0.5
    assert demo.detector_scores(labels, scores, 0.45) == anomaly._detector_scores(
        labels, scores, 0.45
    )
    theirs = anomaly._zscore_baseline(xv, yv, xt, yt)
    del theirs["description"]
    assert demo.zscore_baseline(xv, yv, xt, yt) == theirs
