"""One object per server kind: what each server takes and offers beyond OpenAI's API, so the
engine and the token view ask their dialect instead of testing the kind.

    Dialect          an OpenAI-compatible server of unknown kind: OpenAI's fields only, and a
                     /tokenize asked for once in vLLM's shape (many servers copy it)
    VllmDialect      top-k and repetition penalty as extras, /tokenize (chat too), log-probabilities
    LlamaCppDialect  its own extras and /tokenize shape, its context from /props
    TransformersServeDialect  sampling through a generation config; no /tokenize

A `TokenizeRoute` is how a server spells its tokenizer routes (vLLM's, llama.cpp's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import RemoteError
from ...values import GenerationOptions
from .pieces import vocabulary_bytes
from .served import ServerKind

#: vLLM's `--max-logprobs` unless the server was started with another: the most log-probabilities
#: it gives per token (vllm/config ModelConfig.max_logprobs; above it a request is a 400).
VLLM_DEFAULT_MAX_LOGPROBS = 20


# --------------------------------------------------------------------------- tokenizer routes


class TokenizeRoute:
    """vLLM's `/tokenize` and `/detokenize` (with `return_token_strs`): vocabulary strings, and a
    conversation rendered through the server's own chat template (`messages`)."""

    name = "vllm"
    renders_chat_template = True

    def tokenize_body(self, model: str, text: str, add_special_tokens: bool) -> dict[str, Any]:
        return {
            "model": model,
            "prompt": text,
            "add_special_tokens": add_special_tokens,
            "return_token_strs": True,
        }

    def read_tokens(self, answer: Any) -> tuple[list[int], list[str], list[bytes]]:
        """(ids, token strings for display, bytes of each piece)."""
        ids = [int(i) for i in answer["tokens"]]
        strings = [str(s) for s in answer.get("token_strs") or []]
        if len(strings) != len(ids):
            raise KeyError("token_strs")
        return ids, strings, vocabulary_bytes(strings)

    def detokenize(self, server: Any, model: str, ids: Sequence[int]) -> str:
        return str(server.post_json("/detokenize", {"model": model, "tokens": list(ids)})["prompt"])


class LlamaCppRoute(TokenizeRoute):
    """llama.cpp's `/tokenize` (with `with_pieces`): each token's text, or its bytes when they are
    not valid UTF-8 alone; no chat template in it."""

    name = "llama.cpp"
    renders_chat_template = False

    def tokenize_body(self, model: str, text: str, add_special_tokens: bool) -> dict[str, Any]:
        return {"content": text, "add_special": add_special_tokens, "with_pieces": True}

    def read_tokens(self, answer: Any) -> tuple[list[int], list[str], list[bytes]]:
        ids, strings, pieces = [], [], []
        for item in answer["tokens"]:
            ids.append(int(item["id"]))
            piece = item["piece"]
            raw = bytes(piece) if isinstance(piece, list) else str(piece).encode()
            pieces.append(raw)
            strings.append(raw.decode(errors="replace"))
        return ids, strings, pieces

    def detokenize(self, server: Any, model: str, ids: Sequence[int]) -> str:
        return str(server.post_json("/detokenize", {"tokens": list(ids)})["content"])


# --------------------------------------------------------------------------- dialects


class Dialect:
    """A server of unknown kind: only OpenAI's own fields are sent (a strict server refuses
    unknown ones), and its `/tokenize` is asked once in vLLM's shape."""

    kind = ServerKind.OTHER
    #: How its tokenizer routes are spelled; None when it has none.
    tokenize: TokenizeRoute | None = TokenizeRoute()
    #: Whether the route is known to be there (else it is tried once, on connecting).
    tokenize_known = False
    #: Prompt log-probabilities and the next token's top K by id (`ScoringRemoteEngine`).
    scores = False
    #: A line for the card about what is not sent, where something is not.
    sampling_note: str | None = "top-k and repetition penalty are not sent (unknown server)"

    def extra_body(self, options: GenerationOptions) -> dict[str, Any] | None:
        """The request's fields beyond OpenAI's (top-k, repetition penalty), as this server names them."""
        return None

    def context_length(self, server: Any) -> int | None:
        """The context length where this server tells it outside `/v1/models`."""
        return None


class VllmDialect(Dialect):
    kind = ServerKind.VLLM
    tokenize_known = True
    scores = True
    sampling_note = None

    def extra_body(self, options: GenerationOptions) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"repetition_penalty": options.repetition_penalty}
        if not options.greedy:
            extra["top_k"] = options.top_k or -1
        return extra


class LlamaCppDialect(Dialect):
    kind = ServerKind.LLAMA_CPP
    tokenize = LlamaCppRoute()
    tokenize_known = True
    sampling_note = None

    def extra_body(self, options: GenerationOptions) -> dict[str, Any] | None:
        return {"repeat_penalty": options.repetition_penalty, "top_k": options.top_k}

    def context_length(self, server: Any) -> int | None:
        try:
            props = server.get_json("/props")
        except RemoteError:
            return None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


class TransformersServeDialect(Dialect):
    kind = ServerKind.TRANSFORMERS
    tokenize = None
    sampling_note = None

    def extra_body(self, options: GenerationOptions) -> dict[str, Any] | None:
        if options.greedy and options.repetition_penalty == 1.0:
            return None
        # transformers serve turns sampling on only through a generation config of its own.
        config = {
            "do_sample": not options.greedy,
            "temperature": options.temperature if not options.greedy else 1.0,
            "top_p": options.top_p,
            "top_k": options.top_k,
            "repetition_penalty": options.repetition_penalty,
            "max_new_tokens": options.max_new_tokens,
        }
        return {"generation_config": json.dumps(config)}


_DIALECTS: dict[ServerKind, Dialect] = {
    d.kind: d for d in (Dialect(), VllmDialect(), LlamaCppDialect(), TransformersServeDialect())
}


def dialect_for(kind: ServerKind) -> Dialect:
    """The dialect of a server of `kind` (picked once, on connecting)."""
    return _DIALECTS[kind]


__all__ = [
    "VLLM_DEFAULT_MAX_LOGPROBS",
    "Dialect",
    "LlamaCppDialect",
    "LlamaCppRoute",
    "TokenizeRoute",
    "TransformersServeDialect",
    "VllmDialect",
    "dialect_for",
]
