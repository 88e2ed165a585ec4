"""The documentation cannot drift from the code: its snippets run, its pictures exist, the site builds.

Every ```python block of README.md and docs/ runs, in order, page by page, in a real IPython shell
with the extension loaded (one shell per page, as a reader would run it in one notebook). Fences
may carry attributes (docs/testing.md documents them):

    ```python { raises="InvalidOption" }   runs, and must fail with that error (bad-input examples)
    ```python { needs="hub" }              not run here (hub, gpu, server, colab): parsed, then skipped

Other languages (bash, text) are terminal commands or output, not run here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
HOOKS = DOCS / "_hooks.py"

if not (DOCS.is_dir() and README.is_file()):
    pytest.skip(f"no docs/ or README.md beside {Path(__file__).parent}", allow_module_level=True)

#: What a `needs=` block needs, and why it cannot run in the test suite.
NEEDS = {
    "hub": "downloads a model from the Hugging Face hub (the tests run offline)",
    "gpu": "needs a CUDA GPU",
    "server": "needs an OpenAI-compatible server on the network",
    "colab": "runs only in Google Colab (an install cell)",
}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)\s*(?:\{(?P<attrs>[^}]*)\})?\s*$")
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
MAX_PICTURE_BYTES = 300_000


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    source: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their fence attributes."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    start: tuple[int, re.Match[str]] | None = None
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if match is None:
            continue
        if start is None:
            start = (number, match)
        elif not match["lang"] and not match["attrs"]:
            first, opening = start
            attrs = dict(ATTRIBUTE.findall(opening["attrs"] or ""))
            source = "\n".join(lines[first : number - 1])
            found.append(Block(path, first, opening["lang"], source, attrs))
            start = None
    assert start is None, f"{path}:{start[0]}: a fence that is never closed"
    return found


def python_blocks(path: Path) -> list[Block]:
    return [block for block in blocks(path) if block.lang == "python"]


def _check_attributes(block: Block) -> None:
    unknown = set(block.attrs) - {"needs", "raises"}
    assert not unknown, f"{block.where}: unknown fence attribute {unknown} (see docs/testing.md)"
    if "needs" in block.attrs:
        assert block.attrs["needs"] in NEEDS, f"{block.where}: needs= is one of {sorted(NEEDS)}"


def _error_class(name: str) -> type[BaseException]:
    from IPython.core.error import UsageError

    from llm_magics import errors

    found = getattr(errors, name, None) or {"UsageError": UsageError}.get(name)
    assert isinstance(found, type), f"raises={name!r} names no error class of llm_magics.errors"
    return found


PAGES_WITH_SNIPPETS = [
    path for path in pages() if any("needs" not in block.attrs for block in python_blocks(path))
]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_SNIPPETS, ids=lambda path: str(path.relative_to(ROOT)))
def test_snippets_run(page: Path, shell, bundled_gguf, tmp_path: Path, monkeypatch) -> None:
    """Each runnable block of the page runs in one shell; `raises=` blocks fail with that error."""
    from IPython.utils.capture import capture_output

    monkeypatch.chdir(tmp_path)  # a snippet that saves a file writes it here
    # Short replies keep the run short; a snippet's own --max-new-tokens still wins.
    shell.run_line_magic("config", "LlmMagics.max_new_tokens = 16")
    try:
        for block in python_blocks(page):
            _check_attributes(block)
            if "needs" in block.attrs:
                continue
            with capture_output(display=True):
                result = shell.run_cell(block.source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
            expected = block.attrs.get("raises")
            if expected is None:
                assert error is None, f"{block.where}: {type(error).__name__}: {error}"
            else:
                assert isinstance(error, _error_class(expected)), (
                    f"{block.where}: expected {expected}, got {type(error).__name__}: {error}"
                )
    finally:
        shell.run_line_magic("llm_unload", "--all")


NEEDING = [block for path in pages() for block in python_blocks(path) if "needs" in block.attrs]


@pytest.mark.torchfree
@pytest.mark.parametrize("block", NEEDING, ids=lambda block: block.where)
def test_snippets_that_need_a_machine_are_valid_ipython(block: Block) -> None:
    """They cannot run here, but they are still valid IPython, with a known reason to be skipped."""
    from IPython.core.inputtransformer2 import TransformerManager

    _check_attributes(block)
    compile(TransformerManager().transform_cell(block.source), block.where, "exec")
    pytest.skip(f"{block.where} {NEEDS[block.attrs['needs']]}")


@pytest.mark.torchfree
@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_fences_are_not_indented(page: Path) -> None:
    """An indented fence (inside a list item) would be a block the snippet test never sees."""
    indented = [
        number
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if (match := FENCE.match(line)) and match["indent"]
    ]
    assert indented == [], f"{page}: indented fences at lines {indented}"


@pytest.mark.torchfree
def test_every_picture_the_docs_name_exists_and_is_small() -> None:
    named = {}
    for page in pages():
        for target in PICTURE.findall(page.read_text(encoding="utf-8")):
            named[(page.parent / target).resolve()] = page
    assert named, "the README shows no picture"
    for picture, page in named.items():
        assert picture.is_file(), f"{page.relative_to(ROOT)} shows {picture}: run `make screenshots`"
        assert picture.stat().st_size < MAX_PICTURE_BYTES, f"{picture} is over {MAX_PICTURE_BYTES} bytes"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", HOOKS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.torchfree
def test_every_registered_magic_has_its_own_page() -> None:
    hooks = _hooks()
    missing = [name for name in hooks.ordered_names() if not (DOCS / hooks.page_path(name)).is_file()]
    assert missing == [], f"add docs/magics/NAME.md for {missing} (docs/layout.md says how)"
    for name in hooks.ordered_names():
        text = (DOCS / hooks.page_path(name)).read_text(encoding="utf-8")
        assert "<!-- llm-magics:reference -->" in text, f"docs/magics/{name}.md lacks its options table"


@pytest.mark.torchfree
def test_option_tables_list_every_flag_and_every_trait_has_a_page() -> None:
    from llm_magics.magics import LlmMagics

    hooks = _hooks()
    for name in hooks.ordered_names():
        table = hooks.reference(name)
        parser = getattr(getattr(LlmMagics, name), "parser", None)
        for action in parser._actions if parser else []:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in table, (name, flag)
    shown = {trait for name in hooks.ordered_names() for trait in hooks.reads(name)}
    unshown = set(LlmMagics.class_traits(config=True)) - shown
    assert unshown == set(), f"traits no magic's page shows: add them to docs/_hooks.py: {sorted(unshown)}"


def test_site_builds_with_strict_link_checking(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra (`make env` installs it)")
    pytest.importorskip("material", reason="mkdocs-material is in the dev extra")
    site = tmp_path / "site"
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "-f",
        str(ROOT / "mkdocs.yml"),
        "-d",
        str(site),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    )
    assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout}\n{done.stderr}"
    hooks = _hooks()
    for name in hooks.ordered_names():
        page = (site / "magics" / name / "index.html").read_text(encoding="utf-8")
        assert 'id="options"' in page, name
    layout = (site / "layout" / "index.html").read_text(encoding="utf-8")
    import llm_magics

    package = Path(llm_magics.__file__).resolve().parent
    for module in package.rglob("*.py"):
        assert f"llm_magics/{module.relative_to(package).as_posix()}" in layout, module
