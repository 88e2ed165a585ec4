"""The next token's distribution after some text (`%llm_next`), from full logits or a server's top K."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from ..errors import InvalidOption
from ..values import TopLogprobs
from .arithmetic import entropy_bits, entropy_lower_bound, partial_note, ranked, warp, warp_top
from .candidates import candidates_from_logits, candidates_from_top
from .reading import (
    chat_notes,
    check_context,
    lists_only_top,
    logits_after,
    prompt_ids,
    require_engine,
    top_logprobs,
)
from .results import MAX_SHOW, NOTHING_ASKED, Asked, NextToken, Sampling


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
    if lists_only_top(engine):
        check_context(engine, len(ids) + 1, "The text and the next token")
        # Enough listed tokens for the bars and for top-k, so what top-k keeps is always known.
        top = top_logprobs(engine, ids, max(show, top_k))
        result = distribution_from_top(
            top,
            tokenizer,
            sampling,
            about=Asked(engine.name, text, prompt, len(ids), chat),
            show=show,
        )
        return replace(result, notes=(*chat_notes(engine, chat), *result.notes))
    check_context(engine, len(ids), "The text")
    result = distribution_from_logits(
        logits_after(engine, ids),
        tokenizer,
        sampling,
        about=Asked(engine.name, text, prompt, len(ids), chat),
        show=show,
    )
    return replace(result, notes=chat_notes(engine, chat))


def distribution_from_logits(
    logits: Any,
    tokenizer: Any,
    sampling: Sampling,
    *,
    about: Asked = NOTHING_ASKED,
    show: int = 10,
) -> NextToken:
    """`NextToken` for logits already computed (the explorer's sliders reuse one forward pass)."""
    probs = logits.float().softmax(dim=-1)
    warped = warp(logits, sampling)
    order = ranked(logits)
    shown = [int(i) for i in order[: min(show, logits.numel())]]
    kept = ~(warped.cut_k | warped.cut_p)
    return NextToken(
        **asdict(about),
        sampling=sampling,
        candidates=tuple(candidates_from_logits(tokenizer, logits, warped, probs, shown)),
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
    about: Asked = NOTHING_ASKED,
    show: int = 10,
) -> NextToken:
    """`NextToken` from a server's top K only: exact T = 1 probabilities and ranks for those K;
    the sampled column exact where the K suffice (`PartialSampling`: greedy, T = 1 without cuts,
    top-k, top-p at T = 1 once it cuts a listed token), else computed within the K and marked
    approximate; the entropy as a lower bound. See the module's docstring."""
    warped, how = warp_top(top, sampling)
    kept = ~(warped.cut_k | warped.cut_p)
    candidates = candidates_from_top(tokenizer, top, warped, range(min(show, len(top.ids))))
    return NextToken(
        **asdict(about),
        sampling=sampling,
        candidates=tuple(candidates),
        vocab_size=0,
        kept=int(kept.sum()),
        kept_tempered=float(warped.tempered[kept].sum()),
        entropy=entropy_lower_bound(top),
        entropy_tempered=None,
        notes=(partial_note(top, sampling, how),),
        known=len(top.ids),
        partial_sampling=how,
    )
