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

One module per concern: `results` (the values), `reading` (what the engine tells),
`arithmetic` (what sampling does), `candidates` (labelled tokens), `distribution`, `steps`,
`sessions` (the live explorer).
"""

from __future__ import annotations

from .arithmetic import Warped, entropy_bits, entropy_lower_bound, warp
from .distribution import distribution_from_logits, distribution_from_top, next_token_distribution
from .reading import prompt_ids, require_engine
from .results import (
    MAX_SHOW,
    MAX_STEPS,
    RUNNERS_UP,
    Asked,
    Candidate,
    Cut,
    NextToken,
    PartialSampling,
    Sampling,
    Step,
    Steps,
    StepsEnd,
)
from .sessions import NextTokenSession, ServerNextTokenSession, next_token_session
from .steps import next_token_steps

__all__ = [
    "Asked",
    "Candidate",
    "Cut",
    "MAX_SHOW",
    "MAX_STEPS",
    "NextToken",
    "NextTokenSession",
    "PartialSampling",
    "RUNNERS_UP",
    "Sampling",
    "ServerNextTokenSession",
    "Step",
    "Steps",
    "StepsEnd",
    "Warped",
    "distribution_from_logits",
    "distribution_from_top",
    "entropy_bits",
    "entropy_lower_bound",
    "next_token_distribution",
    "next_token_session",
    "next_token_steps",
    "prompt_ids",
    "require_engine",
    "warp",
]
