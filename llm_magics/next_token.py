"""The next token's distribution, and what temperature, top-k and top-p do to it (`%llm_next`).

No IPython here, and no model: everything goes through an engine that `PredictsNext` (the logits
of the token after some ids, from one forward pass) and `Tokenizes`. The probabilities are
`softmax(logits / T)`; the cuts are computed with the same tensor operations, in the same order,
as transformers' own `TemperatureLogitsWarper` → `TopKLogitsWarper` → `TopPLogitsWarper` in
`generate(do_sample=True)`, so a token shown as cut is one that `generate` could never pick, ties
included. Greedy steps take the argmax, as `generate(do_sample=False)` does.

A server gives less: only its K likeliest tokens' log-probabilities (`PredictsTopNext`, vLLM).
Then the T = 1 probabilities of those K, their ranks and the share outside them are exact, and the
rest of the vocabulary is one remainder, `1 - sum(top K)`, never drawn as tokens it is not known
to be. What sampling does is exact where the K suffice: greedy; T = 1 without cuts; top-k (K is
asked at least as large, so top-k keeps only listed tokens); top-p at T = 1 once it cuts a listed
token (every unlisted token, each less likely than any listed one, is cut before it). Elsewhere
temperature and the cuts are applied within the K listed tokens as if the rest did not exist,
and marked approximate (≈); the tempered column at T ≠ 1 always is. The entropy is a lower
bound. A note on the view says which case it is.

Sampling on a server is the server's own (`SamplesNext`): it draws the token with temperature,
top-k, top-p and a seed of ours, and lists its top K beside it in the same answer. The same seed
draws the same tokens; the token it drew is among what top-k and top-p allow by construction, and
the view's `p sampled` for it is exact exactly where the view's sampled column is.

Nothing is kept between calls: each result holds a few dozen numbers and strings, never a tensor.
torch is imported only inside the functions that compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from .bytelevel import token_bytes
from .conversation import check_text
from .engines.base import Engine, ExplainsLimits, PredictsNext, PredictsTopNext, SamplesNext, Tokenizes
from .errors import InvalidOption, NotSupported
from .tokens import special_ids
from .values import TEMPERATURE_RANGE, SampledNext, TopLogprobs, temperature_ok

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


# --------------------------------------------------------------------------- engine and prompt


def require_engine(engine: Any) -> Any:
    """`engine` when it can give next-token probabilities (all of them, or a server's top K), else
    `NotSupported` in one line."""
    if isinstance(engine, (PredictsNext, PredictsTopNext)) and isinstance(engine, Tokenizes):
        return engine
    name = getattr(engine, "name", "this model")
    reason = engine.why_not(PredictsNext) if isinstance(engine, ExplainsLimits) else None
    if reason:
        raise NotSupported(reason)
    if isinstance(engine, Engine) and engine.describe().tokenizer_only:
        why = "it is loaded as a tokenizer only; load it again without --tokenizer-only (add --reload)"
    else:
        why = "its engine does not give next-token probabilities; pick an in-process model with --model"
    raise NotSupported(f"%llm_next needs the model's probabilities, and {name} cannot give them: {why}.")


def prompt_ids(tokenizer: Any, text: str, *, chat: bool = False) -> tuple[list[int], str]:
    """The ids the model continues, and their text: `text` as `tokenizer(text)` encodes it, or with
    `chat` the user message through the chat template with the generation prompt (as `%%llm_chat`
    sends it)."""
    if not text:
        raise InvalidOption("Nothing to continue: give TEXT after %llm_next, or put it in a %%llm_next cell.")
    check_text(text)
    if chat:
        from .prompts import encode_messages

        ids = encode_messages(tokenizer, [{"role": "user", "content": text}])
    else:
        ids = list(tokenizer(text)["input_ids"])
    if not ids:
        raise InvalidOption("The text encodes to no tokens at all, so there is nothing to continue.")
    return ids, _decode(tokenizer, ids)


def _chat_notes(engine: Any, chat: bool) -> tuple[str, ...]:
    from .prompts import has_chat_template

    if chat and not has_chat_template(engine.tokenizer):
        return (
            f"{engine.name} has no chat template, so --chat continues the plain User:/Assistant: "
            "transcript that %%llm_chat sends it instead.",
        )
    return ()


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _check_context(engine: Any, n_tokens: int, what: str) -> None:
    limit = engine.context_window()
    if limit is not None and n_tokens > limit:
        raise InvalidOption(
            f"{what} needs {n_tokens:,} tokens, more than {engine.name}'s context of {limit:,}."
        )


def _partial(engine: Any) -> bool:
    """The engine gives only its top K (a server), not the whole distribution."""
    return not isinstance(engine, PredictsNext)


def _top(engine: Any, ids: Sequence[int], k: int) -> TopLogprobs:
    top = engine.next_token_top(list(ids), k)
    if not top.ids:
        raise TypeError("next_token_top must list at least one token")
    return top


def _logits(engine: Any, ids: Sequence[int]) -> Any:
    import torch

    logits = engine.next_token_logits(list(ids))
    logits = torch.as_tensor(logits).detach().to("cpu", torch.float32)
    if logits.dim() != 1:
        raise TypeError(f"next_token_logits must return a 1-D tensor, not shape {tuple(logits.shape)}")
    return logits


# --------------------------------------------------------------------------- the arithmetic


@dataclass(frozen=True)
class Warped:
    """Tensors over the vocabulary: tempered probabilities, sampling probabilities, and which
    tokens top-k and top-p remove (top-p's mask also holds what top-k removed before it)."""

    tempered: Any
    sampled: Any
    cut_k: Any
    cut_p: Any
    greedy: bool = False


def warp(logits: Any, sampling: Sampling) -> Warped:
    """What `generate(do_sample=True)` does to one position's logits, step by step.

    Temperature 0 is greedy: all the probability on the argmax (the first one at a tie, as
    `torch.argmax` and so `generate(do_sample=False)` choose), everything else cut.
    """
    import torch

    scores = logits.float().unsqueeze(0)
    none = torch.zeros_like(scores, dtype=torch.bool)
    if sampling.greedy:
        onehot = torch.zeros_like(scores)
        onehot[0, int(torch.argmax(scores[0]))] = 1.0
        return Warped(onehot[0], onehot[0], none[0], (onehot == 0)[0], greedy=True)
    # TemperatureLogitsWarper: generate skips it at 1.0, where the division changes nothing anyway.
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    tempered = scores.softmax(dim=-1)
    cut_k = none
    # TopKLogitsWarper, with generate's min_tokens_to_keep=1; ties with the k-th score are kept.
    if sampling.top_k != 0:
        k = min(max(sampling.top_k, 1), scores.size(-1))
        cut_k = scores < torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(cut_k, -float("inf"))
    cut_p = none
    # TopPLogitsWarper: drop the least likely tokens while what they add up to stays <= 1 - top_p.
    if sampling.top_p < 1.0:
        sorted_scores, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - sampling.top_p)
        remove[..., -1:] = 0
        cut_p = remove.scatter(1, sorted_indices, remove)
        scores = scores.masked_fill(cut_p, -float("inf"))
    return Warped(tempered[0], scores.softmax(dim=-1)[0], cut_k[0], cut_p[0])


def entropy_bits(probs: Any) -> float:
    """Shannon entropy of a probability vector, in bits (0 · log 0 counted as 0)."""
    import torch

    logs = torch.log2(probs.double())
    # max() also turns the -0.0 of a certain outcome into 0.0.
    return max(0.0, float(-torch.where(probs > 0, probs.double() * logs, torch.zeros_like(logs)).sum()))


def _ranked(logits: Any) -> Any:
    import torch

    # Stable: tokens with equal logits keep id order, so ranks are reproducible.
    return torch.sort(logits, descending=True, stable=True)[1]


# --------------------------------------------------------------------------- token labels


def _labels(tokenizer: Any, ids: Sequence[int]) -> list[tuple[str, str, bool, bytes | None]]:
    """(vocabulary string, text, special, partial bytes) for each id."""
    special = special_ids(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(ids))
    out = []
    for token_id, token in zip(ids, tokens, strict=True):
        token = str(token)
        text = _decode(tokenizer, [token_id])
        partial = None
        if "\ufffd" in text and "\ufffd" not in token:
            # Some bytes of a character: the decoded "�" would hide which ones.
            partial = token_bytes(token)
            text = "" if partial is not None else text
        out.append((token, text, token_id in special, partial))
    return out


def _cut_at(warped: Warped, index: int) -> Cut | None:
    """What removed the token at `index` of `warped` from sampling, if anything."""
    if bool(warped.cut_k[index]):
        return Cut.TOP_K
    if bool(warped.cut_p[index]):
        return Cut.GREEDY if warped.greedy else Cut.TOP_P
    return None


def _candidates(
    tokenizer: Any, logits: Any, warped: Warped, probs: Any, ids: Sequence[int]
) -> list[Candidate]:
    out = []
    for token_id, (token, text, special, partial) in zip(ids, _labels(tokenizer, ids), strict=True):
        cut = _cut_at(warped, token_id)
        out.append(
            Candidate(
                id=int(token_id),
                token=token,
                text=text,
                rank=_rank(logits, token_id),
                logit=float(logits[token_id]),
                probability=float(probs[token_id]),
                tempered=float(warped.tempered[token_id]),
                sampled=float(warped.sampled[token_id]),
                cut=cut,
                special=special,
                partial_bytes=partial,
            )
        )
    return out


def _top_candidates(
    tokenizer: Any, top: TopLogprobs, warped: Warped, positions: Sequence[int]
) -> list[Candidate]:
    """Candidates at `positions` of a server's list; `warped` was computed over the list alone."""
    ids = [top.ids[i] for i in positions]
    out = []
    for position, token_id, (token, text, special, partial) in zip(
        positions, ids, _labels(tokenizer, ids), strict=True
    ):
        cut = _cut_at(warped, position)
        out.append(
            Candidate(
                id=int(token_id),
                token=token,
                text=text,
                rank=position + 1,
                logit=top.logprobs[position],
                probability=math.exp(top.logprobs[position]),
                tempered=float(warped.tempered[position]),
                sampled=float(warped.sampled[position]),
                cut=cut,
                special=special,
                partial_bytes=partial,
            )
        )
    return out


def _warp_top(top: TopLogprobs, sampling: Sampling) -> tuple[Warped, PartialSampling]:
    """`warp` for a server's top K, exact where the K suffice (see `PartialSampling`); otherwise
    over the listed tokens alone, as if the rest of the vocabulary did not exist (their
    log-probabilities are logits up to a constant, which softmax ignores)."""
    import torch

    logprobs = torch.tensor(top.logprobs, dtype=torch.float64)
    probs = logprobs.exp()
    none = torch.zeros_like(probs, dtype=torch.bool)
    if sampling == Sampling():
        return Warped(probs, probs, none, none), PartialSampling.PLAIN
    if sampling.greedy:
        return warp(logprobs, sampling), PartialSampling.GREEDY
    if 1 <= sampling.top_k <= len(top.ids):
        return warp(logprobs, sampling), PartialSampling.TOP_K
    if sampling.temperature == 1.0 and sampling.top_k == 0:
        # TopPLogitsWarper walks up from the least likely token; every unlisted one is at most
        # the least listed one, so all the remainder comes before the listed tokens.
        cumulative = top.remainder + probs.flip(0).cumsum(0)
        remove = cumulative <= 1 - sampling.top_p
        remove[-1] = False
        cut_p = remove.flip(0)
        if bool(cut_p.any()):
            kept = probs.masked_fill(cut_p, 0.0)
            return Warped(probs, kept / kept.sum(), none, cut_p), PartialSampling.TOP_P_CUTS_REST
        return Warped(probs, probs, none, cut_p), PartialSampling.TOP_P_KEEPS_REST
    return warp(logprobs, sampling), PartialSampling.WITHIN_LISTED


def entropy_lower_bound(top: TopLogprobs) -> float:
    """Bits the whole distribution has at least, knowing only its top K: the listed tokens'
    share, plus the remainder R at its least spread. Every unlisted token has a probability of at
    most min(p_K, R), so together they add at least R · log2(1 / min(p_K, R))."""
    probs = [math.exp(lp) for lp in top.logprobs]
    known = -math.fsum(p * math.log2(p) for p in probs if p > 0)
    rest = top.remainder
    if rest <= 0:
        return max(0.0, known)
    return max(0.0, known + rest * math.log2(1 / min(min(probs), rest)))


def _partial_note(top: TopLogprobs, sampling: Sampling, how: PartialSampling) -> str:
    k = len(top.ids)
    note = (
        f"The server listed only its {k} likeliest tokens: the other {top.remainder:.1%} of the "
        "probability is spread over the rest of the vocabulary, token by token unknown."
    )
    if how is PartialSampling.PLAIN:
        return note
    if how is PartialSampling.GREEDY:
        return note + " Greedy needs only the likeliest token, so the sampled column is exact."
    if how is PartialSampling.TOP_K:
        tempered = (
            f"; ≈ p at T is computed within the {k} listed, as if the rest did not exist"
            if sampling.temperature != 1.0
            else ""
        )
        return (
            note
            + f" Top-k {sampling.top_k} keeps only listed tokens, so the sampled column is exact{tempered}."
        )
    if how is PartialSampling.TOP_P_CUTS_REST:
        return note + (
            f" Top-p {sampling.top_p:g} cuts every unlisted token first (each is less likely than any "
            "listed one), then some listed ones: its cuts and the sampled column are exact."
        )
    if how is PartialSampling.TOP_P_KEEPS_REST:
        most = 1 / (1 - min(top.remainder, 1 - sampling.top_p))
        return note + (
            f" Top-p {sampling.top_p:g} keeps every listed token and an unknown part of the rest: "
            f"≈ sampled shows each token's own probability, a lower bound (the true share is at most "
            f"{most:.3g} times it)."
        )
    return note + (
        f" Temperature, top-k and top-p are applied within those {k} as if the rest did not exist: "
        "p at T, sampled and the cuts are ≈ approximate."
    )


def _rank(logits: Any, token_id: int) -> int:
    """1 + how many tokens come before `token_id` in the stable descending order."""
    value = logits[token_id]
    return 1 + int((logits > value).sum()) + int((logits[:token_id] == value).sum())


# --------------------------------------------------------------------------- the two results


def next_token_distribution(
    engine: Any,
    text: str,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    show: int = 10,
    chat: bool = False,
) -> NextToken:
    """The next-token distribution after `text` (one forward pass), with the `show` likeliest
    tokens: their probabilities at temperature 1 and at `temperature`, and which ones top-k and
    top-p would cut.

    Example::

        dist = next_token_distribution(engine, "The capital of France is", temperature=0.7, top_p=0.9)
        [(c.text, round(c.tempered, 3), c.cut) for c in dist.candidates]
    """
    sampling = Sampling(temperature, top_k, top_p)
    sampling.validate()
    if not (isinstance(show, int) and 1 <= show <= MAX_SHOW):
        raise InvalidOption(f"--show must be between 1 and {MAX_SHOW}; got {show}.")
    engine = require_engine(engine)
    tokenizer = engine.tokenizer
    ids, prompt = prompt_ids(tokenizer, text, chat=chat)
    if _partial(engine):
        _check_context(engine, len(ids) + 1, "The text and the next token")
        # Enough listed tokens for the bars and for top-k, so what top-k keeps is always known.
        top = _top(engine, ids, max(show, top_k))
        result = distribution_from_top(
            top,
            tokenizer,
            sampling,
            about=Asked(engine.name, text, prompt, len(ids), chat),
            show=show,
        )
        return replace(result, notes=(*_chat_notes(engine, chat), *result.notes))
    _check_context(engine, len(ids), "The text")
    result = distribution_from_logits(
        _logits(engine, ids),
        tokenizer,
        sampling,
        about=Asked(engine.name, text, prompt, len(ids), chat),
        show=show,
    )
    return replace(result, notes=_chat_notes(engine, chat))


def distribution_from_logits(
    logits: Any,
    tokenizer: Any,
    sampling: Sampling,
    *,
    about: Asked = Asked(),
    show: int = 10,
) -> NextToken:
    """`NextToken` for logits already computed (the explorer's sliders reuse one forward pass)."""
    probs = logits.float().softmax(dim=-1)
    warped = warp(logits, sampling)
    order = _ranked(logits)
    shown = [int(i) for i in order[: min(show, logits.numel())]]
    kept = ~(warped.cut_k | warped.cut_p)
    return NextToken(
        **asdict(about),
        sampling=sampling,
        candidates=tuple(_candidates(tokenizer, logits, warped, probs, shown)),
        vocab_size=int(logits.numel()),
        kept=int(kept.sum()),
        kept_tempered=float(warped.tempered[kept].double().sum()),
        entropy=entropy_bits(probs),
        entropy_tempered=entropy_bits(warped.tempered),
    )


def distribution_from_top(
    top: TopLogprobs,
    tokenizer: Any,
    sampling: Sampling,
    *,
    about: Asked = Asked(),
    show: int = 10,
) -> NextToken:
    """`NextToken` from a server's top K only: exact T = 1 probabilities and ranks for those K;
    the sampled column exact where the K suffice (`PartialSampling`: greedy, T = 1 without cuts,
    top-k, top-p at T = 1 once it cuts a listed token), else computed within the K and marked
    approximate; the entropy as a lower bound. See the module's docstring."""
    warped, how = _warp_top(top, sampling)
    kept = ~(warped.cut_k | warped.cut_p)
    candidates = _top_candidates(tokenizer, top, warped, range(min(show, len(top.ids))))
    return NextToken(
        **asdict(about),
        sampling=sampling,
        candidates=tuple(candidates),
        vocab_size=0,
        kept=int(kept.sum()),
        kept_tempered=float(warped.tempered[kept].sum()),
        entropy=entropy_lower_bound(top),
        entropy_tempered=None,
        notes=(_partial_note(top, sampling, how),),
        known=len(top.ids),
        partial_sampling=how,
    )


def next_token_steps(
    engine: Any,
    text: str,
    *,
    steps: int,
    sample: bool = False,
    seed: int | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    chat: bool = False,
    runners_up: int = RUNNERS_UP,
) -> Steps:
    """`steps` tokens chosen one at a time after `text`: greedy (the argmax, as
    `generate(do_sample=False)`), or with `sample` drawn from the tempered, cut distribution with
    a generator seeded by `seed` (the same seed gives the same tokens). Stops early at the
    tokenizer's end-of-sequence token.

    On a server that samples (`SamplesNext`) the server draws each token, step i (from 0) with
    the seed `seed + i`: a seed per request is what vLLM takes, and the same `seed` draws the same
    tokens again.
    """
    import torch

    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise InvalidOption(f"--steps must be between 1 and {MAX_STEPS}; got {steps}.")
    sampling = Sampling(temperature, top_k, top_p) if sample else Sampling(0.0)
    sampling.validate()
    if seed is not None and not (0 <= seed < 2**63):
        raise InvalidOption(f"--seed must be between 0 and 2**63 - 1; got {seed}.")
    if seed is not None and not sample:
        raise InvalidOption("--seed only matters with --sample (greedy steps need no seed).")
    engine = require_engine(engine)
    partial = _partial(engine)
    server_draws = partial and sample and not sampling.greedy
    if server_draws and not isinstance(engine, SamplesNext):
        raise NotSupported(
            f"--sample draws from the whole distribution, and {engine.name}'s server lists only its "
            "likeliest tokens and draws none for us: drop --sample for greedy steps, or let the server "
            "sample with %%llm_complete --temperature T --seed S."
        )
    tokenizer = engine.tokenizer
    ids, prompt = prompt_ids(tokenizer, text, chat=chat)
    _check_context(engine, len(ids) + steps, f"The text and {steps} steps")
    notes = list(_chat_notes(engine, chat))
    # Enough listed tokens for the runners-up, and for top-k: then the drawn token is listed.
    listed = max(runners_up + 1, sampling.top_k if server_draws else 0, 1)
    if partial and not server_draws:
        notes.append(
            f"From the server's top {runners_up + 1} log-probabilities at each step: the probabilities "
            "and ranks are exact, greedy needs nothing more."
        )
    if sample and seed is None:
        seed = int(torch.seed() % 2**63)
        notes.append(f"No --seed given: this run used --seed {seed}; give it to get the same tokens again.")
    generator = torch.Generator().manual_seed(seed) if sample and seed is not None else None
    eos = getattr(tokenizer, "eos_token_id", None)

    base = _decode(tokenizer, ids)
    generated: list[int] = []
    done: list[Step] = []
    shown_text = ""
    pending: list[int] = []
    end = StepsEnd.STEPS
    hows: set[PartialSampling] = set()
    for index in range(steps):
        rank: int | None
        known: int | None = None
        if server_draws:
            assert seed is not None
            drawn = _draw(engine, ids + generated, listed, sampling, (seed + index) % 2**63)
            chosen, top = drawn.id, drawn.top
            top_warped, how = _warp_top(top, sampling)
            hows.add(how)
            probability, known = math.exp(drawn.logprob), len(top.ids)
            if chosen in top.ids:
                position = top.ids.index(chosen)
                rank, sampled = position + 1, float(top_warped.sampled[position])
            else:
                # Below the listed: at T = 1 without cuts it is drawn with its own probability;
                # otherwise its share is not told by the listed tokens.
                rank, sampled = None, probability if how is PartialSampling.PLAIN else math.nan
            others_at = [i for i, token_id in enumerate(top.ids) if token_id != chosen][:runners_up]
            runner_candidates = _top_candidates(tokenizer, top, top_warped, others_at)
        elif partial:
            # Greedy: the server's likeliest is the argmax (its list is sorted, ties by id).
            top = _top(engine, ids + generated, runners_up + 1)
            top_warped, _ = _warp_top(top, sampling)
            chosen = top.ids[0]
            probability, sampled, rank = math.exp(top.logprobs[0]), float(top_warped.sampled[0]), 1
            others_at = list(range(1, min(len(top.ids), runners_up + 1)))
            runner_candidates = _top_candidates(tokenizer, top, top_warped, others_at)
        else:
            logits = _logits(engine, ids + generated)
            warped = warp(logits, sampling)
            if generator is not None and not sampling.greedy:
                chosen = int(torch.multinomial(warped.sampled.unsqueeze(0), 1, generator=generator)[0, 0])
            else:
                chosen = int(torch.argmax(logits))
            probs = logits.softmax(dim=-1)
            probability, sampled = float(probs[chosen]), float(warped.sampled[chosen])
            rank = _rank(logits, chosen)
            order = _ranked(logits)
            others = [int(i) for i in order[: runners_up + 1] if int(i) != chosen][:runners_up]
            runner_candidates = _candidates(tokenizer, logits, warped, probs, others)
        generated.append(chosen)
        (token, _, special, _) = _labels(tokenizer, [chosen])[0]
        pending.append(chosen)
        grown = _decode(tokenizer, ids + generated)
        grown = grown[len(base) :] if grown.startswith(base) else _decode(tokenizer, generated)
        piece_ids: tuple[int, ...] = ()
        if grown.endswith("\ufffd") and "\ufffd" not in token:
            piece = ""
        else:
            piece, piece_ids = grown[len(shown_text) :], tuple(pending)
            shown_text, pending = grown, []
        done.append(
            Step(
                index=index + 1,
                id=chosen,
                token=token,
                piece=piece,
                piece_ids=piece_ids,
                probability=probability,
                sampled=sampled,
                rank=rank,
                runners_up=tuple(runner_candidates),
                text=shown_text,
                special=special,
                known=known,
            )
        )
        if eos is not None and chosen == eos:
            end = StepsEnd.END_OF_TEXT
            break
    exact = all(how.exact for how in hows)
    if server_draws:
        notes.append(_drawn_note(listed, sampling, seed, exact))
    return Steps(
        name=engine.name,
        text=text,
        prompt=prompt,
        prompt_tokens=len(ids),
        chat=chat,
        sampling=sampling,
        sample=sample,
        seed=seed if sample else None,
        steps=tuple(done),
        end=end,
        requested=steps,
        notes=tuple(notes),
        exact_sampling=exact,
    )


def _draw(engine: Any, ids: Sequence[int], k: int, sampling: Sampling, seed: int) -> SampledNext:
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


def _drawn_note(k: int, sampling: Sampling, seed: int | None, exact: bool) -> str:
    note = (
        f"The server drew each token ({sampling.describe()}; step i with seed {seed} + i, so the same "
        f"--seed draws the same tokens); probabilities and ranks are from its top {k} log-probabilities."
    )
    if exact:
        return note + " The listed tokens tell what sampling does here, so p sampled is exact."
    return note + (
        " p sampled is ≈: computed within the listed tokens as if the rest did not exist "
        "(top-k, or top-p at temperature 1, makes it exact)."
    )


def _asked_in(session: NextTokenSession | ServerNextTokenSession, ids: Sequence[int]) -> Asked:
    """What an explorer's distribution answers now: its text, grown by the tokens appended."""
    prompt = _decode(session.engine.tokenizer, ids) if session._appended else session.prompt
    return Asked(session.engine.name, session.text, prompt, len(ids), session.chat)


class NextTokenSession:
    """The state behind `%llm_next --live`: the typed text, the tokens appended since (greedy or
    sampled), and the logits for the current ids. One forward pass per change of the ids; moving
    a slider only re-applies temperature, top-k and top-p to the logits it already has.
    """

    def __init__(self, engine: Any, *, chat: bool = False, show: int = 10, seed: int | None = None) -> None:
        import torch

        self.engine = require_engine(engine)
        if _partial(self.engine):
            raise TypeError("a server lists only its top K: next_token_session() gives its session")
        self.chat = chat
        self.show = show
        self.text = ""
        self.prompt = ""
        self._ids: list[int] = []
        self._appended: list[int] = []
        self._logits: Any = None
        self._generator = torch.Generator().manual_seed(
            seed if seed is not None else int(torch.seed() % 2**63)
        )

    def set_text(self, text: str) -> None:
        """Start again from `text` (appended tokens are dropped); raises `InvalidOption` and keeps
        the previous state when the text cannot be encoded."""
        ids, prompt = prompt_ids(self.engine.tokenizer, text, chat=self.chat)
        _check_context(self.engine, len(ids), "The text")
        logits = _logits(self.engine, ids)
        self.text, self.prompt, self._ids, self._appended, self._logits = text, prompt, ids, [], logits

    def append(self, sampling: Sampling, *, sample: bool) -> int:
        """Append the likeliest token, or one drawn under `sampling`; returns its id."""
        import torch

        sampling.validate()
        self._require_text()
        _check_context(self.engine, len(self._ids) + len(self._appended) + 1, "One more token")
        if sample and not sampling.greedy:
            probs = warp(self._logits, sampling).sampled
            chosen = int(torch.multinomial(probs.unsqueeze(0), 1, generator=self._generator)[0, 0])
        else:
            chosen = int(torch.argmax(self._logits))
        logits = _logits(self.engine, [*self._ids, *self._appended, chosen])
        self._appended.append(chosen)
        self._logits = logits
        return chosen

    def undo(self) -> None:
        """Remove the last appended token (nothing to undo is not an error)."""
        if self._appended:
            self._appended.pop()
            self._logits = _logits(self.engine, self._ids + self._appended)

    def appended_text(self) -> str:
        return _decode(self.engine.tokenizer, self._appended) if self._appended else ""

    def distribution(self, sampling: Sampling) -> NextToken:
        sampling.validate()
        self._require_text()
        ids = self._ids + self._appended
        return distribution_from_logits(
            self._logits,
            self.engine.tokenizer,
            sampling,
            about=_asked_in(self, ids),
            show=self.show,
        )

    def _require_text(self) -> None:
        if self._logits is None:
            raise InvalidOption("Type some text first: the model needs something to continue.")


class ServerNextTokenSession:
    """`%llm_next --live` on a server that lists its top K (`PredictsTopNext`): the same buttons as
    `NextTokenSession`, the view `distribution_from_top` draws (≈ where the K do not tell).

    One request per change of the ids, asking for `max(show, top-k)` tokens; a slider move reuses
    that answer unless top-k asks for more listed tokens than it has. "greedy" appends the listed
    likeliest; "sample" lets the server draw (`SamplesNext`), the n-th draw of the session with the
    seed `seed + n`, so the same seed and the same clicks draw the same tokens. "undo" goes back to
    the previous answer without a request. Everything runs in the caller's thread.
    """

    def __init__(self, engine: Any, *, chat: bool = False, show: int = 10, seed: int | None = None) -> None:
        import torch

        self.engine = require_engine(engine)
        if not _partial(self.engine):
            raise TypeError("an engine with the whole distribution takes NextTokenSession")
        self.chat = chat
        self.show = show
        self.text = ""
        self.prompt = ""
        self.seed = seed if seed is not None else int(torch.seed() % 2**63)
        self.draws = 0
        self._ids: list[int] = []
        self._appended: list[int] = []
        # One server answer per prefix ([0] for the text, [i] after i appended tokens), and how
        # many tokens each asked for (a server may list fewer).
        self._tops: list[TopLogprobs] = []
        self._asked: list[int] = []

    def set_text(self, text: str) -> None:
        """Start again from `text` (appended tokens are dropped); raises and keeps the previous
        state when the text cannot be encoded or the server refuses."""
        ids, prompt = prompt_ids(self.engine.tokenizer, text, chat=self.chat)
        _check_context(self.engine, len(ids) + 1, "The text and the next token")
        top = _top(self.engine, ids, self.show)
        self.text, self.prompt, self._ids, self._appended = text, prompt, ids, []
        self._tops, self._asked = [top], [self.show]

    def append(self, sampling: Sampling, *, sample: bool) -> int:
        """Append the listed likeliest token, or one the server draws under `sampling`; its id."""
        sampling.validate()
        self._require_text()
        ids = self._ids + self._appended
        _check_context(self.engine, len(ids) + 2, "One more token")
        draw = sample and not sampling.greedy
        if draw and not isinstance(self.engine, SamplesNext):
            raise NotSupported(
                f"{self.engine.name}'s server lists its likeliest tokens but draws none for us: "
                "use greedy, or load the model here with %llm_load."
            )
        if draw:
            listed = max(self.show, sampling.top_k, 1)
            chosen = _draw(self.engine, ids, listed, sampling, (self.seed + self.draws) % 2**63).id
        else:
            chosen = self._tops[-1].ids[0]
        top = _top(self.engine, [*ids, chosen], self.show)
        self.draws += int(draw)
        self._appended.append(chosen)
        self._tops.append(top)
        self._asked.append(self.show)
        return chosen

    def undo(self) -> None:
        """Remove the last appended token (nothing to undo is not an error)."""
        if self._appended:
            self._appended.pop()
            self._tops.pop()
            self._asked.pop()

    def appended_text(self) -> str:
        return _decode(self.engine.tokenizer, self._appended) if self._appended else ""

    def distribution(self, sampling: Sampling) -> NextToken:
        sampling.validate()
        self._require_text()
        ids = self._ids + self._appended
        wanted = max(self.show, sampling.top_k)
        top = self._tops[-1]
        if wanted > self._asked[-1]:
            # Top-k past the listed tokens: ask again, so what top-k keeps stays known.
            top = _top(self.engine, ids, wanted)
            self._tops[-1], self._asked[-1] = top, wanted
        return distribution_from_top(
            top,
            self.engine.tokenizer,
            sampling,
            about=_asked_in(self, ids),
            show=self.show,
        )

    def _require_text(self) -> None:
        if not self._tops:
            raise InvalidOption("Type some text first: the model needs something to continue.")


def next_token_session(
    engine: Any, *, chat: bool = False, show: int = 10, seed: int | None = None
) -> NextTokenSession | ServerNextTokenSession:
    """The state behind `%llm_next --live` for `engine`: the whole distribution in-process, or a
    server's top K."""
    engine = require_engine(engine)
    kind = ServerNextTokenSession if _partial(engine) else NextTokenSession
    return kind(engine, chat=chat, show=show, seed=seed)


__all__ = [
    "Asked",
    "MAX_SHOW",
    "MAX_STEPS",
    "Candidate",
    "Cut",
    "NextToken",
    "NextTokenSession",
    "PartialSampling",
    "ServerNextTokenSession",
    "Sampling",
    "Step",
    "Steps",
    "StepsEnd",
    "distribution_from_logits",
    "distribution_from_top",
    "entropy_lower_bound",
    "entropy_bits",
    "next_token_distribution",
    "next_token_session",
    "next_token_steps",
    "prompt_ids",
    "require_engine",
    "token_bytes",
    "warp",
]
