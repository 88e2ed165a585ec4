"""Candidate tokens, labelled (visible text, bytes) for the views, from full logits or a server's top K."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..bytelevel import token_bytes
from ..tokens import special_ids
from ..values import TopLogprobs
from .arithmetic import Warped, cut_at, rank_of
from .reading import decode
from .results import Candidate


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[tuple[str, str, bool, bytes | None]]:
    """(vocabulary string, text, special, partial bytes) for each id."""
    special = special_ids(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(ids))
    out = []
    for token_id, token in zip(ids, tokens, strict=True):
        token = str(token)
        text = decode(tokenizer, [token_id])
        partial = None
        if "\ufffd" in text and "\ufffd" not in token:
            # Some bytes of a character: the decoded "�" would hide which ones.
            partial = token_bytes(token)
            text = "" if partial is not None else text
        out.append((token, text, token_id in special, partial))
    return out


def candidates_from_logits(
    tokenizer: Any, logits: Any, warped: Warped, probs: Any, ids: Sequence[int]
) -> list[Candidate]:
    out = []
    for token_id, (token, text, special, partial) in zip(ids, token_labels(tokenizer, ids), strict=True):
        cut = cut_at(warped, token_id)
        out.append(
            Candidate(
                id=int(token_id),
                token=token,
                text=text,
                rank=rank_of(logits, token_id),
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


def candidates_from_top(
    tokenizer: Any, top: TopLogprobs, warped: Warped, positions: Sequence[int]
) -> list[Candidate]:
    """Candidates at `positions` of a server's list; `warped` was computed over the list alone."""
    ids = [top.ids[i] for i in positions]
    out = []
    for position, token_id, (token, text, special, partial) in zip(
        positions, ids, token_labels(tokenizer, ids), strict=True
    ):
        cut = cut_at(warped, position)
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
