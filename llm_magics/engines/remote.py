"""A model on an OpenAI-compatible server (vLLM, llama.cpp, transformers serve …): the remote engine.

    engine = connect("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-0.5B-Instruct")
    turn = engine.session.prepare("Hi!", max_new_tokens=64)
    reply = engine.session.respond(turn, GenerationOptions(max_new_tokens=64), on_text=print)

`connect` checks the model against the server's `/v1/models`, tells the server's kind where it can
(vLLM, llama.cpp, transformers serve), reads its context length, and finds what it offers besides
chat: a `/tokenize` route (vLLM, llama.cpp) and prompt log-probabilities (vLLM). The engine's class
says what it can do, so the magics' `isinstance(engine, Tokenizes)` checks work unchanged:

    RemoteEngine            Engine, Chats, Completes
    └── TokenizingRemoteEngine  + Tokenizes (the server's /tokenize, or the --tokenizer named)
        └── ScoringRemoteEngine + ScoresTokens (prompt log-probabilities)
                                  + PredictsTopNext (the K likeliest next tokens, `%llm_next`)
                                  + SamplesNext (one next token the server draws, seeded)

The conversation is kept here, client side, and the whole of it is sent every turn (the server
applies the chat template). Replies stream over server-sent events through the official `openai`
client; the routes OpenAI does not have (`/tokenize`, `/props`) use the same HTTP library and
connection pool. Every library exception becomes one of `llm_magics.errors`' remote errors in one
place (`_Server.error`), by type. The API key is read from an environment variable and lives only
in the HTTP client's headers: no card, error, repr or file ever holds it.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from ..conversation import Conversation, Message, with_system
from ..errors import (
    AuthenticationFailed,
    ContextTooLong,
    InvalidOption,
    LogprobsRefused,
    ModelNotFound,
    ModelNotServed,
    NotOpenAICompatible,
    RemoteError,
    RemoteExtraMissing,
    SamplingRefused,
    ServerDisconnected,
    ServerRejected,
    ServerTimeout,
    ServerUnreachable,
    first_line,
)
from ..prompts import context_length_of
from .base import (
    EngineInfo,
    EngineKind,
    FinishReason,
    GenerationOptions,
    PreparedTurn,
    Reply,
    SampledNext,
    Stats,
    TextCallback,
    TopLogprobs,
)
from .remote_stream import BoundedTransport, Utf16Halves

#: Read when `--api-key-env` is not given, if it is set (as the `openai` client itself does).
DEFAULT_KEY_VARIABLE = "OPENAI_API_KEY"

#: vLLM's `--max-logprobs` unless the server was started with another: the most log-probabilities
#: it gives per token (vllm/config ModelConfig.max_logprobs; above it a request is a 400).
VLLM_DEFAULT_MAX_LOGPROBS = 20

#: What the openai client sends as a key when there is none: servers without keys ignore it.
_NO_KEY = "EMPTY"


class ServerKind(str, Enum):
    """Which server answers, as far as `/v1/models` tells; the value is what the card shows."""

    VLLM = "vLLM"
    LLAMA_CPP = "llama.cpp"
    TRANSFORMERS = "transformers serve"
    OTHER = "OpenAI-compatible (kind unknown)"


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection, and for each read (the gap between two streamed chunks,
    or a whole non-streamed answer). The openai client's default, 600 s, would freeze a notebook
    for ten minutes on a dead server. Traits: `LlmMagics.remote_connect_timeout`, `remote_read_timeout`."""

    connect: float = 5.0
    read: float = 60.0


@dataclass(frozen=True)
class Endpoint:
    """A server's base URL, without the `/v1` suffix (`url`), and what it says about transport."""

    url: str
    host: str
    secure: bool

    @property
    def api(self) -> str:
        return self.url + "/v1"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


#: A host (a name, or an IPv6 address in brackets) and an optional :port, nothing else.
_HOST_AND_PORT = re.compile(r"(\[[^\[\]]*\]|[^\[\]:]*)(:\d*)?")


def _shown_url(url: str) -> str:
    """`url` as it may be shown: without a `user:password@` before the host, a ?query or a #fragment."""
    url = url.strip().partition("#")[0].partition("?")[0]
    scheme, slashes, rest = url.partition("//")
    if not slashes:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}//{authority.rpartition('@')[2]}{slash}{path}"


def parse_endpoint(url: str) -> Endpoint:
    """`http://host:port[/prefix][/v1]` → Endpoint; raises `InvalidOption` for anything else.

    Nothing secret is ever echoed: a refused URL is shown without its user name and password,
    and a query (`?api_key=…`, which the client would drop) is refused without being shown.
    """
    example = "such as http://127.0.0.1:8000/v1"
    try:
        parts = urlsplit(url.strip())
        # urlsplit reads the port lazily: a port that is not a number raises here.
        parts.port  # noqa: B018
        if not _HOST_AND_PORT.fullmatch(parts.netloc.rpartition("@")[2]):
            raise ValueError("text after the host")
    except ValueError:
        raise InvalidOption(
            f"--endpoint {_shown_url(url)!r} is not a URL that can be read (its host in [ ] or "
            f"its :port is malformed): give one {example}."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption(
            f"--endpoint needs an http:// or https:// URL {example}, not {_shown_url(url)!r}."
        )
    if parts.username or parts.password:
        # A URL is shown on the card and in %llm_list: credentials in it would be shown too.
        raise InvalidOption(
            "Put no user name or password in the --endpoint URL: keep the key in an environment "
            "variable and name it with --api-key-env."
        )
    if parts.query or parts.fragment:
        # Requests go to URL + route, so a query would be dropped; if it holds a key, it must not show.
        raise InvalidOption(
            "Put no ?query or #fragment in the --endpoint URL (it would not be sent): keep an API key "
            "in an environment variable and name it with --api-key-env."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return Endpoint(f"{parts.scheme}://{parts.netloc}{path}", parts.hostname, parts.scheme == "https")


def read_api_key(
    variable: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[str | None, str | None]:
    """(key, the variable it came from). The named variable must be set; without a name,
    `OPENAI_API_KEY` is used when set, else no key."""
    if variable:
        value = environ.get(variable)
        if not value:
            raise InvalidOption(
                f"--api-key-env {variable}: that environment variable is not set. Set it before starting "
                f"Jupyter, or in the notebook with os.environ[{variable!r}] = getpass.getpass()."
            )
        return value, variable
    value = environ.get(DEFAULT_KEY_VARIABLE)
    return (value, DEFAULT_KEY_VARIABLE) if value else (None, None)


def transport_warning(endpoint: Endpoint, has_key: bool) -> str | None:
    """One line when an API key would travel unencrypted over a network."""
    if has_key and not endpoint.secure and not endpoint.loopback:
        return (
            f"{endpoint.url} is plain http:// on another machine: the API key travels unencrypted. "
            "Use https://, an SSH tunnel to 127.0.0.1, or a network you trust."
        )
    return None


# --------------------------------------------------------------------------- what the server says


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


_FINISH = {"stop": None, "length": FinishReason.LENGTH, "abort": FinishReason.INTERRUPTED}


# --------------------------------------------------------------------------- HTTP and its errors


def _openai() -> Any:
    try:
        return importlib.import_module("openai")
    except ImportError:
        raise RemoteExtraMissing(
            "Talking to a server needs the openai package: pip install 'ipython-llm-magics[remote]'."
        ) from None


def _http_library(openai: Any) -> Any:
    """The HTTP library the installed openai is built on (httpx, or httpx2 from openai 3 on):
    `DefaultHttpxClient` is that library's `Client` with openai's defaults."""
    client_class = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(client_class.__module__.partition(".")[0])


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _server_message(body: Any, fallback: str, redact: Callable[[str], str]) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, vLLM's {"message"},
    FastAPI's {"detail"}, llama.cpp's {"error": {"message"}}; `redact`ed before it is cut short,
    so no part of a secret the server quoted survives."""

    def said(text: str) -> str:
        return first_line(Exception(redact(text)), 200)

    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail"):
                if isinstance(inner.get(key), str):
                    return said(inner[key])
        elif isinstance(inner, str):
            return said(inner)
        if isinstance(body.get("detail"), str):
            return said(body["detail"])
    return said(fallback) if fallback else ""


class _Server:
    """One server: the openai client and plain HTTP over one connection pool, and the one place
    where their exceptions become ours."""

    def __init__(
        self, endpoint: Endpoint, key: str | None, key_variable: str | None, timeouts: Timeouts
    ) -> None:
        self.endpoint, self.key_variable, self.timeouts = endpoint, key_variable, timeouts
        self.openai = _openai()
        self.http_lib = _http_library(self.openai)
        timeout = self._timeout(timeouts)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = BoundedTransport(
            self.http_lib,
            lambda: self.timeouts.read,
            limits=getattr(self.openai, "DEFAULT_CONNECTION_LIMITS", None) or self.http_lib.Limits(),
        )
        self.http = self.openai.DefaultHttpxClient(timeout=timeout, headers=headers, transport=transport)
        self.client = self.openai.OpenAI(
            base_url=endpoint.api,
            api_key=key or _NO_KEY,
            http_client=self.http,
            max_retries=0,
            timeout=timeout,
        )

    def _timeout(self, timeouts: Timeouts) -> Any:
        return self.http_lib.Timeout(timeouts.read, connect=timeouts.connect)

    def set_timeouts(self, timeouts: Timeouts) -> None:
        """Use `timeouts` from the next request on (the traits changed after `%llm_load`)."""
        self.timeouts = timeouts
        self.http.timeout = self.client.timeout = self._timeout(timeouts)

    def __repr__(self) -> str:
        return f"<_Server {self.endpoint.url}>"

    def redact(self, text: str) -> str:
        """`text` with the API key taken out: a server may quote the request's headers back."""
        header = str(self.http.headers.get("authorization", ""))
        for secret in (header, header.removeprefix("Bearer ")):
            if secret:
                text = text.replace(secret, "[API key]")
        return text

    def close(self) -> None:
        self.client.close()
        self.http.close()

    # -- plain routes ---------------------------------------------------------------------------

    def get_json(self, path: str) -> Any:
        with self.errors():
            return self._json(self.http.get(self.endpoint.url + path), path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        with self.errors():
            return self._json(self.http.post(self.endpoint.url + path, json=body), path)

    def _json(self, response: Any, path: str) -> Any:
        if response.status_code >= 400:
            raise self.status_error(response.status_code, _json_or_text(response), path)
        try:
            return response.json()
        except ValueError as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url}{path} answered {response.headers.get('content-type', 'something')}, not JSON: "
                "is this an OpenAI-compatible API's address?"
            ) from exc

    # -- errors ---------------------------------------------------------------------------------

    @contextmanager
    def errors(self, bad_request: Callable[[str], RemoteError] | None = None) -> Iterator[None]:
        """Re-raise the openai and HTTP libraries' exceptions as ours (`from` the original).

        `bad_request` makes the error for a 400 answer, from the server's own words, where the
        caller knows what a 400 means for its request (too many log-probabilities)."""
        try:
            yield
        except RemoteError:
            raise
        except Exception as exc:
            mapped = self.error(exc, bad_request)
            if mapped is None:
                raise
            raise mapped from exc

    def error(
        self, exc: BaseException, bad_request: Callable[[str], RemoteError] | None = None
    ) -> RemoteError | None:
        """Our error for a library exception, chosen by its type; None for anything else (a bug)."""
        openai, http = self.openai, self.http_lib
        where = self.endpoint.url
        if isinstance(exc, (openai.APITimeoutError, http.TimeoutException)):
            connecting = any(isinstance(e, http.ConnectTimeout) for e in _causes(exc))
            seconds, trait = (
                (self.timeouts.connect, "remote_connect_timeout")
                if connecting
                else (self.timeouts.read, "remote_read_timeout")
            )
            return ServerTimeout(
                f"{where} did not answer within {seconds:g} s; is it overloaded? "
                f"(%config LlmMagics.{trait} = … waits longer)"
            )
        if isinstance(exc, (openai.APIConnectionError, http.ConnectError)):
            causes = list(_causes(exc))
            if any(isinstance(e, socket.gaierror) for e in causes):
                return ServerUnreachable(f"Cannot resolve the host name {self.endpoint.host!r} of {where}.")
            if any(isinstance(e, ConnectionRefusedError) for e in causes):
                return ServerUnreachable(
                    f"Nothing answers at {where} (connection refused): is the server running?"
                )
            if any(isinstance(e, (http.RemoteProtocolError, http.ReadError)) for e in causes):
                return ServerDisconnected(
                    f"{where} closed the connection before its answer was complete: did the server stop?"
                )
            return ServerUnreachable(f"Cannot connect to {where} ({type(causes[-1]).__name__}).")
        if isinstance(exc, (http.RemoteProtocolError, http.ReadError)):
            return ServerDisconnected(
                f"{where} closed the connection before its answer was complete: did the server stop?"
            )
        if isinstance(exc, openai.APIStatusError):
            return self.status_error(
                exc.status_code, exc.body, "", code=getattr(exc, "code", None), bad_request=bad_request
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return NotOpenAICompatible(f"{where} answered something not shaped like OpenAI's API.")
        if isinstance(exc, openai.APIError):
            # An {"error": …} event in the middle of a stream.
            return ServerRejected(
                f"{where} reported an error: {_server_message(exc.body, exc.message, self.redact)}"
            )
        if isinstance(exc, UnicodeDecodeError):
            # openai's event decoder reads each line as strict UTF-8.
            return NotOpenAICompatible(f"{where} sent bytes that are not UTF-8 text in its answer.")
        if isinstance(exc, (json.JSONDecodeError, http.DecodingError)):
            return NotOpenAICompatible(f"{where} sent something that is not JSON in its answer.")
        if isinstance(exc, http.HTTPError):
            return ServerUnreachable(f"Cannot talk to {where} ({type(exc).__name__}).")
        return None

    def status_error(
        self,
        status: int,
        body: Any,
        path: str,
        code: str | None = None,
        bad_request: Callable[[str], RemoteError] | None = None,
    ) -> RemoteError:
        where = self.endpoint.url
        said = _server_message(body, "", self.redact)
        if status == 400 and bad_request is not None:
            return bad_request(said)
        if status in (401, 403):
            variable = self.key_variable or DEFAULT_KEY_VARIABLE
            problem = "refused the API key" if status == 401 else "does not allow this key"
            if self.key_variable is None:
                problem = "wants an API key"
            return AuthenticationFailed(
                f"{where} {problem} ({status}): set {variable} to a valid key, or name another variable "
                "with --api-key-env."
            )
        if code == "context_length_exceeded" or (
            isinstance(body, dict) and body.get("code") == "context_length_exceeded"
        ):
            return ContextTooLong(f"The prompt and reply do not fit the model's context: {said}")
        if status == 404 and path:
            return ServerRejected(f"{where} has no {path} route (404).")
        if status == 404:
            return ModelNotServed(
                f"{where} answered 404 (not found): {said or 'the model or route is not served'}"
            )
        return ServerRejected(f"{where} refused the request ({status}){': ' + said if said else ''}")


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


# --------------------------------------------------------------------------- the engine


class RemoteChatSession:
    """One conversation with a remote model, kept here: the server sees it whole each turn."""

    def __init__(self, engine: RemoteEngine, conversation: Conversation | None = None) -> None:
        self.engine = engine
        self.conversation = conversation if conversation is not None else Conversation()

    def __repr__(self) -> str:
        return f"<RemoteChatSession {self.engine.name}: {len(self.conversation.messages)} messages>"

    def prepare(self, message: str, *, max_new_tokens: int, system: str | None = None) -> PreparedTurn:
        """The next turn's messages; the oldest turns are dropped when the server's context is known
        and the prompt, counted by the server or the local tokenizer, would not fit."""
        messages = self.conversation.messages
        history = messages if system is None else with_system(messages, system)
        head = history[:1] if history and history[0]["role"] == "system" else []
        turns = history[len(head) :]
        new: Message = {"role": "user", "content": message}
        limit = self.engine.context_window()
        budget = None if limit is None else limit - max_new_tokens
        dropped = 0
        while True:
            candidate = [*head, *turns, new]
            count = None if budget is None else self.engine.count_chat_tokens(candidate)
            if count is None or budget is None or count <= budget:
                return PreparedTurn(candidate, dropped_turns=dropped)
            if not turns:
                raise ContextTooLong(
                    f"The message needs {count} prompt tokens, but only {budget} fit beside "
                    f"--max-new-tokens {max_new_tokens} in the {limit}-token context: "
                    "shorten it or lower --max-new-tokens."
                )
            following = next((i for i, m in enumerate(turns) if i > 0 and m["role"] == "user"), len(turns))
            turns = turns[following:]
            dropped += 1

    def respond(
        self, prepared: PreparedTurn, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Stream the reply and commit the turn; an interrupt or a server dying mid-reply keeps the
        partial reply (finish reason INTERRUPTED), unless nothing had arrived."""
        reply = self.engine.stream_chat(prepared.messages, options, on_text=on_text)
        if not reply.empty:
            self.conversation.messages = [*prepared.messages, {"role": "assistant", "content": reply.text}]
        return reply

    def replace(self, conversation: Conversation) -> None:
        self.conversation = conversation


class RemoteEngine:
    """A model served by an OpenAI-compatible server: chats and completes, streamed. Built by `connect`."""

    kind = EngineKind.REMOTE

    def __init__(
        self,
        *,
        name: str,
        model: str,
        server: _Server,
        served: ServedModels,
        round_trip: float,
        context_length: int | None = None,
        tokenizer: Any = None,
        tokenizer_source: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name, self.model, self.served = name, model, served
        self._server = server
        self.round_trip = round_trip
        self.context_length = context_length
        self._tokenizer = tokenizer
        self.tokenizer_source = tokenizer_source
        self.clock = clock
        self.warnings: list[str] = []
        self._session: RemoteChatSession | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.model} at {self.endpoint.url}>"

    @property
    def endpoint(self) -> Endpoint:
        return self._server.endpoint

    @property
    def server_kind(self) -> ServerKind:
        return self.served.kind

    # -- Engine ---------------------------------------------------------------------------------

    def why_not(self, capability: type) -> str | None:
        """Why this server lacks `capability` (`ExplainsLimits`), with what would give it."""
        from .base import PredictsNext, PredictsTopNext, ScoresTokens, Tokenizes

        if capability is Tokenizes:
            return token_view_hint(self)
        if capability is ScoresTokens:
            return probabilities_hint(self)
        if capability in (PredictsNext, PredictsTopNext):
            return next_token_hint(self)
        return None

    def describe(self) -> EngineInfo:
        details = [
            ("endpoint", self.endpoint.api),
            ("served model", self.model),
            ("server", self.served.kind.value),
            ("round trip", f"{self.round_trip * 1000:.0f} ms (the /v1/models check)"),
            ("API key", f"from ${self._server.key_variable}" if self._server.key_variable else "none"),
            ("token view", self._token_view_note()),
            ("token probabilities", self._probs_note()),
            ("next-token view", self._next_note()),
        ]
        if self.served.kind is ServerKind.OTHER:
            details.append(("sampling", "top-k and repetition penalty are not sent (unknown server)"))
        return EngineInfo(
            name=self.name,
            source=f"{self.model} @ {self.endpoint.api}",
            kind=EngineKind.REMOTE,
            device=f"server ({self.endpoint.host})",
            load_seconds=self.round_trip,
            context_length=self.context_length,
            has_chat_template=None,
            details=details,
            notes=list(self.warnings),
        )

    def context_window(self) -> int | None:
        return self.context_length

    @property
    def key_variable(self) -> str | None:
        """The environment variable the API key came from (never the key)."""
        return self._server.key_variable

    def set_timeouts(self, timeouts: Timeouts) -> None:
        """Wait as `timeouts` say from the next request on (`%config LlmMagics.remote_read_timeout`)."""
        self._server.set_timeouts(timeouts)

    def close(self) -> int:
        self._session = None
        self._server.close()
        return 0

    # -- Chats ----------------------------------------------------------------------------------

    @property
    def session(self) -> RemoteChatSession:
        if self._session is None:
            self._session = RemoteChatSession(self)
        return self._session

    def new_session(self) -> RemoteChatSession:
        return RemoteChatSession(self)

    def adopt(self, session: Any) -> None:
        if not isinstance(session, RemoteChatSession):
            raise TypeError(f"{self.name} can only adopt its own sessions, not {type(session).__name__}")
        self._session = session

    # -- Completes ------------------------------------------------------------------------------

    def complete(
        self, prompt: str, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Continue `prompt` as raw text through `/v1/completions` (no chat template)."""
        options.validate(self.context_length)
        request = dict(
            model=self.model,
            prompt=prompt,
            stream=True,
            stream_options={"include_usage": True},
            **self._sampling(options),
        )
        return self._stream(
            lambda: self._server.client.completions.create(**request),
            lambda choice: getattr(choice, "text", None),
            on_text,
            FinishReason.END_OF_TEXT,
        )

    # -- chat streaming -------------------------------------------------------------------------

    def stream_chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        options.validate(self.context_length)
        request = dict(
            model=self.model,
            messages=[dict(m) for m in messages],
            stream=True,
            stream_options={"include_usage": True},
            **self._sampling(options),
        )
        return self._stream(
            lambda: self._server.client.chat.completions.create(**request),
            lambda choice: getattr(getattr(choice, "delta", None), "content", None),
            on_text,
            FinishReason.END_OF_TURN,
        )

    def _sampling(self, options: GenerationOptions) -> dict[str, Any]:
        """The request's sampling fields. OpenAI's own are always sent; top-k and the repetition
        penalty go where the server is known to take them (a strict server refuses unknown fields)."""
        fields: dict[str, Any] = {
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": 1.0 if options.greedy else options.top_p,
        }
        if options.seed is not None:
            fields["seed"] = options.seed
        kind = self.served.kind
        if kind is ServerKind.VLLM:
            extra: dict[str, Any] = {"repetition_penalty": options.repetition_penalty}
            if not options.greedy:
                extra["top_k"] = options.top_k or -1
            fields["extra_body"] = extra
        elif kind is ServerKind.LLAMA_CPP:
            fields["extra_body"] = {"repeat_penalty": options.repetition_penalty, "top_k": options.top_k}
        elif kind is ServerKind.TRANSFORMERS and (not options.greedy or options.repetition_penalty != 1.0):
            # transformers serve turns sampling on only through a generation config of its own.
            config = {
                "do_sample": not options.greedy,
                "temperature": options.temperature if not options.greedy else 1.0,
                "top_p": options.top_p,
                "top_k": options.top_k,
                "repetition_penalty": options.repetition_penalty,
                "max_new_tokens": options.max_new_tokens,
            }
            fields["extra_body"] = {"generation_config": json.dumps(config)}
        return fields

    def _stream(
        self,
        create: Callable[[], Any],
        piece_of: Callable[[Any], str | None],
        on_text: TextCallback | None,
        eos_reason: FinishReason,
    ) -> Reply:
        """Send the request, read the stream, and close it in every case (a break would leave the
        server generating for nobody until the reply ended)."""
        stats = Stats(prompt_tokens=0)
        clock = self.clock
        started = clock()
        text, pieces = "", 0
        finish: str | None = None
        usage: Any = None
        interrupted = False
        problem: str | None = None
        stream: Any = None
        halves = Utf16Halves()
        try:
            try:
                with self._server.errors():
                    stream = create()
                    for chunk in stream:
                        if getattr(chunk, "usage", None) is not None:
                            usage = chunk.usage
                        # Usage-only chunks have no choices at all.
                        for choice in getattr(chunk, "choices", None) or []:
                            piece = halves.feed(piece_of(choice) or "")
                            if piece:
                                if stats.time_to_first_token is None:
                                    stats.time_to_first_token = clock() - started
                                text += piece
                                pieces += 1
                                if on_text is not None:
                                    on_text(text)
                            if getattr(choice, "finish_reason", None):
                                finish = choice.finish_reason
            except KeyboardInterrupt:
                interrupted = True
            except RemoteError as exc:
                if not text:
                    if isinstance(exc, ModelNotServed):
                        raise self._model_gone(exc) from exc
                    raise
                interrupted, problem = True, str(exc)
        finally:
            if stream is not None:
                stream.close()
            stats.seconds = clock() - started
        text += halves.flush()
        if finish is None and not interrupted:
            # The stream ended without saying why: the server went away mid-reply.
            if not text:
                raise ServerDisconnected(f"{self.endpoint.url} closed the stream before any reply came.")
            interrupted, problem = True, f"{self.endpoint.url} closed the stream before the reply ended."
        if usage is not None:
            stats.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            stats.new_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        else:
            # An interrupted stream has no usage: count the text with a local tokenizer where
            # there is one, else the chunks (servers send about one token each). The prompt's
            # count is unknown then (0).
            counted = self._count_text(text) if text else 0
            stats.new_tokens = pieces if counted is None else counted
        reason = FinishReason.INTERRUPTED if interrupted else _FINISH.get(finish or "stop") or eos_reason
        notes = []
        if halves.replaced:
            notes.append(
                f"the server sent {halves.replaced} lone UTF-16 half (surrogate){'s' if halves.replaced > 1 else ''}, "
                "shown as �"
            )
        return Reply(text=text, finish_reason=reason, stats=stats, problem=problem, notes=notes)

    def _model_gone(self, error: ModelNotServed) -> ModelNotServed:
        """A 404 on a generation route: say what the server serves now."""
        try:
            served = read_models(self._server.get_json("/v1/models"), self.endpoint.api)
        except RemoteError:
            return error
        if self.model in served.ids:
            return error
        return ModelNotServed(
            f"{self.endpoint.api} no longer serves {self.model!r}; it serves "
            f"{listing(served.ids, self.endpoint.api)} (%llm_load it again)."
        )

    # -- counting -------------------------------------------------------------------------------

    def count_chat_tokens(self, messages: Sequence[Message]) -> int | None:
        """The prompt's length in tokens as the server will see it, where it can be told."""
        tokenizer = self._tokenizer
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return None
        counter = getattr(tokenizer, "count_chat", None)
        if counter is not None:
            return int(counter(messages))
        encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, return_dict=True)
        return len(encoded["input_ids"])

    def _count_text(self, text: str) -> int | None:
        """Tokens in `text` by a local tokenizer; never by asking the server (after an interrupt or
        a failure it may be gone, and the user waits for no more round trips)."""
        from .remote_tokens import ServerTokenizer

        tokenizer = self._tokenizer
        if tokenizer is None or isinstance(tokenizer, ServerTokenizer):
            return None
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- card notes -----------------------------------------------------------------------------

    def _token_view_note(self) -> str:
        if self._tokenizer is None:
            return "none: the server has no /tokenize; add --tokenizer ID_OR_FOLDER for %tokens"
        return self.tokenizer_source or "local tokenizer"

    def _probs_note(self) -> str:
        return "not offered by this server"

    def _next_note(self) -> str:
        return "none: the server gives no log-probabilities"


class TokenizingRemoteEngine(RemoteEngine):
    """A remote engine with a token view: the server's `/tokenize`, or the local tokenizer named
    with `--tokenizer` (then `%tokens` works as for a local model)."""

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer


class ScoringRemoteEngine(TokenizingRemoteEngine):
    """A remote engine whose server gives prompt log-probabilities (vLLM's `/v1/completions` with
    `echo`, `logprobs` and `max_tokens=0`), so `%tokens --probs` works."""

    def token_probabilities(self, ids: Sequence[int], *, top_k: int = 5) -> Any:
        """`TokenProbs` of `ids`, computed by the server in one prompt pass (no token generated).

        The server names each alternative by its text, not its id: alternatives carry id None.
        """
        from ..tokens import TokenProbs

        if not ids:
            return TokenProbs([], [], None)
        with self._server.errors():
            answer = self._server.client.completions.create(
                model=self.model,
                prompt=list(ids),
                max_tokens=0,
                echo=True,
                logprobs=max(1, top_k),
                temperature=0,
            )
        try:
            logprobs = answer.choices[0].logprobs
            chosen = list(logprobs.token_logprobs)
            tops = list(logprobs.top_logprobs)
        except (AttributeError, IndexError, TypeError) as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url} gave no prompt log-probabilities (echo with logprobs)."
            ) from exc
        probs: list[float | None] = [None if lp is None else math.exp(lp) for lp in chosen[: len(ids)]]
        probs[0] = None
        top: list[list[tuple[int | None, str, float]] | None] = [None]
        for row in tops[1 : len(ids)]:
            ranked = sorted((row or {}).items(), key=lambda item: -item[1])[:top_k]
            top.append([(None, token, math.exp(lp)) for token, lp in ranked])
        known = [lp for lp in chosen[1 : len(ids)] if lp is not None]
        perplexity = math.exp(-sum(known) / len(known)) if known else None
        return TokenProbs(probs, top, perplexity)

    def _probs_note(self) -> str:
        return "from the server (prompt log-probabilities)"

    def _next_note(self) -> str:
        return f"the server's top log-probabilities (vLLM gives at most {VLLM_DEFAULT_MAX_LOGPROBS} unless started with more)"

    def next_token_top(self, ids: Sequence[int], k: int) -> TopLogprobs:
        """The `k` likeliest tokens after `ids` and their raw log-probabilities, from one
        `/v1/completions` request that generates one greedy token (`PredictsTopNext`).

        What vLLM gives, and why it is asked this way:
        - `logprobs=k` with `max_tokens=1`: OpenAI's legacy `logprobs.top_logprobs[0]`, the `k`
          likeliest tokens of the one generated position (plus the sampled token when it is not
          among them: greedy, it always is). Above the server's `--max-logprobs` (20 by default)
          vLLM refuses the request with a 400, which becomes `LogprobsRefused`.
        - `return_tokens_as_token_ids`: the keys come as "token_id:1234" instead of decoded text,
          which two tokens can share (the bytes of one emoji all decode to "�"), so no entry is lost
          and the ids are exact (vLLM's CompletionRequest field of that name).
        - The values are raw: vLLM's default `--logprobs-mode raw_logprobs` takes them from the
          model's logits before temperature, penalties, top-k and top-p (vllm/v1/sample/sampler.py,
          step 1 of `Sampler`); temperature 0 is sent anyway, so nothing is sampled.
        - `--chat` sends ids too: the chat template's, from `/tokenize` with `messages` and
          `add_generation_prompt` (vLLM's TokenizeChatRequest in
          vllm/entrypoints/serve/tokenize/protocol.py: the server's own template). One request
          shape for both, and the view knows the prompt's ids and text, as `%tokens --chat` shows
          them; `/v1/chat/completions` with `top_logprobs` would hide the prompt it built.
        """

        def refused(said: str) -> LogprobsRefused:
            return LogprobsRefused(
                f"{self.endpoint.url} refused {k} log-probabilities per token (400: {said or 'no reason given'}). "
                f"vLLM gives at most its --max-logprobs ({VLLM_DEFAULT_MAX_LOGPROBS} unless started with more): "
                f"lower --show and --top-k (with --steps, LlmMagics.next_runners_up), or restart vLLM "
                f"with --max-logprobs {k}."
            )

        return self._one_token(ids, k, {"temperature": 0}, refused).top

    def sample_next(
        self, ids: Sequence[int], k: int, *, temperature: float, top_k: int, top_p: float, seed: int
    ) -> SampledNext:
        """One token after `ids` drawn by the server (`SamplesNext`), and the `k` likeliest of the
        same position, from one `/v1/completions` request with `max_tokens=1` (as `next_token_top`).

        The fields, as vLLM's `CompletionRequest` takes them (vllm/entrypoints/openai/protocol.py,
        `to_sampling_params` → `SamplingParams`): `temperature` and `top_p` are OpenAI's; `seed` is
        OpenAI's too, and vLLM gives the request a generator of its own seeded with it, so the same
        seed and prompt draw the same token ("Random seed to use for the generation", vLLM's
        SamplingParams); `top_k` is a vLLM extra (sent in the body, -1 for none, as `_sampling`
        does). vLLM applies temperature, then top-k and top-p, then draws; the log-probabilities
        stay raw (`--logprobs-mode raw_logprobs`), and the drawn token is listed beside the top
        `k` when it is not among them, with its own in `token_logprobs[0]`.
        """

        def refused(said: str) -> SamplingRefused:
            return SamplingRefused(
                f"{self.endpoint.url} would not draw the next token with temperature {temperature:g}, "
                f"top-k {top_k}, top-p {top_p:g}, seed {seed} and {k} log-probabilities "
                f"(400: {said or 'no reason given'}). vLLM gives at most its --max-logprobs "
                f"({VLLM_DEFAULT_MAX_LOGPROBS} unless started with more): lower --top-k and "
                "LlmMagics.next_runners_up, or restart vLLM with more."
            )

        fields: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "seed": seed}
        return self._one_token(ids, k, fields, refused, extra={"top_k": top_k or -1})

    def _one_token(
        self,
        ids: Sequence[int],
        k: int,
        fields: dict[str, Any],
        refused: Callable[[str], RemoteError],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> SampledNext:
        """The one-token request both `next_token_top` and `sample_next` send, and its answer read
        by token id: the generated token, and the top `k` of its position."""
        with self._server.errors(bad_request=refused):
            answer = self._server.client.completions.create(
                model=self.model,
                prompt=list(ids),
                max_tokens=1,
                logprobs=k,
                extra_body={"return_tokens_as_token_ids": True, **(extra or {})},
                **fields,
            )
        try:
            logprobs = answer.choices[0].logprobs
            chosen = _token_id(logprobs.tokens[0])
            chosen_logprob = float(logprobs.token_logprobs[0])
            row = logprobs.top_logprobs[0]
            pairs = sorted(
                ((_token_id(key), float(lp)) for key, lp in row.items()), key=lambda p: (-p[1], p[0])
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url} gave no next-token log-probabilities by token id "
                "(logprobs with return_tokens_as_token_ids): is it an older vLLM?"
            ) from exc
        # The list holds the top k, plus the drawn token when it is not among them: keep the k, so
        # that what is listed is always the likeliest (the drawn one is in `chosen`).
        pairs = [(i, lp) for i, lp in pairs if math.isfinite(lp)][:k]
        if not pairs:
            raise NotOpenAICompatible(f"{self.endpoint.url} listed no next tokens with log-probabilities.")
        top = TopLogprobs(tuple(i for i, _ in pairs), tuple(lp for _, lp in pairs))
        return SampledNext(chosen, chosen_logprob, top)


def _token_id(key: str) -> int:
    """1234 from vLLM's "token_id:1234"; ValueError for anything else (decoded text)."""
    prefix, _, number = str(key).partition("token_id:")
    if prefix or not number:
        raise ValueError(key)
    return int(number)


def token_view_hint(engine: RemoteEngine) -> str:
    """The one line `%tokens` shows for a remote engine without a token view."""
    return (
        f"{engine.name} runs on a server without /tokenize ({engine.server_kind.value}): for a token view, "
        f"connect again with its tokenizer: %llm_load {engine.model} --endpoint {engine.endpoint.api} "
        "--tokenizer ID_OR_FOLDER --reload"
    )


def next_token_hint(engine: RemoteEngine) -> str:
    """The one line `%llm_next` shows for a remote engine whose server gives no log-probabilities."""
    return (
        f"%llm_next needs the model's probabilities, and {engine.name} runs on a server that gives none "
        f"({engine.server_kind.value}): serve it with vLLM, or load the model here with %llm_load."
    )


def probabilities_hint(engine: RemoteEngine) -> str:
    """The one line `%tokens --probs` shows for a remote engine whose server gives no log-probabilities."""
    return (
        f"{engine.name} runs on a server that gives no prompt log-probabilities ({engine.server_kind.value}); "
        "vLLM does, or load the model here with %llm_load for --probs."
    )


# --------------------------------------------------------------------------- connecting


def connect(
    endpoint: str,
    model: str | None = None,
    *,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    name: str | None = None,
    timeouts: Timeouts = Timeouts(),
    environ: Mapping[str, str] = os.environ,
    clock: Callable[[], float] = time.perf_counter,
) -> RemoteEngine:
    """Check the server and MODEL, and return an engine for it (nothing is registered here).

    Raises the remote errors of `llm_magics.errors` in one line each; `InvalidOption` for a bad
    URL or an unset `--api-key-env` variable; `ModelNotFound` for a `--tokenizer` that cannot be read.
    """
    where = parse_endpoint(endpoint)
    key, key_variable = read_api_key(api_key_env, environ)
    server = _Server(where, key, key_variable, timeouts)
    try:
        started = clock()
        served = read_models(server.get_json("/v1/models"), where.api)
        round_trip = clock() - started
        chosen = choose_model(served, model, where.api)
        context = served.context.get(chosen) or _llama_cpp_context(server, served)
        view: Any = None
        source = None
        if tokenizer is not None:
            view, source = _local_tokenizer(tokenizer), f"local tokenizer {tokenizer}"
            # A server that does not say its context (transformers serve): the tokenizer may know.
            context = context or context_length_of(None, view)
        else:
            from .remote_tokens import server_tokenizer

            view = server_tokenizer(server, chosen, served.kind, context)
            source = None if view is None else f"the server's /tokenize ({served.kind.value})"
        if view is None:
            engine_class: type[RemoteEngine] = RemoteEngine
        elif served.kind is ServerKind.VLLM:
            engine_class = ScoringRemoteEngine
        else:
            engine_class = TokenizingRemoteEngine
        engine = engine_class(
            name=name or _default_name(chosen),
            model=chosen,
            server=server,
            served=served,
            round_trip=round_trip,
            context_length=context,
            tokenizer=view,
            tokenizer_source=source,
            clock=clock,
        )
    except BaseException:
        server.close()
        raise
    warning = transport_warning(where, key is not None)
    if warning:
        engine.warnings.append(warning)
    return engine


def _default_name(model: str) -> str:
    """The registry name: the last part of the served id ("Qwen/Qwen2.5-0.5B" → "Qwen2.5-0.5B")."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def _llama_cpp_context(server: _Server, served: ServedModels) -> int | None:
    if served.kind is not ServerKind.LLAMA_CPP:
        return None
    try:
        props = server.get_json("/props")
    except RemoteError:
        return None
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


def _local_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"--tokenizer {source}: no tokenizer there (a local folder, or a hub id in the local cache)."
        ) from exc


__all__ = [
    "DEFAULT_KEY_VARIABLE",
    "Endpoint",
    "RemoteChatSession",
    "RemoteEngine",
    "ScoringRemoteEngine",
    "ServedModels",
    "ServerKind",
    "Timeouts",
    "TokenizingRemoteEngine",
    "choose_model",
    "listing",
    "connect",
    "parse_endpoint",
    "next_token_hint",
    "probabilities_hint",
    "read_api_key",
    "read_models",
    "token_view_hint",
    "transport_warning",
]
