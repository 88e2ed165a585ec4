"""The package's layout rules, read from its source: folders are layers and imports point down,
no import cycle, no function too long to read at once, no module too long to find one's way in,
no private name used outside its module, and function-level imports only for what `%load_ext`
must not pay for. docs/layout.md says the same in prose."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

import llm_magics

pytestmark = pytest.mark.torchfree

ROOT = Path(__file__).resolve().parent.parent
# The package as imported: the source tree here, the installed wheel in `make test-colab`/`test-py313`.
PACKAGE = Path(llm_magics.__file__).resolve().parent

#: Bottom to top; a module may import from its own layer and those below it.
LAYERS = (
    # The values every layer shares.
    ("errors", "interpolate", "bytelevel", "conversation", "hub", "values", "prompts"),
    ("engines",),
    # What the magics show, computed from an engine: IPython-free.
    ("registry", "tokens", "next_token", "inside", "code", "lessons"),
    ("display",),
    ("magics",),
    # The package itself: %load_ext and the public Python API.
    ("",),
)

#: Packages imported inside functions only: `%load_ext` must not pay for them (torch and
#: transformers take seconds; huggingface_hub also reads HF_ENDPOINT once, at import, so it must
#: come after a user sets it), or the IPython-free core and the Python API must import without them.
HEAVY = frozenset(
    {
        "torch",
        "transformers",
        "openai",
        "huggingface_hub",
        "accelerate",
        "bitsandbytes",
        "safetensors",
        "gguf",
        "jinja2",
        "markdown_it",
        "numpy",
        "ipywidgets",
        "IPython",
    }
)

MAX_FUNCTION_LINES = 60  # of code: docstrings, comments and blank lines not counted
MAX_MODULE_LINES = 500


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    #: (imported module, names taken from it, line) at module level and inside functions.
    top_imports: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)
    function_imports: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8")))
    for module in found.values():
        is_package = module.path.name == "__init__.py"
        inside_functions = {
            id(node)
            for function in ast.walk(module.tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
        }
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                imports = [(alias.name, (), node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module.name, is_package, node)
                names = tuple(alias.name for alias in node.names)
                # `from . import hub` imports the module llm_magics.hub.
                imports = [
                    (f"{target}.{n}", (), node.lineno)
                    if f"{target}.{n}" in found
                    else (target, (n,), node.lineno)
                    for n in names
                ]
            else:
                continue
            (module.function_imports if id(node) in inside_functions else module.top_imports).extend(imports)
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent if path.is_relative_to(PACKAGE) else ROOT))


def _layer(name: str) -> int:
    parts = name.split(".")
    first = parts[1] if len(parts) > 1 else ""
    return next(i for i, group in enumerate(LAYERS) if first in group)


def _internal(target: str) -> bool:
    return target == "llm_magics" or target.startswith("llm_magics.")


def _owner(target: str) -> str:
    """The module an import reads: the longest known module name that `target` starts with."""
    while target not in modules():
        target = target.rpartition(".")[0]
    return target


@cache
def _imports_heavy(name: str) -> bool:
    """Whether importing the module imports a HEAVY package, directly or through our modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for target, _, _ in modules()[current].top_imports:
            if _internal(target):
                todo.append(_owner(target))
            elif target.split(".")[0] in HEAVY:
                return True
    return False


def test_every_module_belongs_to_a_layer():
    for name in modules():
        assert _layer(name) >= 0, name


def test_imports_point_down_the_layers():
    upward = [
        f"{_shown(module.path)}:{line} imports {target} (layer {_layer(target)} above {_layer(module.name)})"
        for module in modules().values()
        for target, _, line in module.top_imports + module.function_imports
        if _internal(target) and _layer(_owner(target)) > _layer(module.name)
    ]
    assert not upward, "\n" + "\n".join(upward)


def test_there_is_no_import_cycle():
    graph = {
        name: {_owner(t) for t, _, _ in module.top_imports if _internal(t)} - {name}
        for name, module in modules().items()
    }
    # A package's __init__ may re-export its own modules: those edges are the package's contents.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n" + "\n".join(cycles)


def _code_lines(lines: list[str], function: ast.AST) -> int:
    body = getattr(function, "body", [])
    docstring: set[int] = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        docstring = set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return sum(
        1
        for number in range(function.lineno, (function.end_lineno or function.lineno) + 1)
        if number not in docstring
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def test_every_function_is_short_enough_to_read_at_once():
    long = []
    for module in modules().values():
        lines = module.path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = _code_lines(lines, node)
                if count > MAX_FUNCTION_LINES:
                    long.append(f"{_shown(module.path)}:{node.lineno} {node.name}: {count} lines")
    assert not long, "\n" + "\n".join(long)


def test_every_module_is_short_enough_to_find_ones_way_in():
    long = [
        f"{_shown(module.path)}: {count} lines"
        for module in modules().values()
        if (count := len(module.path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "\n" + "\n".join(long)


def test_function_level_imports_are_only_of_what_load_ext_must_not_pay_for():
    light = []
    for module in modules().values():
        for target, names, line in module.function_imports:
            heavy = _imports_heavy(_owner(target)) if _internal(target) else target.split(".")[0] in HEAVY
            if not heavy:
                light.append(f"{_shown(module.path)}:{line} imports {target} {names or ''}".rstrip())
    assert not light, "\n" + "\n".join(light)


def _ours(target: str) -> bool:
    return _internal(target) or target.split(".")[0] in ("tests", "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_file_beside(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).with_suffix(".py").is_file()


def _python_files_beside_the_package() -> list[Path]:
    return [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]


def test_no_private_name_is_used_outside_its_module():
    """`from llm_magics.x import _y`, and `x._y` where x is one of our modules, anywhere: the
    package, its tests and its benchmarks."""
    crossing = []
    sources = [(m.path, m.tree, m.name, m.path.name == "__init__.py") for m in modules().values()]
    sources += [
        (path, ast.parse(path.read_text(encoding="utf-8")), "", False)
        for path in _python_files_beside_the_package()
    ]
    for path, tree, name, is_package in sources:
        module_aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(name, is_package, node) if name else (node.module or "")
                if not _ours(target):
                    continue
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules() or _is_file_beside(f"{target}.{alias.name}"):
                        module_aliases.add(alias.asname or alias.name)
                    elif _private(alias.name):
                        crossing.append(f"{_shown(path)}:{node.lineno} imports {target}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _ours(alias.name) and alias.asname:
                        module_aliases.add(alias.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
            ):
                crossing.append(f"{_shown(path)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not crossing, "\n" + "\n".join(crossing)


def test_the_rules_see_the_package():
    """The scan reads what it should: if it found nothing, every test above would pass for nothing."""
    found = modules()
    assert {
        "llm_magics.magics.chat",
        "llm_magics.engines.transformers.generation",
        "llm_magics.values",
    } <= set(found)
    assert _imports_heavy("llm_magics.engines.transformers.growing")
    assert not _imports_heavy("llm_magics.values")
    assert (
        _layer("llm_magics.magics.chat")
        > _layer("llm_magics.display.chat")
        > _layer("llm_magics.engines.base")
    )
