"""What every group of magics shares: the session's registry, option parsing, interpolation."""

from __future__ import annotations

import builtins
import keyword
from argparse import Namespace
from typing import Any

from IPython.core.magic import Magics
from IPython.core.magic_arguments import argument, parse_argstring
from IPython.utils.process import arg_split

from ..engines.transformers.plan import DTYPES, QUANT_MODES
from ..errors import InvalidOption
from ..interpolate import interpolate
from ..registry import ModelRegistry

#: Names a reply must never be stored under: IPython's own, and every dunder and builtin.
_SHELL_NAMES = frozenset(
    {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh"}
)

#: The flags that say how to load a model, shared by every magic that loads one (`%llm_load`,
#: `%llm_pipe`): declared once, so they cannot drift apart.
_LOADING_FLAGS = (
    # The allowed values are checked by `plan_load`, not argparse's `choices=`: `{name}` in a value
    # is filled in after argparse has read the line, and must not be refused before.
    argument(
        "--quant", default=None, help=f"One of {', '.join(QUANT_MODES)} (4bit: nf4 + double quantization)."
    ),
    argument("--dtype", default=None, help=f"One of {', '.join(DTYPES)}."),
    argument("--device-map", default=None, help='Passed to transformers, e.g. "auto", "cpu", "cuda:0".'),
    argument("--revision", default=None, help="Hub branch, tag or commit."),
    argument(
        "--trust-remote-code",
        action="store_true",
        help="Run code from the model repository (off by default).",
    ),
    argument("--force", action="store_true", help="Load even when the estimate says it will not fit."),
)


def loading_flags(magic: Any) -> Any:
    """Decorator (among a magic's `@argument`s): add the loading flags."""
    for flag in reversed(_LOADING_FLAGS):
        magic = flag(magic)
    return magic


def show(obj: object) -> None:
    """Display `obj` as the cell's output (IPython is imported only when something is shown)."""
    from IPython.display import display

    display(obj)


def unquote(text: str) -> str:
    """`"a b"` -> `a b`: IPython's `parse_argstring` splits like a shell but keeps the quotes."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse(
    magic: Any, line: str, *, unclosed_hint: str = "close the quote", intermixed: bool = False
) -> Namespace:
    """The options of `line` for `magic`, quotes stripped from every value the same way, and
    `{name}` in each value filled in by `llm_magics.interpolate`'s rule unless `--no-interpolate`.

    Every magic is `@no_var_expand`: IPython's own expansion of magic lines would evaluate
    `{expression}` (code) and ignore `--no-interpolate`; the one rule of the cells applies instead.
    An unclosed quote is one line (shlex's "No closing quotation"), not a traceback; argparse's
    own complaints arrive as IPython's one-line `UsageError`. `intermixed` lets a free-text
    positional (`nargs="*"`) sit before or after the options (`%llm_pipe TASK --model M some text`).
    """
    try:
        if intermixed:
            args = magic.parser.parse_intermixed_args(arg_split(line, strict=False))
        else:
            args = parse_argstring(magic, line)
    except ValueError as error:
        raise InvalidOption(f"Could not read the line ({error}): {unclosed_hint}.") from None
    owner: Any = getattr(magic, "__self__", None)
    enabled = isinstance(owner, SessionMagics) and not getattr(args, "no_interpolate", False)

    def fill(text: str) -> str:
        return owner.interpolate(unquote(text)) if enabled else unquote(text)

    for key, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, key, fill(value))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            setattr(args, key, [fill(item) for item in value])
    return args


def check_variable_name(name: str, flag: str) -> None:
    """Refuse names that would break the session if a result were stored under them."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InvalidOption(f"{flag} needs a variable name, not {name!r}.")
    if (
        name.startswith("__")
        or name in _SHELL_NAMES
        or hasattr(builtins, name)
        or _is_shell_history_name(name)
    ):
        raise InvalidOption(
            f"{flag} {name}: that name belongs to Python or IPython, and replacing it would break later cells; "
            "pick another name."
        )


def _is_shell_history_name(name: str) -> bool:
    # IPython keeps outputs and inputs as _1, _i1, _ii …
    return name[1:].isdigit() or (name.startswith("_i") and (name[2:].isdigit() or set(name[1:]) == {"i"}))


class SessionMagics(Magics):
    """Base of the magic groups; `LlmMagics` combines them into the one registered class.

    Session state lives on the instance, so `%reload_ext` starts clean and
    `unload_ipython_extension` can free every model.
    """

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.registry = ModelRegistry()

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def interpolate(self, text: str, enabled: bool = True) -> str:
        """`{name}` from the user's namespace (see `llm_magics.interpolate`)."""
        return interpolate(text, self.user_ns) if enabled else text

    def text_after_options(self, line: str, args: Namespace, cell: str | None, magic: str) -> str:
        """The text a line-or-cell magic works on (its `text` REMAINDER argument): the cell, or the
        line after its options exactly as typed, `{name}` filled in unless `--no-interpolate`."""
        if cell is not None:
            if args.text:
                raise InvalidOption(f"Give the text either after %%{magic} or in the cell, not both.")
            return self.interpolate(cell, not args.no_interpolate)
        if not args.text:
            return ""
        # The options are split like a shell line; the text keeps its own spacing, so it is cut
        # from the line after the option tokens that were consumed.
        argv = arg_split(line, strict=True)
        position = 0
        for option in argv[: len(argv) - len(args.text)]:
            found = line.find(option, position)
            if found < 0:
                raw = " ".join(args.text)
                break
            position = found + len(option)
        else:
            raw = line[position:].strip()
        if len(args.text) == 1:
            raw = unquote(raw)
        return self.interpolate(raw, not args.no_interpolate)

    def close(self) -> None:
        """Free every model; called when the extension is unloaded or reloaded."""
        self.registry.unload(everything=True)
