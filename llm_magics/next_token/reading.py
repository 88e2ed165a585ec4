"""What an engine and its tokenizer tell: the prompt's ids, the logits or a server's top K, the context bound."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..conversation import check_text
from ..engines.base import PredictsNext, PredictsTopNext, Tokenizes, cannot
from ..errors import InvalidOption
from ..prompts import encode_text, has_chat_template
from ..values import SampledNext, TopLogprobs
from .results import Sampling


def require_engine(engine: Any) -> Any:
    """`engine` when it can give next-token probabilities (all of them, or a server's top K) and
    has a tokenizer, else `NotSupported` in one line."""
    if isinstance(engine, (PredictsNext, PredictsTopNext)) and isinstance(engine, Tokenizes):
        return engine
    missing = Tokenizes if isinstance(engine, (PredictsNext, PredictsTopNext)) else PredictsNext
    raise cannot(engine, missing, "%llm_next")


def prompt_ids(tokenizer: Any, text: str, *, chat: bool = False) -> tuple[list[int], str]:
    """The ids the model continues, and their text: `text` as `tokenizer(text)` encodes it, or with
    `chat` the user message through the chat template with the generation prompt (as `%%llm_chat`
    sends it)."""
    if not text:
        raise InvalidOption("Nothing to continue: give TEXT after %llm_next, or put it in a %%llm_next cell.")
    check_text(text)
    ids = encode_text(tokenizer, text, chat=chat)
    if not ids:
        raise InvalidOption("The text encodes to no tokens at all, so there is nothing to continue.")
    return ids, decode(tokenizer, ids)


def chat_notes(engine: Any, chat: bool) -> tuple[str, ...]:
    if chat and not has_chat_template(engine.tokenizer):
        return (
            f"{engine.name} has no chat template, so --chat continues the plain User:/Assistant: "
            "transcript that %%llm_chat sends it instead.",
        )
    return ()


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def check_context(engine: Any, n_tokens: int, what: str) -> None:
    limit = engine.context_window()
    if limit is not None and n_tokens > limit:
        raise InvalidOption(
            f"{what} needs {n_tokens:,} tokens, more than {engine.name}'s context of {limit:,}."
        )


def lists_only_top(engine: Any) -> bool:
    """The engine gives only its top K (a server), not the whole distribution."""
    return not isinstance(engine, PredictsNext)


def top_logprobs(engine: Any, ids: Sequence[int], k: int) -> TopLogprobs:
    top = engine.next_token_top(list(ids), k)
    if not top.ids:
        raise TypeError("next_token_top must list at least one token")
    return top


def logits_after(engine: Any, ids: Sequence[int]) -> Any:
    import torch

    logits = engine.next_token_logits(list(ids))
    logits = torch.as_tensor(logits).detach().to("cpu", torch.float32)
    if logits.dim() != 1:
        raise TypeError(f"next_token_logits must return a 1-D tensor, not shape {tuple(logits.shape)}")
    return logits


def server_draw(engine: Any, ids: Sequence[int], k: int, sampling: Sampling, seed: int) -> SampledNext:
    drawn = engine.sample_next(
        list(ids),
        k,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        seed=seed,
    )
    if not drawn.top.ids:
        raise TypeError("sample_next must list at least one token")
    return drawn
