"""What `%llm_next` shows, as values: the sampling asked for, each candidate token, a distribution, steps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from ..errors import InvalidOption
from ..values import TEMPERATURE_RANGE, temperature_ok

#: Steps past this are a table nobody reads (and a minute of forward passes on a CPU).
MAX_STEPS = 100


#: Bars past this are noise for a lesson, and a heavy view.
MAX_SHOW = 100


#: Runners-up listed beside each step's chosen token.
RUNNERS_UP = 3


class Cut(str, Enum):
    """Why sampling can never pick a token; the value is what the views say."""

    TOP_K = "top-k"
    TOP_P = "top-p"
    GREEDY = "greedy"  # temperature 0: only the likeliest token is ever chosen


class StepsEnd(str, Enum):
    """Why a run of steps stopped."""

    STEPS = "steps done"
    END_OF_TEXT = "end of text"


class PartialSampling(str, Enum):
    """How much of what sampling does a server's top K tells (`distribution_from_top`)."""

    PLAIN = "plain"  # T = 1, no cut: each token is drawn with its own, known probability
    GREEDY = "greedy"  # only the likeliest is ever drawn, and it is listed
    TOP_K = "top-k"  # top-k keeps only listed tokens: the sampled column is exact
    TOP_P_CUTS_REST = "top-p cuts the rest"  # T = 1: top-p cuts every unlisted token and some listed
    TOP_P_KEEPS_REST = "top-p keeps some rest"  # T = 1: top-p keeps every listed token and some unlisted
    WITHIN_LISTED = "within the listed"  # temperature: the rest's tempered share is unknown

    @property
    def exact(self) -> bool:
        return self not in (PartialSampling.TOP_P_KEEPS_REST, PartialSampling.WITHIN_LISTED)


@dataclass(frozen=True)
class Sampling:
    """Temperature, top-k and top-p as `generate` takes them: `top_k=0` and `top_p=1` cut nothing,
    `temperature=0` is greedy."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self) -> None:
        """Raise `InvalidOption` for values that parse but make no sense."""
        t, p, k = self.temperature, self.top_p, self.top_k
        if not temperature_ok(t):
            raise InvalidOption(f"--temperature must be {TEMPERATURE_RANGE}; got {t}.")
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0 < p <= 1):
            raise InvalidOption(f"--top-p must be greater than 0 and at most 1 (1 cuts nothing); got {p}.")
        if not (isinstance(k, int) and k >= 0):
            raise InvalidOption(f"--top-k must be 0 (no limit) or more; got {k}.")

    def describe(self) -> str:
        parts = ["greedy (temperature 0)" if self.greedy else f"temperature {self.temperature:g}"]
        if not self.greedy:
            parts.append(f"top-k {self.top_k}" if self.top_k else "no top-k")
            parts.append(f"top-p {self.top_p:g}" if self.top_p < 1 else "no top-p")
        return " · ".join(parts)


@dataclass(frozen=True)
class Candidate:
    """One possible next token. `probability` is at temperature 1; `tempered` after the temperature;
    `sampled` what sampling gives it after the cuts (renormalised; 0 when cut).

    `text` is what the token adds to the text; for a token holding only some bytes of a character
    (byte-level tokenizers split emoji) it is "" and `partial_bytes` holds those bytes.
    """

    id: int
    token: str
    text: str
    rank: int
    logit: float
    probability: float
    tempered: float
    sampled: float
    cut: Cut | None = None
    special: bool = False
    partial_bytes: bytes | None = None


@dataclass(frozen=True)
class Asked:
    """What a distribution answers: which engine, after which text (and the prompt it became)."""

    name: str = ""
    text: str = ""
    prompt: str = ""
    prompt_tokens: int = 0
    chat: bool = False


#: The default `Asked`: a distribution computed outside any magic (tests, the Python API).
NOTHING_ASKED = Asked()


@dataclass(frozen=True)
class NextToken:
    """The next-token distribution after `prompt`, the view `%llm_next` draws.

    `candidates` are the likeliest tokens, in rank order (ties by id). Entropies are in bits.
    `kept` counts the tokens sampling can pick; `kept_tempered` is the share of the tempered
    probability they had before the cuts renormalised it.

    From a server (`known` is then the number of tokens it listed, `vocab_size` 0: unknown):
    `logit` holds each token's log-probability, `partial_sampling` says how much of `tempered`,
    `sampled`, the cuts, `kept` and `kept_tempered` the listed tokens tell exactly (else they are
    computed within them), `entropy` is a lower bound and `entropy_tempered` None.
    """

    name: str
    text: str
    prompt: str
    prompt_tokens: int
    chat: bool
    sampling: Sampling
    candidates: tuple[Candidate, ...]
    vocab_size: int
    kept: int
    kept_tempered: float
    entropy: float
    entropy_tempered: float | None
    notes: tuple[str, ...] = ()
    known: int | None = None
    partial_sampling: PartialSampling | None = None

    @property
    def partial(self) -> bool:
        """Only the top `known` tokens are known (a server's log-probabilities)."""
        return self.known is not None

    @property
    def exact_sampling(self) -> bool:
        """The sampled column (and the cuts) are what sampling really does."""
        return self.partial_sampling is None or self.partial_sampling.exact

    @property
    def shown_probability(self) -> float:
        return math.fsum(c.probability for c in self.candidates)

    @property
    def shown_tempered(self) -> float:
        return math.fsum(c.tempered for c in self.candidates)


@dataclass(frozen=True)
class Step:
    """One generated token: its probability and rank at temperature 1, its probability under the
    sampling that chose it, the runners-up, and the generated text so far.

    `piece` is the text the step completes: "" while a character's bytes are still arriving, then
    the whole character on the step that finishes it (`piece_ids` holds all its tokens' ids).

    From a server that drew the token: `rank` is None when the token is not among the `known`
    likeliest it listed; `sampled` is NaN where the listed tokens do not tell it.
    """

    index: int
    id: int
    token: str
    piece: str
    piece_ids: tuple[int, ...]
    probability: float
    sampled: float
    rank: int | None
    runners_up: tuple[Candidate, ...]
    text: str
    special: bool = False
    known: int | None = None


@dataclass(frozen=True)
class Steps:
    """`%llm_next --steps N`: the tokens chosen one at a time after `prompt`."""

    name: str
    text: str
    prompt: str
    prompt_tokens: int
    chat: bool
    sampling: Sampling
    sample: bool
    seed: int | None
    steps: tuple[Step, ...]
    end: StepsEnd
    requested: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: False when a server drew the tokens and `p sampled` is computed within its listed tokens.
    exact_sampling: bool = True
