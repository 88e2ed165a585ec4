"""`ScoresTokens` in process: each token's probability given the ones before it, one forward pass."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...values import TokenProbs


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
