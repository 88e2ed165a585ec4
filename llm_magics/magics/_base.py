"""What every group of magics shares: the session's registry and cell-text interpolation."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics

from ..interpolate import interpolate
from ..registry import ModelRegistry


def show(obj: object) -> None:
    """Display `obj` as the cell's output (IPython is imported only when something is shown)."""
    from IPython.display import display

    display(obj)


def unquote(text: str | None) -> str | None:
    """`"a b"` -> `a b`: IPython's `parse_argstring` splits like a shell but keeps the quotes."""
    if text is not None and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


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

    def close(self) -> None:
        """Free every model; called when the extension is unloaded or reloaded."""
        self.registry.unload(everything=True)
