"""A model on an OpenAI-compatible server (vLLM, llama.cpp, transformers serve …): the remote engine.

    engine = connect("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-0.5B-Instruct")
    turn = engine.session.prepare("Hi!", max_new_tokens=64)
    reply = engine.session.respond(turn, GenerationOptions(max_new_tokens=64), on_text=print)

`connect` checks the model against the server's `/v1/models`, tells the server's kind where it can
(vLLM, llama.cpp, transformers serve), reads its context length, and finds what it offers besides
chat: a `/tokenize` route (vLLM, llama.cpp) and prompt log-probabilities (vLLM). The engine's class
says what it can do, so the magics' `isinstance(engine, Tokenizes)` checks work unchanged.

One module per concern, imports pointing down the list:

    endpoint.py   the URL, the API key's variable, timeouts, the plain-http warning
    stream.py     the HTTP transport bounding each read, UTF-16 halves mended across chunks
    client.py     `Server`: the openai client and plain HTTP, and the exception table (ours, by type)
    served.py     `/v1/models` read: ids, `ServerKind`, context lengths; MODEL checked
    pieces.py     token pieces' bytes and character offsets
    dialects.py   one `Dialect` per server kind (sampling extras, tokenizer routes, context, scoring)
    tokenizer.py  `ServerTokenizer`: a server's /tokenize read as a tokenizer
    engine.py     `RemoteEngine`, `TokenizingRemoteEngine`, the chat session, the one-line hints
    scoring.py    `ScoringRemoteEngine`: log-probabilities (vLLM)
    connect.py    `connect`: all of the above put together
"""

from __future__ import annotations

from .connect import connect
from .dialects import VLLM_DEFAULT_MAX_LOGPROBS, Dialect, dialect_for
from .endpoint import (
    DEFAULT_KEY_VARIABLE,
    Endpoint,
    Timeouts,
    parse_endpoint,
    read_api_key,
    transport_warning,
)
from .engine import (
    RemoteChatSession,
    RemoteEngine,
    TokenizingRemoteEngine,
    next_token_hint,
    probabilities_hint,
    token_view_hint,
)
from .scoring import ScoringRemoteEngine
from .served import ServedModels, ServerKind, choose_model, listing, read_models
from .tokenizer import ServerTokenizer

__all__ = [
    "DEFAULT_KEY_VARIABLE",
    "VLLM_DEFAULT_MAX_LOGPROBS",
    "Dialect",
    "Endpoint",
    "RemoteChatSession",
    "RemoteEngine",
    "ScoringRemoteEngine",
    "ServedModels",
    "ServerKind",
    "ServerTokenizer",
    "Timeouts",
    "TokenizingRemoteEngine",
    "choose_model",
    "connect",
    "dialect_for",
    "listing",
    "next_token_hint",
    "parse_endpoint",
    "probabilities_hint",
    "read_api_key",
    "read_models",
    "token_view_hint",
    "transport_warning",
]
