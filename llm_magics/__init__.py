"""llm_magics: run open LLMs inside a notebook.

`%load_ext llm_magics` registers `%llm_load`, `%llm_list`, `%llm_use`, `%llm_unload`,
`%%llm_chat`, `%%llm_complete`, `%llm_history`, `%llm_reset` and `%tokens`. Loading the
extension imports nothing heavy: torch and transformers arrive with the first `%llm_load`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .magics import LlmMagics
    from .registry import ModelEntry


def load_ipython_extension(ipython: Any) -> None:
    from .magics import LlmMagics

    previous = _session_magics(ipython)
    if previous is not None:
        _close(ipython, previous)
    ipython.register_magics(LlmMagics(shell=ipython))


def unload_ipython_extension(ipython: Any) -> None:
    magics = _session_magics(ipython)
    if magics is not None:
        _close(ipython, magics)


def _close(ipython: Any, magics: LlmMagics) -> None:
    magics.close()
    ipython.magics_manager.registry.pop("LlmMagics", None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def _session_magics(ipython: Any) -> LlmMagics | None:
    return ipython.magics_manager.registry.get("LlmMagics")


def _current_entry(name: str | None) -> ModelEntry:
    from IPython import get_ipython

    from .errors import NotLoaded

    shell = get_ipython()
    magics = _session_magics(shell) if shell is not None else None
    if magics is None:
        raise NotLoaded("The extension is not loaded: run %load_ext llm_magics, then %llm_load.")
    return magics.registry.get(name)


def get_model(name: str | None = None) -> tuple[Any, Any]:
    """The (model, tokenizer) of a loaded entry, the active one by default, for your own code."""
    entry = _current_entry(name)
    return entry.model, entry.tokenizer


def get_entry(name: str | None = None) -> ModelEntry:
    """The registry entry (model, tokenizer and what the summary card shows)."""
    return _current_entry(name)


def tokenize(text: str, name: str | None = None) -> list[Any]:
    """Token spans (id, token string, start, end, is_special) of `text` under a loaded tokenizer."""
    from .tokens import tokenize_text

    return tokenize_text(_current_entry(name).tokenizer, text)


__all__ = [
    "__version__",
    "get_entry",
    "get_model",
    "load_ipython_extension",
    "tokenize",
    "unload_ipython_extension",
]
