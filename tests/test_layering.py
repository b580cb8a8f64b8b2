"""Layering: no module imports one from a higher layer, even inside a function (design.md, section 9).

Every module under src/netkiln is parsed with `ast`; every import (module level or inside a function) of a netkiln
module must name one from the same layer or a lower one. A new module must be given a layer here.
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module belongs to the layer of its longest listed prefix.
LAYERS = [
    # The bottom: what everything may use. Imports nothing from netkiln but other bottom modules.
    ("bottom", ["netkiln.errors", "netkiln.version", "netkiln.launch", "netkiln.safe_yaml", "netkiln.config_values",
                "netkiln.memory", "netkiln.io", "netkiln.interpolation", "netkiln.task", "netkiln.trust",
                "netkiln.compat"]),
    ("compiler and data", ["netkiln.compiler", "netkiln.data"]),
    # The network for a dataset: model=auto's pick, and data + model built as every command builds them.
    ("model", ["netkiln.auto_model", "netkiln.data_and_model"]),
    # The bundle's format and the run directory's files. Below training, not above it: training writes the bundle
    # and init_from reads it, while evaluating a bundle needs training's code (training/bundle_evaluation.py).
    ("artifacts", ["netkiln.artifacts"]),
    ("training", ["netkiln.training"]),
    ("sweep", ["netkiln.sweep"]),
    ("commands", ["netkiln.commands"]),
    # The entry points: the CLI, and the Python API (`netkiln.load`, SavedModel).
    ("entry points", ["netkiln.cli", "netkiln.saved_model", "netkiln"]),
]


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or ("." in prefix and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_layering.py")
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, netkiln module) for every import in `source` (the text of `module`), relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([base] if base else []))
            # `from netkiln.data import tabular` imports netkiln.data.tabular: check the submodule when there is one.
            for alias in node.names:
                sub = SRC / Path(*f"{base}.{alias.name}".split("."))
                found.append((node.lineno, f"{base}.{alias.name}" if sub.with_suffix(".py").exists() or sub.is_dir()
                              else base))
    return [(line, name) for line, name in found if name == "netkiln" or name.startswith("netkiln.")]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    return [f"line {line}: {name} ({LAYERS[layer_of(name)][0]})" for line, name in imported(source, module, is_package)
            if layer_of(name) > own]


MODULES = sorted((SRC / "netkiln").rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_only_its_own_layer_or_lower(path):
    module = module_name(path)
    upward = upward_imports(path.read_text(), module, path.name == "__init__.py")
    assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports a higher layer:\n" + "\n".join(upward)


def test_the_check_sees_function_level_and_relative_imports():
    source = ("from .layers import REGISTRY\n"
              "from . import spec\n"
              "def build():\n"
              "    from netkiln.training.run import train\n"
              "    import netkiln.sweep\n")
    assert [name for _, name in imported(source, "netkiln.compiler.fake")] == [
        "netkiln.compiler.layers", "netkiln.compiler.spec", "netkiln.training.run", "netkiln.sweep"]
    assert upward_imports(source, "netkiln.compiler.fake") == ["line 4: netkiln.training.run (training)",
                                                              "line 5: netkiln.sweep (sweep)"]
