"""The values every layer exchanges: generation options and their bounds, replies, engine facts.

At the bottom of the package with `errors`, `conversation` and `prompts`: engines produce these,
the analyses and magics read them, and this module imports none of those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .conversation import Message
from .errors import InvalidOption

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


class DecodingMode(str, Enum):
    """How a model on CPU decodes (`%config LlmMagics.cpu_decoding`; `engines.transformers.decoding`
    says what each does)."""

    EXACT = "exact"
    FASTEST = "fastest"
    TRANSFORMERS = "transformers"


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


@dataclass(frozen=True)
class EngineSettings:
    """The session's settings an in-process engine runs with (`TakesSettings`), from the magics'
    traits just before each call: how a model on CPU decodes, whether a conversation reuses its
    key/value cache, and the clock its timings read."""

    cpu_decoding: DecodingMode
    reuse_cache: bool
    clock: Callable[[], float]


@dataclass
class Stats:
    """What the footer shows. `tokens_per_second` is the decoding rate, after the first token.
    `prompt_tokens` is None where a server did not say how many it read."""

    prompt_tokens: int | None
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


class ScoreSource(str, Enum):
    """Where a reply's `TokenScores` came from."""

    LOGITS = "logits"  # the whole distribution, in process
    LOGPROBS = "logprobs"  # a server's top log-probabilities


@dataclass(frozen=True)
class TokenScores:
    """What the model gave each token of a reply: its probability and the likeliest tokens of its
    position, likeliest first (`--alternatives`).

    Probabilities are the softmax of the raw logits divided by the temperature the reply was drawn
    with (greedy: temperature 1); top-k, top-p and the repetition penalty are not applied.
    `prompt_ids` are what the reply followed, where the engine knows them (in process), so
    branches can be generated from any position.
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
    source: ScoreSource = ScoreSource.LOGITS


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


@dataclass(frozen=True)
class SampledNext:
    """One next token the engine drew (`SamplesNext`): its id and raw log-probability at
    temperature 1, and the K likeliest tokens of the same position (`top`), which need not
    include it: a token drawn from outside the top K is named only here."""

    id: int
    logprob: float
    top: TopLogprobs


@dataclass
class TokenProbs:
    """Probability of each token under the model given the tokens before it (one forward pass).

    `probs[i]` and `top[i]` are None for the first token, which nothing predicts. `top[i]` holds
    the model's `k` likeliest tokens at that position as (id, token string, probability); the id is
    None where the engine names alternatives by their text only (a server's log-probabilities).
    """

    probs: list[float | None]
    top: list[list[tuple[int | None, str, float]] | None]
    perplexity: float | None
