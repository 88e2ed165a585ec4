"""What the analyses of `llm_magics.inside` share: the model an engine holds, the prompt's ids and
the labels of its tokens.

No IPython and no torch here; only the bottom layers and the engines' protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..conversation import check_text
from ..engines.base import HoldsModel, cannot
from ..errors import InvalidOption
from ..next_token.candidates import token_labels
from ..prompts import encode_text


@dataclass(frozen=True)
class Prompt:
    """The ids a model reads, and a label for each: the text the token adds, or its vocabulary
    string where it holds only some bytes of a character (byte-level tokenizers split emoji)."""

    ids: tuple[int, ...]
    labels: tuple[str, ...]


def held_model(engine: Any, magic: str) -> tuple[Any, Any]:
    """(model, tokenizer) of an in-process engine, or `NotSupported` in one line (the package's
    one capability rule, `engines.base.cannot`)."""
    if isinstance(engine, HoldsModel) and engine.model is not None:
        return engine.model, engine.tokenizer
    raise cannot(engine, HoldsModel, magic)


def prompt(tokenizer: Any, text: str, *, chat: bool = False, magic: str = "this magic") -> Prompt:
    """`text` as `tokenizer(text)` encodes it (or, with `chat`, as the user message through the chat
    template with the generation prompt), with a label per token."""
    if not text:
        raise InvalidOption(f"Nothing to look at: give TEXT after {magic}, or put it in the cell.")
    check_text(text)
    ids = encode_text(tokenizer, text, chat=chat)
    if not ids:
        raise InvalidOption("The text encodes to no tokens at all.")
    return Prompt(tuple(int(i) for i in ids), tuple(labels(tokenizer, ids)))


def labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """What each token adds to the text, as `%llm_next` labels it (`token_labels`); its vocabulary
    string where the token holds only some bytes of a character (its text alone would be "�")."""
    return [
        token if partial is not None or ("\ufffd" in text and "\ufffd" not in token) else text
        for token, text, _, partial in token_labels(tokenizer, ids)
    ]


def check_length(n_tokens: int, limit: int, what: str, setting: str) -> None:
    """One line when the prompt is longer than an analysis draws."""
    if n_tokens > limit:
        raise InvalidOption(
            f"{what} draws at most {limit:,} tokens and the text has {n_tokens:,}: shorten it, "
            f"or raise the bound with %config LlmMagics.{setting} = {n_tokens}."
        )


def device_of(model: Any) -> Any:
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


__all__ = ["Prompt", "check_length", "device_of", "held_model", "labels", "prompt"]
