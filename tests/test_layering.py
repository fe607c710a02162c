"""The layering rules of docs/design.md, checked on the source (an AST walk, no import).

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency); only imports under ``if TYPE_CHECKING:`` are left out (they never run).

* ``augment`` imports neither TensorFlow nor ``ensemble_cnn`` nor the command line;
* ``ensemble_cnn.inference`` (using a trained run) never imports ``ensemble_cnn.training``;
* the core's settings (``ensemble_cnn.config`` with the ``plan`` and ``recipe_rules`` it validates
  with) never import ``ensemble_cnn.training``: the core owns what it validates (the recipe
  names and rules), the training package implements them;
* ``ensemble_cnn.data`` and ``ensemble_cnn.storage`` import no TensorFlow, directly or
  through the modules that start it (``runtime``, ``models``); the one exception is
  Keras' own MNIST download (``load_mnist()`` without a path), inside that function only;
* nothing in the library imports the command line (``cli``, installed as ``ensemble_cnn_cli``);
* no two modules of the library import each other, directly or around a longer cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TENSORFLOW = ("tensorflow", "keras", "ensemble_cnn.runtime", "ensemble_cnn.models")
CLI = ("cli", "ensemble_cnn_cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in ("ensemble_cnn", "augment") for p in (REPO_ROOT / folder).rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


IMPORTS = {name: imports_of(path, name) for name, path in library_modules().items()}
# (module, import) pairs a rule lets through, each for a reason
EXCEPTIONS = {
    ("ensemble_cnn.data.mnist", "keras.datasets"): "load_mnist() without a path: Keras' download and cache",
    ("ensemble_cnn.data.mnist", "keras.datasets.mnist"): "the same import, as `from keras.datasets import mnist`",
}

RULES = [
    ("augment", ("tensorflow", "keras", "ensemble_cnn", *CLI)),
    ("ensemble_cnn.inference", ("ensemble_cnn.training",)),
    ("ensemble_cnn.config", ("ensemble_cnn.training",)),
    ("ensemble_cnn.plan", ("ensemble_cnn.training",)),
    ("ensemble_cnn.recipe_rules", ("ensemble_cnn.training",)),
    ("ensemble_cnn.data", TENSORFLOW),
    ("ensemble_cnn.storage", TENSORFLOW),
    ("ensemble_cnn", CLI),
]


@pytest.mark.parametrize("layer, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_layer_imports_nothing_it_must_not(layer, forbidden):
    members = [name for name in IMPORTS if within(name, (layer,))]
    assert members, f"no module found in {layer}"
    offending = {name: sorted(i for i in IMPORTS[name] if within(i, forbidden) and (name, i) not in EXCEPTIONS)
                 for name in members}
    assert {name: found for name, found in offending.items() if found} == {}


def test_the_library_has_no_import_cycle():
    graph = {name: {i for i in found if i in IMPORTS and i != name} for name, found in IMPORTS.items()}
    # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
    graph = {name: {i for i in deps if not name.startswith(i + ".")} for name, deps in graph.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_rules_can_fail(tmp_path):
    """The walker sees lazy imports and ignores TYPE_CHECKING ones (else the rules above prove nothing)."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import keras\n"
                      "def f():\n    from ensemble_cnn.training import train\n")
    found = imports_of(source, "ensemble_cnn.inference.m")
    assert "ensemble_cnn.training.train" in found and "keras" not in found
