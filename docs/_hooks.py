"""mkdocs hooks: the reference tables come from the code, so the site cannot drift from it.

- Every magic `LlmMagics` registers gets a page under "Magics" in the navigation; a magic without
  `docs/magics/<name>.md` gets a generated stub (and `tests/test_docs.py` fails until it has one).
- `<!-- llm-magics:reference -->` in a magic's page becomes its usage line, a table of its options
  (read from its `@argument` declarations) and the traits its flags fall back to.
- `<!-- llm-magics:settings -->` becomes the table of every configurable trait of `LlmMagics`.
- `<!-- llm-magics:tree -->` becomes the package's modules, each with its docstring's first line.
- `<!-- llm-magics:include PATH -->` becomes that file of the repository (the benchmark results).

Importing `llm_magics.magics` imports nothing heavy (no torch), so the build stays fast.
"""

from __future__ import annotations

import argparse
import ast
import re
import textwrap
from pathlib import Path
from typing import Any

#: The order of the "Magics" section; a magic missing here is listed after these, by name.
ORDER = (
    "llm_load",
    "llm_list",
    "llm_use",
    "llm_unload",
    "llm_chat",
    "llm_complete",
    "llm_history",
    "llm_reset",
    "tokens",
    "llm_next",
    "llm_pipe",
)

#: Which trait a flag falls back to when it is left out, per magic (read from the magics' code:
#: `pick(args.x, settings.x)` in magics/settings.py ...). A name that is not a flag or
#: not a trait stops the build, so a rename cannot leave a wrong row behind.
FALLBACKS: dict[str, dict[str, str]] = {
    "llm_load": {"quant": "default_quant", "dtype": "default_dtype", "device_map": "default_device_map",
                 "force": "check_memory"},
    "llm_chat": {"max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p",
                 "top_k": "top_k", "repetition_penalty": "repetition_penalty", "seed": "seed",
                 "no_stream": "stream", "system": "system_prompt", "show": "alternatives_show"},
    "llm_history": {"show": "alternatives_show"},
    "llm_complete": {"max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p",
                     "top_k": "top_k", "repetition_penalty": "repetition_penalty", "seed": "seed",
                     "no_stream": "stream"},
    "tokens": {"max_tokens": "tokens_max_tokens", "ids": "tokens_show_ids", "probs": "tokens_top_k",
               "live": "tokens_live_max_tokens"},
    "llm_next": {"temperature": "next_temperature", "top_k": "next_top_k", "top_p": "next_top_p",
                 "show": "next_show", "steps": "next_runners_up"},
    "llm_pipe": {"quant": "default_quant", "dtype": "default_dtype", "device_map": "default_device_map",
                 "force": "check_memory", "max_new_tokens": "max_new_tokens", "temperature": "temperature",
                 "top_p": "top_p", "repetition_penalty": "repetition_penalty", "seed": "seed"},
}  # fmt: skip

#: Traits that act on a magic without a flag of their own.
ALSO_READS: dict[str, tuple[str, ...]] = {
    "llm_load": ("remote_connect_timeout", "remote_read_timeout"),
    "llm_chat": (
        "stream_interval",
        "reuse_cache",
        "cpu_decoding",
        "alternatives_expand",
        "alternatives_branch_tokens",
    ),
    "llm_history": ("alternatives_expand", "alternatives_branch_tokens"),
    "llm_attention": ("attention_max_tokens",),
    "llm_complete": ("stream_interval", "reuse_cache", "cpu_decoding"),
}


def _magics_class() -> Any:
    from llm_magics.magics import LlmMagics

    return LlmMagics


def registered() -> dict[str, str]:
    """Each registered magic's name and how it is called: "line", "cell" or "line and cell"."""
    tables = _magics_class().magics
    names = set(tables["line"]) | set(tables["cell"])
    kinds = {}
    for name in names:
        both = [kind for kind in ("line", "cell") if name in tables[kind]]
        kinds[name] = " and ".join(both)
    return kinds


def ordered_names() -> list[str]:
    names = registered()
    return [name for name in ORDER if name in names] + sorted(set(names) - set(ORDER))


def title(name: str) -> str:
    """`%llm_load`, `%%llm_chat`, `%tokens / %%tokens`: how a user types the magic."""
    kind = registered()[name]
    if kind == "cell":
        return f"%%{name}"
    if kind == "line":
        return f"%{name}"
    return f"%{name} / %%{name}"


def page_path(name: str) -> str:
    return f"magics/{name}.md"


def traits() -> dict[str, Any]:
    return dict(sorted(_magics_class().class_traits(config=True).items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(trait: Any) -> str:
    value = trait.default_value
    return "`None`" if value is None else f"`{value!r}`"


def _kind(trait: Any) -> str:
    values = getattr(trait, "values", None)
    if values:
        return "one of " + ", ".join(f"`{v}`" for v in values)
    return type(trait).__name__


def _option_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{(action.metavar or action.dest).upper()}`"
    names = ", ".join(f"`{flag}`" for flag in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} `{metavar}`" + (" …" if action.nargs in ("+", "*") else "")


def options_table(name: str) -> str:
    """The options of magic `name` from its parser, with the trait each falls back to."""
    parser = getattr(getattr(_magics_class(), name), "parser", None)
    if parser is None:  # declared without @magic_arguments: it reads no options
        return f"`%{name}` takes no options.\n"
    fallbacks = FALLBACKS.get(name, {})
    all_traits = traits()
    dests = {action.dest for action in parser._actions}
    for dest, trait in fallbacks.items():
        if dest not in dests or trait not in all_traits:
            raise ValueError(
                f"docs/_hooks.py FALLBACKS[{name!r}]: {dest!r} -> {trait!r} names no flag or trait"
            )
    rows = ["| option | default | falls back to | what it does |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.nargs == 0:
            default = "off"
        elif action.default is None or action.default == argparse.SUPPRESS:
            default = "—"
        else:
            default = f"`{action.default!r}`"
        trait = fallbacks.get(action.dest)
        trait_cell = f"`LlmMagics.{trait}` = {_default(all_traits[trait])}" if trait else ""
        help_text = (action.help or "").replace("%%", "%")
        rows.append(f"| {_option_name(action)} | {default} | {trait_cell} | {_cell(help_text)} |")
    # IPython's parser writes its usage as an rST literal block ("::", indented) after "usage: ".
    usage = textwrap.dedent(parser.format_usage().replace("usage: ", "", 1).replace("::", "", 1)).strip()
    usage = usage.replace("%%", "%")
    if registered()[name] == "cell":
        usage = "%" + usage
    return f"```text\n{usage}\n```\n\n" + "\n".join(rows) + "\n"


def settings_table(names: list[str] | None = None) -> str:
    """The configurable traits (all, or `names`): `%config LlmMagics.NAME = value`."""
    chosen = {key: trait for key, trait in traits().items() if names is None or key in names}
    if not chosen:
        return ""
    rows = ["| trait | type | default | what it sets |", "|---|---|---|---|"]
    for key, trait in chosen.items():
        rows.append(f"| `LlmMagics.{key}` | {_kind(trait)} | {_default(trait)} | {_cell(trait.help)} |")
    return "\n".join(rows) + "\n"


def reads(name: str) -> list[str]:
    """The traits that act on magic `name`: those its flags fall back to, then the others it reads."""
    found = list(dict.fromkeys(FALLBACKS.get(name, {}).values()))
    return found + [trait for trait in ALSO_READS.get(name, ()) if trait not in found]


def reference(name: str) -> str:
    text = f"## Options\n\n{options_table(name)}"
    settings = reads(name)
    if settings:
        text += (
            "\n## Settings\n\nSet with `%config LlmMagics.NAME = value` (or `c.LlmMagics.NAME` in "
            f"`ipython_config.py`); a flag given in the cell wins.\n\n{settings_table(settings)}"
        )
    return text


def tree() -> str:
    """Every module of the package, as a tree, with the first line of its docstring."""
    import llm_magics

    # The imported package, not a folder beside docs/: `.ci/run_installed` builds against the wheel.
    package = Path(llm_magics.__file__).resolve().parent
    lines = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        lines.append(f"| `{relative.as_posix()}` | {_cell(first)} |")
    return "| module | what it is |\n|---|---|\n" + "\n".join(lines) + "\n"


STUB = """# {title}

*This magic has no page of its own yet: its options below are read from the code.
Add `docs/magics/{name}.md` (see [Layout](../layout.md#adding-a-magics-page)).*

<!-- llm-magics:reference -->
"""

INCLUDE = re.compile(r"<!-- llm-magics:include (?P<path>[\w./-]+) -->")

MARKERS = {
    "<!-- llm-magics:settings -->": lambda: settings_table(),
    "<!-- llm-magics:tree -->": tree,
}


# --- mkdocs events ---------------------------------------------------------------------------------


def on_config(config: Any) -> Any:
    """The "Magics" section of the navigation lists every registered magic, in ORDER."""
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Magics" in entry:
            entry["Magics"] = [{title(name): page_path(name)} for name in ordered_names()]
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name in ordered_names():
        if files.get_file_from_path(page_path(name)) is None:
            files.append(
                File.generated(config, page_path(name), content=STUB.format(title=title(name), name=name))
            )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    uri = page.file.src_uri
    if uri.startswith("magics/") and "<!-- llm-magics:reference -->" in markdown:
        markdown = markdown.replace("<!-- llm-magics:reference -->", reference(Path(uri).stem))
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return INCLUDE.sub(lambda match: included(match["path"]), markdown)


def included(path: str) -> str:
    """A file of the repository as it is (benchmarks/RESULTS.md, written by `make bench`), its
    headings one level down so that they sit under the page's own title."""
    text = (Path(__file__).resolve().parent.parent / path).read_text(encoding="utf-8")
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
