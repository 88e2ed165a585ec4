"""What an engine can do, as small runtime-checkable protocols (the values they exchange: `values`).

An engine is whatever runs a model: the in-process transformers engine, a remote
OpenAI-compatible server, a Pipeline API task. The magics, `chat` and `tokens` talk only to these
protocols (the way httpx's `Client` talks to a `BaseTransport`), and ask what an engine can do
with `isinstance(engine, Chats)`, never by its kind or a `None` model.

    Engine            every engine: a name, `describe()` for the card and `%llm_list`, `close()`
    ├── Chats         a conversation per engine, turn by turn (`ChatSession`), streamed
    ├── Completes     raw continuation of text, streamed
    ├── Tokenizes     a Hugging Face tokenizer for `%tokens` (local, or named for a remote model)
    ├── ScoresTokens  each token's probability given the ones before it (`%tokens --probs`)
    ├── PredictsNext  the next token's distribution after some text (`%llm_next`)
    ├── PredictsTopNext  only the K likeliest next tokens (a server's log-probabilities)
    ├── SamplesNext   one next token drawn by the engine itself, seeded, with the top K beside it
    ├── ExplainsLimits  one line on why a capability is missing, and what would give it
    └── HoldsModel    an in-process `(model, tokenizer)` pair, for `llm_magics.get_model()`

A chat turn goes in two steps, so nothing changes when a turn fails: `session.prepare(message)`
builds the prompt (and says what it would drop to fit the context) without touching anything;
`session.respond(prepared, options)` generates and commits the turn only once it has a reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..conversation import Conversation
from ..errors import NotSupported
from ..values import (
    EngineInfo,
    EngineSettings,
    GenerationOptions,
    PreparedTurn,
    Reply,
    SampledNext,
    TextCallback,
    TokenScores,
    TopLogprobs,
)

# --------------------------------------------------------------------------- the protocols


@runtime_checkable
class Engine(Protocol):
    """Every engine: a registry name, a description, and a way to free what it holds."""

    name: str

    def describe(self) -> EngineInfo:
        """The facts the card and `%llm_list` show."""
        ...

    def context_window(self) -> int | None:
        """The context length in tokens, where it is known."""
        ...

    def close(self) -> int:
        """Free everything the engine holds (weights, caches, connections); bytes freed, as estimated."""
        ...


@runtime_checkable
class ChatSession(Protocol):
    """One conversation with one engine: its messages, and whatever the engine keeps between turns
    (a key/value cache, a server-side id). Created by `Chats.new_session`."""

    conversation: Conversation

    def prepare(self, message: str, *, max_new_tokens: int, system: str | None = None) -> PreparedTurn:
        """The next turn's messages (trimmed to fit the context), changing nothing.

        `system` replaces the system message ("" removes it; None keeps it). Raises
        `InvalidOption` when the new message alone does not fit beside `max_new_tokens`.
        """
        ...

    def respond(
        self, prepared: PreparedTurn, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Generate the reply to `prepared` and commit the turn, streaming its text to `on_text`.

        An interrupt ends the reply early: what arrived is kept (finish reason INTERRUPTED), unless
        nothing had (then the conversation is unchanged). On any error nothing is committed.
        """
        ...

    def replace(self, conversation: Conversation) -> None:
        """Continue from another conversation (`%llm_history --load`, `%llm_reset`)."""
        ...


@runtime_checkable
class TakesSettings(Protocol):
    """Engines that run with the session's settings (`EngineSettings`): the magics hand them over
    just before each call, so a `%config` change acts on the next cell."""

    def configure(self, settings: EngineSettings) -> None: ...


@runtime_checkable
class KeepsScores(Protocol):
    """Chat sessions that keep the `TokenScores` of their last reply (`%llm_history --alternatives`):
    None when it had none, after `replace` (a `--load`, `%llm_reset`), and before the first turn.
    Scores are never saved with the conversation."""

    last_scores: TokenScores | None


@runtime_checkable
class Chats(Protocol):
    """Engines that chat: each keeps one current conversation (`session`)."""

    @property
    def session(self) -> ChatSession:
        """The engine's current conversation, created empty on first use."""
        ...

    def new_session(self) -> ChatSession:
        """A fresh conversation, not yet the current one (`%%llm_chat --new` adopts it on success)."""
        ...

    def adopt(self, session: ChatSession) -> None:
        """Make `session` the current conversation; the old one's state is freed."""
        ...


@runtime_checkable
class Completes(Protocol):
    """Engines that continue raw text (no chat template), as base models are meant to be used."""

    def complete(
        self, prompt: str, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply: ...


@runtime_checkable
class Tokenizes(Protocol):
    """Engines with a Hugging Face tokenizer (`%tokens`, `llm_magics.tokenize`), or an object with the
    members `llm_magics.tokens` reads (a server's /tokenize: `engines.remote.ServerTokenizer`)."""

    @property
    def tokenizer(self) -> Any: ...


@runtime_checkable
class ScoresTokens(Protocol):
    """Engines that give each token's probability given the ones before it (`%tokens --probs`)."""

    def token_probabilities(self, ids: Sequence[int], *, top_k: int = 5) -> Any:
        """A `llm_magics.tokens.TokenProbs` for `ids`."""
        ...


@runtime_checkable
class PredictsNext(Protocol):
    """Engines that give the next token's scores after a prompt (`%llm_next`)."""

    def next_token_logits(self, ids: Sequence[int]) -> Any:
        """The logits (a 1-D float tensor over the whole vocabulary) for the token after `ids`."""
        ...


@runtime_checkable
class PredictsTopNext(Protocol):
    """Engines that give only the K likeliest next tokens after a prompt, not the whole
    distribution (`%llm_next` on a server with log-probabilities, such as vLLM)."""

    def next_token_top(self, ids: Sequence[int], k: int) -> TopLogprobs:
        """The `k` likeliest tokens after `ids`; raises `LogprobsRefused` when the server will not give `k`."""
        ...


@runtime_checkable
class SamplesNext(Protocol):
    """Engines that draw the next token themselves, with temperature, top-k, top-p and a seed, and
    list the top K beside it (a vLLM server samples; `%llm_next --steps N --sample`, `--live`)."""

    def sample_next(
        self, ids: Sequence[int], k: int, *, temperature: float, top_k: int, top_p: float, seed: int
    ) -> SampledNext:
        """Draw the token after `ids` (`top_k` 0 cuts nothing; the same seed and ids draw the same
        token); raises `SamplingRefused` when the server will not sample so."""
        ...


@runtime_checkable
class ExplainsLimits(Protocol):
    """Engines that can say why they lack a capability, and what would give it (a remote engine
    without /tokenize: connect again with --tokenizer)."""

    def why_not(self, capability: type) -> str | None:
        """One actionable line, or None to let the magic say it generically."""
        ...


@runtime_checkable
class HoldsModel(Protocol):
    """In-process engines: the transformers model and tokenizer, for your own code."""

    @property
    def model(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...


#: What each capability gives, as "cannot …" lines say it.
_GIVES: dict[type, str] = {
    Chats: "conversation",
    Completes: "raw continuation of text",
    Tokenizes: "tokenizer",
    ScoresTokens: "token probabilities",
    PredictsNext: "next-token probabilities",
    PredictsTopNext: "next-token probabilities",
    SamplesNext: "sampling of its own",
    HoldsModel: "model object",
}


def cannot(engine: Engine, capability: type, doing: str) -> NotSupported:
    """The one line for "this engine cannot do that": the engine's own reason where it gives one
    (a server without /tokenize: connect with --tokenizer), else what the load lacks."""
    reason = engine.why_not(capability) if isinstance(engine, ExplainsLimits) else None
    if not reason:
        info = engine.describe()
        if info.tokenizer_only:
            reason = "it is loaded as a tokenizer only; load it again without --tokenizer-only (add --reload)"
        else:
            gives = _GIVES.get(capability, capability.__name__)
            reason = f"the {info.kind.value} engine has no {gives}; pick another model with --model"
    return NotSupported(f"{engine.name!r} cannot run {doing}: {reason.rstrip('.')}.")


def require(engine: Engine, capability: type, doing: str) -> Any:
    """`engine` when it has `capability`, else `cannot(...)` raised: the one check for it."""
    if isinstance(engine, capability):
        return engine
    raise cannot(engine, capability, doing)


__all__ = [
    "cannot",
    "require",
    "Chats",
    "ChatSession",
    "Completes",
    "Engine",
    "ExplainsLimits",
    "HoldsModel",
    "KeepsScores",
    "TakesSettings",
    "PredictsNext",
    "PredictsTopNext",
    "SamplesNext",
    "ScoresTokens",
    "Tokenizes",
]
