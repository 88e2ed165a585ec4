"""What an engine can do, as small runtime-checkable protocols, and the values they exchange.

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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from ..conversation import Conversation, Message
from ..errors import InvalidOption

#: Receives the reply's visible text so far, each time it grows.
TextCallback = Callable[[str], None]


class FinishReason(str, Enum):
    """Why a reply ended; the value is what the footer shows."""

    END_OF_TURN = "end of turn"
    END_OF_TEXT = "end of text"
    LENGTH = "length limit"
    INTERRUPTED = "interrupted"


class EngineKind(str, Enum):
    """What runs the model; shown on the card and in `%llm_list`."""

    TRANSFORMERS = "transformers"
    REMOTE = "remote"
    PIPELINE = "pipeline"


# Options past these bounds are almost surely typos (a temperature of 70, a million tokens).
MAX_TEMPERATURE = 5.0
MAX_REPETITION_PENALTY = 10.0
MAX_NEW_TOKENS = 1_000_000
#: The smallest temperature above 0. Below it sampling is greedy to within rounding anyway, and
#: logits / T overflows float32 (1e-300 is 0 there: NaN probabilities): 0 asks for greedy.
MIN_TEMPERATURE = 0.01
#: The most runners-up a reply keeps per token (`GenerationOptions.keep_scores`, `--show`).
MAX_KEPT_SCORES = 21
#: What a temperature may be, as every magic says it.
TEMPERATURE_RANGE = f"0 (greedy) or between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}"


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def temperature_ok(value: float) -> bool:
    """The one rule for a temperature: 0 (greedy), or within [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    return _finite(value) and (value == 0 or MIN_TEMPERATURE <= value <= MAX_TEMPERATURE)


@dataclass
class GenerationOptions:
    """How to generate. `temperature == 0` means greedy decoding (no sampling, no seed needed)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    seed: int | None = None
    #: Keep this many runners-up of every generated token (`TokenScores`, `--alternatives`); 0:
    #: none, and generation runs exactly as without it.
    keep_scores: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self, context_length: int | None = None) -> None:
        """Raise `InvalidOption` for values that parse but make no sense."""
        checks = [
            (1 <= self.max_new_tokens <= MAX_NEW_TOKENS, "max-new-tokens", f"between 1 and {MAX_NEW_TOKENS}"),
            (temperature_ok(self.temperature), "temperature", TEMPERATURE_RANGE),
            (_finite(self.top_p) and 0 < self.top_p <= 1, "top-p", "greater than 0 and at most 1"),
            (self.top_k >= 0, "top-k", "0 (no limit) or more"),
            (
                _finite(self.repetition_penalty) and 0 < self.repetition_penalty <= MAX_REPETITION_PENALTY,
                "repetition-penalty",
                f"greater than 0 and at most {MAX_REPETITION_PENALTY:g} (1 means none)",
            ),
            (self.seed is None or 0 <= self.seed < 2**63, "seed", "between 0 and 2**63 - 1"),
            (0 <= self.keep_scores <= MAX_KEPT_SCORES, "keep-scores", f"between 0 and {MAX_KEPT_SCORES}"),
        ]
        for ok, flag, expected in checks:
            if not ok:
                value = getattr(self, flag.replace("-", "_"))
                raise InvalidOption(f"--{flag} must be {expected}; got {value}.")
        if context_length is not None and self.max_new_tokens >= context_length:
            raise InvalidOption(
                f"--max-new-tokens {self.max_new_tokens} leaves no room for the prompt: "
                f"the model's context is {context_length} tokens."
            )


@dataclass
class Stats:
    """What the footer shows. `tokens_per_second` is the decoding rate, after the first token."""

    prompt_tokens: int
    new_tokens: int = 0
    reused_tokens: int = 0
    time_to_first_token: float | None = None
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        if self.time_to_first_token is None or self.new_tokens < 2:
            return None
        decoding = self.seconds - self.time_to_first_token
        return (self.new_tokens - 1) / decoding if decoding > 0 else None


@dataclass(frozen=True)
class TokenScores:
    """What the model gave each token of a reply: its probability and the likeliest tokens of its
    position, likeliest first (`--alternatives`).

    Probabilities are the softmax of the raw logits divided by the temperature the reply was drawn
    with (greedy: temperature 1); top-k, top-p and the repetition penalty are not applied.
    `source` says where they came from: "logits" (the whole distribution, in process) or
    "logprobs" (a server's top log-probabilities). `prompt_ids` are what the reply followed, where
    the engine knows them (in process), so branches can be generated from any position.
    """

    ids: tuple[int, ...]
    probabilities: tuple[float, ...]
    top_ids: tuple[tuple[int, ...], ...]
    top_probabilities: tuple[tuple[float, ...], ...]
    temperature: float = 1.0
    prompt_ids: tuple[int, ...] = ()
    #: Token texts where the engine has no tokenizer here (a server's `top_logprobs` tokens).
    tokens: tuple[str, ...] = ()
    top_tokens: tuple[tuple[str, ...], ...] = ()
    source: str = "logits"


@dataclass
class Reply:
    """A finished (or interrupted) generation: the text a user sees, and why it stopped.

    `token_ids` are the new tokens where the engine knows them (in-process engines); a remote
    engine leaves them empty and counts from the server's usage in `stats`.
    """

    text: str
    finish_reason: FinishReason
    stats: Stats
    token_ids: list[int] = field(default_factory=list)
    #: Why the reply ended early when the user did not stop it (the server went away, sent an
    #: error or stopped answering mid-reply); the partial text is kept, finish_reason is INTERRUPTED.
    problem: str | None = None
    #: What the footer adds about the text itself (characters the engine had to replace).
    notes: list[str] = field(default_factory=list)
    #: Each token's probability and runners-up, when `GenerationOptions.keep_scores` asked for them
    #: and the engine could give them (None otherwise: an interrupted reply, a server without
    #: log-probabilities).
    scores: TokenScores | None = None

    @property
    def interrupted(self) -> bool:
        return self.finish_reason is FinishReason.INTERRUPTED

    @property
    def empty(self) -> bool:
        """Nothing arrived before the reply ended (an interrupt before the first token)."""
        return not self.text and not self.token_ids and self.stats.new_tokens == 0


@dataclass
class PreparedTurn:
    """A turn ready to generate: the messages the model will see, and what preparing it found.

    `prompt_ids` are the prompt's token ids where the engine computes them locally (empty for a
    server that applies the chat template itself); `dropped_turns` counts the oldest turns left out
    to fit the context; `plain_template` says the model has no chat template and a plain
    transcript is used instead.
    """

    messages: list[Message]
    prompt_ids: list[int] = field(default_factory=list)
    dropped_turns: int = 0
    plain_template: bool = False


@dataclass
class EngineInfo:
    """What the card and `%llm_list` say about an engine. `details` are engine-specific card rows
    (endpoint, served model, task …), shown after the common ones."""

    name: str
    source: str
    kind: EngineKind
    quantization: str = "none"
    dtype: str = "-"
    compute_dtype: str | None = None
    device: str = "-"
    parameters: int = 0
    footprint_bytes: int = 0
    load_seconds: float = 0.0
    context_length: int | None = None
    has_chat_template: bool | None = None
    tokenizer_only: bool = False
    details: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class TopLogprobs:
    """The K likeliest next tokens, likeliest first, with their raw log-probabilities (temperature
    1, before any sampling option): all a server tells of the distribution. The rest of the
    vocabulary shares `1 - sum(exp(logprobs))`, token by token unknown."""

    ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    @property
    def remainder(self) -> float:
        """The probability of every token not listed, together."""
        return max(0.0, 1.0 - math.fsum(math.exp(lp) for lp in self.logprobs))


@runtime_checkable
class PredictsTopNext(Protocol):
    """Engines that give only the K likeliest next tokens after a prompt, not the whole
    distribution (`%llm_next` on a server with log-probabilities, such as vLLM)."""

    def next_token_top(self, ids: Sequence[int], k: int) -> TopLogprobs:
        """The `k` likeliest tokens after `ids`; raises `LogprobsRefused` when the server will not give `k`."""
        ...


@dataclass(frozen=True)
class SampledNext:
    """One next token the engine drew (`SamplesNext`): its id and raw log-probability at
    temperature 1, and the K likeliest tokens of the same position (`top`), which need not
    include it: a token drawn from outside the top K is named only here."""

    id: int
    logprob: float
    top: TopLogprobs


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


__all__ = [
    "Chats",
    "ChatSession",
    "Completes",
    "Engine",
    "EngineInfo",
    "EngineKind",
    "ExplainsLimits",
    "FinishReason",
    "GenerationOptions",
    "HoldsModel",
    "KeepsScores",
    "PredictsNext",
    "PredictsTopNext",
    "PreparedTurn",
    "Reply",
    "SampledNext",
    "SamplesNext",
    "ScoresTokens",
    "Stats",
    "TextCallback",
    "TokenScores",
    "Tokenizes",
    "TopLogprobs",
]
