"""What a server says it serves: `/v1/models` read into the ids, the server's kind and each
model's context length; MODEL checked against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ...errors import ModelNotServed, NotOpenAICompatible


class ServerKind(str, Enum):
    """Which server answers, as far as `/v1/models` tells; the value is what the card shows."""

    VLLM = "vLLM"
    LLAMA_CPP = "llama.cpp"
    TRANSFORMERS = "transformers serve"
    OTHER = "OpenAI-compatible (kind unknown)"


@dataclass(frozen=True)
class ServedModels:
    """The answer of `/v1/models`: model ids, the server's kind, each model's context length."""

    ids: tuple[str, ...]
    kind: ServerKind
    context: Mapping[str, int | None] = field(default_factory=dict)


def read_models(document: Any, url: str) -> ServedModels:
    """Parse `/v1/models`; raises `NotOpenAICompatible` when it is not OpenAI's list shape."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in data
    ):
        raise NotOpenAICompatible(
            f"{url}/models did not answer with OpenAI's model list ({{'data': [{{'id': …}}]}}): "
            "is this an OpenAI-compatible API's address?"
        )
    owners = {m.get("owned_by") for m in data}
    if "vllm" in owners:
        kind = ServerKind.VLLM
    elif "llamacpp" in owners:
        kind = ServerKind.LLAMA_CPP
    elif data and all(isinstance(m.get("status"), dict) for m in data):
        # transformers serve adds a `status` ({"value": "loaded"}) to OpenAI's fields.
        kind = ServerKind.TRANSFORMERS
    else:
        kind = ServerKind.OTHER
    context = {}
    for model in data:
        length = model.get("max_model_len")  # vLLM
        context[model["id"]] = length if isinstance(length, int) and length > 0 else None
    return ServedModels(tuple(m["id"] for m in data), kind, context)


#: Served ids named in one line; a server with thousands would otherwise fill the screen.
LISTED_MODELS = 10


def listing(ids: Sequence[str], url: str) -> str:
    """What a server serves, as one short line: the first ids (as repr, so no id can carry
    terminal codes or markup into the line) and how many more `url/models` lists."""
    if not ids:
        return "nothing"
    shown = ", ".join(repr(i) for i in ids[:LISTED_MODELS])
    more = len(ids) - LISTED_MODELS
    return shown if more <= 0 else f"{shown} and {more:,} more (see {url}/models)"


def choose_model(served: ServedModels, model: str | None, url: str) -> str:
    """MODEL, checked against what is served; with one served model MODEL may be left out."""
    listing_ = listing(served.ids, url)
    if model is None:
        if len(served.ids) == 1:
            return served.ids[0]
        raise ModelNotServed(f"{url} serves {listing_}: name one as MODEL.")
    if model not in served.ids:
        raise ModelNotServed(f"{url} does not serve {model!r}; it serves {listing_}.")
    return model


__all__ = ["LISTED_MODELS", "ServedModels", "ServerKind", "choose_model", "listing", "read_models"]
