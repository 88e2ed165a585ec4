"""llm_magics: run open LLMs inside a notebook.

`%load_ext llm_magics` registers `%llm_load`, `%llm_list`, `%llm_use`, `%llm_unload`,
`%%llm_chat`, `%%llm_complete`, `%llm_history`, `%llm_reset`, `%tokens` and `%llm_pipe`. Loading the
extension imports nothing heavy: torch and transformers arrive with the first `%llm_load`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .engines.base import Engine
    from .magics import LlmMagics


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
    manager = ipython.magics_manager
    manager.registry.pop("LlmMagics", None)
    # IPython has no API to unregister magics: drop the bound methods of this instance, so that
    # %llm_list after %unload_ext is "not found" rather than a call into a closed session.
    for table in manager.magics.values():
        for name in [name for name, method in table.items() if getattr(method, "__self__", None) is magics]:
            del table[name]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def _session_magics(ipython: Any) -> LlmMagics | None:
    return ipython.magics_manager.registry.get("LlmMagics")


def _current_engine(name: str | None) -> Engine:
    from IPython import get_ipython

    from .errors import NotLoaded

    shell = get_ipython()
    magics = _session_magics(shell) if shell is not None else None
    if magics is None:
        raise NotLoaded("The extension is not loaded: run %load_ext llm_magics, then %llm_load.")
    return magics.registry.get(name)


def get_model(name: str | None = None) -> tuple[Any, Any]:
    """The (model, tokenizer) of a loaded in-process model, the active one by default, for your own code.

    A tokenizer-only load gives `(None, tokenizer)`.
    """
    from .engines.base import HoldsModel, Tokenizes
    from .errors import NotLoaded

    engine = _current_engine(name)
    if isinstance(engine, HoldsModel):
        return engine.model, engine.tokenizer
    if isinstance(engine, Tokenizes):
        return None, engine.tokenizer
    raise NotLoaded(
        f"{engine.name!r} runs on the {engine.describe().kind.value} engine: there is no model object here."
    )


def get_entry(name: str | None = None) -> Engine:
    """The loaded engine: `.describe()` is what the card shows; in-process ones have `.model`, `.tokenizer`."""
    return _current_engine(name)


def next_token_distribution(text: str, name: str | None = None, **options: Any) -> Any:
    """The numbers %llm_next draws (temperature, top_k, top_p, show, chat): see `llm_magics.next_token`."""
    from .next_token import next_token_distribution as distribution

    return distribution(_current_engine(name), text, **options)


def reply_alternatives(
    name: str | None = None, show: int = 5, expand: int = 3, branch_tokens: int = 8
) -> Any:
    """The last reply's alternatives (asked with `%%llm_chat --alternatives`): an
    `llm_magics.inside.alternatives.ReplyAlternatives` (`.positions`, `.probabilities` as an array)."""
    from .engines.base import Chats, KeepsScores
    from .errors import NoAlternatives
    from .inside.alternatives import reply_alternatives as alternatives

    engine = _current_engine(name)
    session = engine.session if isinstance(engine, Chats) else None
    scores = session.last_scores if isinstance(session, KeepsScores) else None
    if scores is None:
        raise NoAlternatives(
            f"The last reply of {engine.name} has no alternatives: ask with %%llm_chat --alternatives."
        )
    return alternatives(engine, scores, show=show, expand=expand, branch_tokens=branch_tokens)


def tokenize(text: str, name: str | None = None) -> list[Any]:
    """Token spans (id, token string, start, end, is_special) of `text` under a loaded tokenizer."""
    from .engines.base import Tokenizes
    from .errors import NotLoaded
    from .tokens import tokenize_text

    engine = _current_engine(name)
    if not isinstance(engine, Tokenizes):
        raise NotLoaded(f"{engine.name!r} has no tokenizer here.")
    return tokenize_text(engine.tokenizer, text)


__all__ = [
    "__version__",
    "get_entry",
    "get_model",
    "load_ipython_extension",
    "next_token_distribution",
    "reply_alternatives",
    "tokenize",
    "unload_ipython_extension",
]
