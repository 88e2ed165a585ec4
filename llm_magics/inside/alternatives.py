"""A reply's alternatives: each token's probability, its runners-up, and where they would have led.

The numbers come from the reply itself (`engines.base.TokenScores`, kept when a turn is asked
with `--alternatives`): in process, `generate`'s own raw logits, as softmax(logits / temperature)
with the temperature the reply was drawn with (greedy: temperature 1; top-k, top-p and the
repetition penalty are not applied); on a server, its `logprobs`/`top_logprobs` (raw, temperature
1). Nothing is computed again for the numbers.

Branches (what the reply would have said had it taken a runner-up) cost generation, so they are
bounded: only the `expand` least likely tokens of the reply get them, each runner-up continued
greedily for `branch_tokens` tokens, all runners-up of one position in one batched `generate`.
They need the model in this process; a server's reply has none.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..engines.base import Chats, HoldsModel, KeepsScores
from ..errors import InvalidOption, NoAlternatives
from ..values import MAX_KEPT_SCORES, ScoreSource, TokenScores

#: The most runners-up `--show` lists per token; one more than this is kept per token, since the
#: token itself is usually among the likeliest.
MAX_SHOW = MAX_KEPT_SCORES - 1
#: How many runners-up a reply keeps per token (`GenerationOptions.keep_scores`).
KEPT = MAX_KEPT_SCORES
#: Bounds of the branch options: positions expanded, tokens per branch.
MAX_EXPAND = 50
MAX_BRANCH_TOKENS = 64


@dataclass(frozen=True)
class Alternative:
    """A token the model could have produced at a position, with the probability it gave it."""

    id: int | None
    token: str
    probability: float


@dataclass(frozen=True)
class Branch:
    """Where a runner-up leads: the alternative token, and the greedy continuation after it."""

    alternative: Alternative
    continuation: str


@dataclass(frozen=True)
class Position:
    """One token of the reply: its text, its probability, the runners-up (likeliest first, the
    token itself left out), the reply's text before it, and its branches when it was expanded."""

    index: int
    id: int | None
    token: str
    probability: float
    runners_up: tuple[Alternative, ...]
    prefix: str
    special: bool = False
    branches: tuple[Branch, ...] = ()


@dataclass(frozen=True)
class ReplyAlternatives:
    """A reply's tokens with their probabilities and runners-up (`%%llm_chat --alternatives`)."""

    model: str
    positions: tuple[Position, ...]
    show: int
    temperature: float
    source: ScoreSource
    expand: int = 0
    branch_tokens: int = 0
    #: Why there are no branches, when there are none (a server's reply).
    no_branches: str | None = None

    @property
    def probabilities(self) -> Any:
        """Each token's probability, as a numpy array."""
        import numpy

        return numpy.array([p.probability for p in self.positions], dtype=float)

    @property
    def text(self) -> str:
        return "".join(p.token for p in self.positions if not p.special)

    @property
    def expanded(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if p.branches)


def last_scores(engine: Any) -> TokenScores:
    """The scores of `engine`'s last reply (`KeepsScores`), or `NoAlternatives` in one line."""
    session = engine.session if isinstance(engine, Chats) else None
    scores = session.last_scores if isinstance(session, KeepsScores) else None
    if scores is None:
        raise NoAlternatives(
            f"The last reply of {engine.name} has no alternatives: ask with %%llm_chat --alternatives "
            "(they are not kept by --save, --load or %llm_reset)."
        )
    return scores


def check_show(show: int, flag: str = "--show") -> None:
    if not 1 <= show <= MAX_SHOW:
        raise InvalidOption(f"{flag} must be between 1 and {MAX_SHOW}; got {show}.")


def check_branches(expand: int, branch_tokens: int) -> None:
    if not 0 <= expand <= MAX_EXPAND:
        raise InvalidOption(f"--expand must be between 0 and {MAX_EXPAND}; got {expand}.")
    if not 1 <= branch_tokens <= MAX_BRANCH_TOKENS:
        raise InvalidOption(
            f"--branch-tokens must be between 1 and {MAX_BRANCH_TOKENS}; got {branch_tokens}."
        )


def reply_alternatives(
    engine: Any, scores: TokenScores, *, show: int = 5, expand: int = 3, branch_tokens: int = 8
) -> ReplyAlternatives:
    """The alternatives of a reply `engine` gave (its `scores`), with branches for the `expand`
    least likely tokens where the engine holds its model."""
    check_show(show)
    check_branches(expand, branch_tokens)
    tokenizer = getattr(engine, "tokenizer", None) if scores.source is ScoreSource.LOGITS else None
    positions = _positions(scores, tokenizer, show)
    holds = (
        isinstance(engine, HoldsModel) and engine.model is not None and scores.source is ScoreSource.LOGITS
    )
    no_branches = None if holds else "branches need the model in this process"
    if holds and expand:
        positions = _with_branches(engine.model, engine.tokenizer, scores, positions, expand, branch_tokens)
    return ReplyAlternatives(
        model=engine.name,
        positions=tuple(positions),
        show=show,
        temperature=scores.temperature,
        source=scores.source,
        expand=expand if holds else 0,
        branch_tokens=branch_tokens if holds else 0,
        no_branches=no_branches,
    )


def _positions(scores: TokenScores, tokenizer: Any, show: int) -> list[Position]:
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    positions = []
    prefix = ""
    for index, probability in enumerate(scores.probabilities):
        token_id = scores.ids[index] if scores.ids else None
        token = scores.tokens[index] if scores.tokens else _decode(tokenizer, [token_id])
        runners: list[Alternative] = []
        for rank, alt_probability in enumerate(scores.top_probabilities[index]):
            alt_id = scores.top_ids[index][rank] if scores.top_ids else None
            alt_token = scores.top_tokens[index][rank] if scores.top_tokens else _decode(tokenizer, [alt_id])
            same = alt_id == token_id if alt_id is not None else alt_token == token
            if not same and len(runners) < show:
                runners.append(Alternative(alt_id, alt_token, alt_probability))
        is_special = token_id in special
        positions.append(
            Position(index, token_id, token, probability, tuple(runners), prefix, special=is_special)
        )
        if not is_special:
            prefix += token
    return positions


def _decode(tokenizer: Any, ids: Sequence[int | None]) -> str:
    if tokenizer is None:
        return ""
    return str(tokenizer.decode([i for i in ids if i is not None], skip_special_tokens=False))


def _with_branches(
    model: Any,
    tokenizer: Any,
    scores: TokenScores,
    positions: list[Position],
    expand: int,
    branch_tokens: int,
) -> list[Position]:
    """`positions` with branches for the `expand` least likely ones (ties: the earlier first)."""

    chosen = sorted(range(len(positions)), key=lambda i: (positions[i].probability, i))[:expand]
    for index in chosen:
        position = positions[index]
        if not position.runners_up:
            continue
        prefix = [*scores.prompt_ids, *scores.ids[:index]]
        alternatives = [alt.id for alt in position.runners_up if alt.id is not None]
        continuations = continue_greedily(model, tokenizer, prefix, alternatives, branch_tokens)
        branches = tuple(
            Branch(alt, text) for alt, text in zip(position.runners_up, continuations, strict=True)
        )
        positions[index] = replace(position, branches=branches)
    return positions


def continue_greedily(
    model: Any, tokenizer: Any, prefix: Sequence[int], alternatives: Sequence[int], new_tokens: int
) -> list[str]:
    """For each alternative, the text greedy decoding gives after `prefix + [alternative]` (up to
    `new_tokens` tokens, cut at an end token), all in one batch: the rows have the same length."""
    import torch

    device = getattr(model, "device", "cpu")
    rows = torch.tensor([[*prefix, alt] for alt in alternatives], dtype=torch.long, device=device)
    eos = getattr(tokenizer, "eos_token_id", None)
    with torch.inference_mode():
        output = model.generate(
            input_ids=rows,
            attention_mask=torch.ones_like(rows),
            do_sample=False,
            max_new_tokens=new_tokens,
            pad_token_id=eos,
        )
    ends = _end_ids(model, tokenizer)
    texts = []
    for row in output[:, rows.shape[1] :].tolist():
        cut = next((i for i, token in enumerate(row) if token in ends), len(row))
        texts.append(str(tokenizer.decode(row[:cut], skip_special_tokens=True)))
    return texts


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return {i for i in ids if isinstance(i, int)}


__all__ = [
    "KEPT",
    "MAX_SHOW",
    "Alternative",
    "Branch",
    "Position",
    "ReplyAlternatives",
    "check_show",
    "continue_greedily",
    "last_scores",
    "reply_alternatives",
]
