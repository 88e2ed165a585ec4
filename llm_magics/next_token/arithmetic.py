"""The arithmetic of sampling: temperature, top-k and top-p applied as `generate` applies them, entropy, ranks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..values import TopLogprobs
from .results import Cut, PartialSampling, Sampling


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


def ranked(logits: Any) -> Any:
    import torch

    # Stable: tokens with equal logits keep id order, so ranks are reproducible.
    return torch.sort(logits, descending=True, stable=True)[1]


def cut_at(warped: Warped, index: int) -> Cut | None:
    """What removed the token at `index` of `warped` from sampling, if anything."""
    if bool(warped.cut_k[index]):
        return Cut.TOP_K
    if bool(warped.cut_p[index]):
        return Cut.GREEDY if warped.greedy else Cut.TOP_P
    return None


def warp_top(top: TopLogprobs, sampling: Sampling) -> tuple[Warped, PartialSampling]:
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


def partial_note(top: TopLogprobs, sampling: Sampling, how: PartialSampling) -> str:
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


def rank_of(logits: Any, token_id: int) -> int:
    """1 + how many tokens come before `token_id` in the stable descending order."""
    value = logits[token_id]
    return 1 + int((logits > value).sum()) + int((logits[:token_id] == value).sum())
