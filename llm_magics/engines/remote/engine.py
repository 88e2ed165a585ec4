"""The remote engine: a conversation kept client side (the whole of it is sent every turn; the
server applies the chat template), replies streamed over server-sent events.

    RemoteEngine            Engine, Chats, Completes
    └── TokenizingRemoteEngine  + Tokenizes (the server's /tokenize, or the --tokenizer named)
        └── ScoringRemoteEngine + ScoresTokens, PredictsTopNext, SamplesNext (`scoring`)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...conversation import Conversation, Message, with_system
from ...errors import ContextTooLong, ModelNotServed, RemoteError, ServerDisconnected
from ...prompts import fit_to_context, too_long
from ...values import (
    EngineInfo,
    EngineKind,
    FinishReason,
    GenerationOptions,
    PreparedTurn,
    Reply,
    ScoreSource,
    Stats,
    TextCallback,
    TokenScores,
)
from ..base import PredictsNext, PredictsTopNext, ScoresTokens, Tokenizes
from .client import Server
from .dialects import VLLM_DEFAULT_MAX_LOGPROBS, Dialect, dialect_for
from .endpoint import Endpoint, Timeouts
from .served import ServedModels, ServerKind, listing, read_models
from .stream import StreamedReply
from .tokenizer import ServerTokenizer

_FINISH = {"stop": None, "length": FinishReason.LENGTH, "abort": FinishReason.INTERRUPTED}


def _replaced_halves_note(replaced: int) -> list[str]:
    if not replaced:
        return []
    plural = "s" if replaced > 1 else ""
    return [
        f"the server sent {replaced} lone UTF-16 half (surrogate){plural}, shown as \N{REPLACEMENT CHARACTER}"
    ]


class ServerScores:
    """Collects the log-probabilities a server streams with a chat reply (OpenAI's
    `choices[0].logprobs.content`: each token's text, log-probability and `top_logprobs`)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.logprobs: list[float] = []
        self.tops: list[list[tuple[str, float]]] = []

    def feed(self, choice: Any) -> None:
        for entry in getattr(getattr(choice, "logprobs", None), "content", None) or []:
            self.tokens.append(str(entry.token))
            self.logprobs.append(float(entry.logprob))
            top = getattr(entry, "top_logprobs", None) or []
            self.tops.append([(str(t.token), float(t.logprob)) for t in top])

    def token_scores(self) -> TokenScores | None:
        """The reply's `TokenScores` (None when the server sent none): the server's raw
        log-probabilities (vLLM's default `raw_logprobs`: before temperature and cuts, so at
        temperature 1), its runners-up by text (no ids: they are the server's tokens)."""
        if not self.tokens:
            return None
        return TokenScores(
            ids=(),
            probabilities=tuple(math.exp(lp) for lp in self.logprobs),
            top_ids=(),
            top_probabilities=tuple(tuple(math.exp(lp) for _, lp in top) for top in self.tops),
            temperature=1.0,
            tokens=tuple(self.tokens),
            top_tokens=tuple(tuple(token for token, _ in top) for top in self.tops),
            source=ScoreSource.LOGPROBS,
        )


class RemoteChatSession:
    """One conversation with a remote model, kept here: the server sees it whole each turn."""

    def __init__(self, engine: RemoteEngine, conversation: Conversation | None = None) -> None:
        self.engine = engine
        self.conversation = conversation if conversation is not None else Conversation()
        #: The last reply's scores (`KeepsScores`), from the server's log-probabilities if it sent any.
        self.last_scores: TokenScores | None = None

    def __repr__(self) -> str:
        return f"<RemoteChatSession {self.engine.name}: {len(self.conversation.messages)} messages>"

    def prepare(self, message: str, *, max_new_tokens: int, system: str | None = None) -> PreparedTurn:
        """The next turn's messages; the oldest turns are dropped (`prompts.fit_to_context`) when
        the server's context is known and the prompt, counted by the server or the local tokenizer,
        would not fit."""
        messages = self.conversation.messages
        history = messages if system is None else with_system(messages, system)
        limit = self.engine.context_window()
        if limit is None:
            return PreparedTurn([*history, {"role": "user", "content": message}], dropped_turns=0)
        budget = limit - max_new_tokens
        fitted = fit_to_context(history, message, budget=budget, count=self.engine.count_chat_tokens)
        if fitted.tokens is not None and fitted.tokens > budget:
            raise ContextTooLong(too_long(fitted.tokens, budget, max_new_tokens, limit))
        return PreparedTurn(fitted.messages, dropped_turns=fitted.dropped)

    def respond(
        self, prepared: PreparedTurn, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Stream the reply and commit the turn; an interrupt or a server dying mid-reply keeps the
        partial reply (finish reason INTERRUPTED), unless nothing had arrived."""
        reply = self.engine.stream_chat(prepared.messages, options, on_text=on_text)
        if not reply.empty:
            self.conversation.messages = [*prepared.messages, {"role": "assistant", "content": reply.text}]
            self.last_scores = reply.scores
        return reply

    def replace(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.last_scores = None


class RemoteEngine:
    """A model served by an OpenAI-compatible server: chats and completes, streamed. Built by `connect`."""

    kind = EngineKind.REMOTE

    def __init__(
        self,
        *,
        name: str,
        model: str,
        server: Server,
        dialect: Dialect | None = None,
        served: ServedModels,
        round_trip: float,
        context_length: int | None = None,
        tokenizer: Any = None,
        tokenizer_source: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name, self.model, self.served = name, model, served
        self._server = server
        self.dialect = dialect or dialect_for(served.kind)
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
        if self.dialect.sampling_note:
            details.append(("sampling", self.dialect.sampling_note))
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
        scores = ServerScores() if options.keep_scores and self.dialect.scores else None
        if scores is not None:
            # OpenAI's chat fields; vLLM streams each token's entry with its delta.
            request.update(logprobs=True, top_logprobs=min(options.keep_scores, VLLM_DEFAULT_MAX_LOGPROBS))
        reply = self._stream(
            lambda: self._server.client.chat.completions.create(**request),
            lambda choice: getattr(getattr(choice, "delta", None), "content", None),
            on_text,
            FinishReason.END_OF_TURN,
            scores.feed if scores is not None else None,
        )
        if scores is not None and not reply.interrupted:
            reply.scores = scores.token_scores()
        return reply

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
        extra = self.dialect.extra_body(options)
        if extra is not None:
            fields["extra_body"] = extra
        return fields

    def _stream(
        self,
        create: Callable[[], Any],
        piece_of: Callable[[Any], str | None],
        on_text: TextCallback | None,
        eos_reason: FinishReason,
        on_choice: Callable[[Any], None] | None = None,
    ) -> Reply:
        """Send the request, read the stream, and close it in every case (a break would leave the
        server generating for nobody until the reply ended). `on_choice` sees every streamed choice
        (the log-probabilities that come with it)."""
        read = StreamedReply(piece_of, on_text, on_choice, self.clock)
        interrupted, problem = False, None
        stream: Any = None
        try:
            with self._server.errors():
                stream = create()
                for chunk in stream:
                    read.take(chunk)
        except KeyboardInterrupt:
            interrupted = True
        except RemoteError as exc:
            if not read.text:
                if isinstance(exc, ModelNotServed):
                    raise self._model_gone(exc) from exc
                raise
            interrupted, problem = True, str(exc)
        finally:
            if stream is not None:
                stream.close()
        seconds = self.clock() - read.started
        read.end()
        if read.finish is None and not interrupted:
            # The stream ended without saying why: the server went away mid-reply.
            if not read.text:
                raise ServerDisconnected(f"{self.endpoint.url} closed the stream before any reply came.")
            interrupted, problem = True, f"{self.endpoint.url} closed the stream before the reply ended."
        reason = FinishReason.INTERRUPTED if interrupted else _FINISH.get(read.finish or "stop") or eos_reason
        return Reply(
            text=read.text,
            finish_reason=reason,
            stats=self._stats(read, seconds),
            problem=problem,
            notes=_replaced_halves_note(read.halves.replaced),
        )

    def _stats(self, read: StreamedReply, seconds: float) -> Stats:
        stats = Stats(prompt_tokens=None, seconds=seconds, time_to_first_token=read.first_piece_after)
        if read.usage is not None:
            said = getattr(read.usage, "prompt_tokens", None)
            stats.prompt_tokens = None if said is None else int(said)
            stats.new_tokens = int(getattr(read.usage, "completion_tokens", 0) or 0)
            return stats
        # An interrupted stream, or a server that sends no usage: count the text with a local
        # tokenizer where there is one, else the chunks (servers send about one token each). The
        # prompt's count is unknown, and the footer leaves it out rather than show 0.
        counted = self._count_text(read.text) if read.text else 0
        stats.new_tokens = read.pieces if counted is None else counted
        return stats

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


__all__ = [
    "RemoteChatSession",
    "RemoteEngine",
    "TokenizingRemoteEngine",
    "next_token_hint",
    "probabilities_hint",
    "token_view_hint",
]
