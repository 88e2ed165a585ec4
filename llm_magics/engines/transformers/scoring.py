"""Probabilities in process: each token's given the ones before it (`ScoresTokens`, one forward
pass), and a reply's tokens with their runners-up from `generate`'s own logits (`--alternatives`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...values import TokenProbs, TokenScores


def token_probabilities(model: Any, tokenizer: Any, ids: Sequence[int], *, top_k: int = 5) -> TokenProbs:
    """Each token's probability given the ones before it, with the top `k` alternatives, from one
    forward pass; perplexity is exp of the mean negative log-likelihood of tokens 2..n."""
    import torch

    if not ids:
        return TokenProbs([], [], None)
    # transformers models know where their inputs go (the first device under a device_map).
    device = getattr(model, "device", None) or next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(ids)], device=device)).logits[0].float()
    log_probs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(list(ids[1:]), device=log_probs.device)
    chosen = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    top_values, top_ids = log_probs.topk(max(1, min(top_k, log_probs.shape[-1])), dim=-1)
    top_ids_list = top_ids.tolist()
    top_probs_list = top_values.exp().tolist()
    distinct = sorted({i for row in top_ids_list for i in row})
    name_of = dict(zip(distinct, tokenizer.convert_ids_to_tokens(distinct), strict=True))
    probs: list[float | None] = [None, *chosen.exp().tolist()]
    top: list[list[tuple[int | None, str, float]] | None] = [None]
    for row_ids, row_probs in zip(top_ids_list, top_probs_list, strict=True):
        top.append([(i, str(name_of[i]), p) for i, p in zip(row_ids, row_probs, strict=True)])
    perplexity = math.exp(-chosen.mean().item()) if len(ids) > 1 else None
    return TokenProbs(probs, top, perplexity)


def scores_from_logits(
    logits: Sequence[Any], ids: Sequence[int], k: int, temperature: float, prompt_ids: Sequence[int] = ()
) -> TokenScores:
    """Each token's probability and the `k` likeliest of its position, from `generate`'s raw logits
    (one `(1, vocab)` tensor per new token), as softmax(logits / temperature); greedy: temperature 1."""
    import torch

    steps = min(len(logits), len(ids))
    scale = temperature or 1.0
    if steps == 0:
        return TokenScores((), (), (), (), scale, tuple(prompt_ids))
    probs = torch.softmax(torch.cat([row.float() for row in logits[:steps]]) / scale, dim=-1)
    chosen = torch.tensor(list(ids[:steps]), device=probs.device)
    picked = probs.gather(1, chosen[:, None])[:, 0]
    top = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)
    return TokenScores(
        ids=tuple(int(i) for i in ids[:steps]),
        probabilities=tuple(float(p) for p in picked.cpu().tolist()),
        top_ids=tuple(tuple(row) for row in top.indices.cpu().tolist()),
        top_probabilities=tuple(tuple(row) for row in top.values.cpu().tolist()),
        temperature=scale,
        prompt_ids=tuple(prompt_ids),
    )
