"""A remote engine whose server gives log-probabilities (vLLM): the prompt's token probabilities,
the next token's top K, and one next token the server draws, seeded."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...errors import LogprobsRefused, NotOpenAICompatible, RemoteError, SamplingRefused
from ...values import SampledNext, TokenProbs, TopLogprobs
from .dialects import VLLM_DEFAULT_MAX_LOGPROBS
from .engine import TokenizingRemoteEngine


class ScoringRemoteEngine(TokenizingRemoteEngine):
    """A remote engine whose server gives prompt log-probabilities (vLLM's `/v1/completions` with
    `echo`, `logprobs` and `max_tokens=0`), so `%tokens --probs` works."""

    def token_probabilities(self, ids: Sequence[int], *, top_k: int = 5) -> Any:
        """`TokenProbs` of `ids`, computed by the server in one prompt pass (no token generated).

        The server names each alternative by its text, not its id: alternatives carry id None.
        """
        if not ids:
            return TokenProbs([], [], None)
        with self._server.errors():
            answer = self._server.client.completions.create(
                model=self.model,
                prompt=list(ids),
                max_tokens=0,
                echo=True,
                logprobs=max(1, top_k),
                temperature=0,
            )
        try:
            logprobs = answer.choices[0].logprobs
            chosen = list(logprobs.token_logprobs)
            tops = list(logprobs.top_logprobs)
        except (AttributeError, IndexError, TypeError) as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url} gave no prompt log-probabilities (echo with logprobs)."
            ) from exc
        probs: list[float | None] = [None if lp is None else math.exp(lp) for lp in chosen[: len(ids)]]
        probs[0] = None
        top: list[list[tuple[int | None, str, float]] | None] = [None]
        for row in tops[1 : len(ids)]:
            ranked = sorted((row or {}).items(), key=lambda item: -item[1])[:top_k]
            top.append([(None, token, math.exp(lp)) for token, lp in ranked])
        known = [lp for lp in chosen[1 : len(ids)] if lp is not None]
        perplexity = math.exp(-sum(known) / len(known)) if known else None
        return TokenProbs(probs, top, perplexity)

    def _probs_note(self) -> str:
        return "from the server (prompt log-probabilities)"

    def _next_note(self) -> str:
        return f"the server's top log-probabilities (vLLM gives at most {VLLM_DEFAULT_MAX_LOGPROBS} unless started with more)"

    def next_token_top(self, ids: Sequence[int], k: int) -> TopLogprobs:
        """The `k` likeliest tokens after `ids` and their raw log-probabilities, from one
        `/v1/completions` request that generates one greedy token (`PredictsTopNext`).

        What vLLM gives, and why it is asked this way:
        - `logprobs=k` with `max_tokens=1`: OpenAI's legacy `logprobs.top_logprobs[0]`, the `k`
          likeliest tokens of the one generated position (plus the sampled token when it is not
          among them: greedy, it always is). Above the server's `--max-logprobs` (20 by default)
          vLLM refuses the request with a 400, which becomes `LogprobsRefused`.
        - `return_tokens_as_token_ids`: the keys come as "token_id:1234" instead of decoded text,
          which two tokens can share (the bytes of one emoji all decode to "�"), so no entry is lost
          and the ids are exact (vLLM's CompletionRequest field of that name).
        - The values are raw: vLLM's default `--logprobs-mode raw_logprobs` takes them from the
          model's logits before temperature, penalties, top-k and top-p (vllm/v1/sample/sampler.py,
          step 1 of `Sampler`); temperature 0 is sent anyway, so nothing is sampled.
        - `--chat` sends ids too: the chat template's, from `/tokenize` with `messages` and
          `add_generation_prompt` (vLLM's TokenizeChatRequest in
          vllm/entrypoints/serve/tokenize/protocol.py: the server's own template). One request
          shape for both, and the view knows the prompt's ids and text, as `%tokens --chat` shows
          them; `/v1/chat/completions` with `top_logprobs` would hide the prompt it built.
        """

        def refused(said: str) -> LogprobsRefused:
            return LogprobsRefused(
                f"{self.endpoint.url} refused {k} log-probabilities per token (400: {said or 'no reason given'}). "
                f"vLLM gives at most its --max-logprobs ({VLLM_DEFAULT_MAX_LOGPROBS} unless started with more): "
                f"lower --show and --top-k (with --steps, LlmMagics.next_runners_up), or restart vLLM "
                f"with --max-logprobs {k}."
            )

        return self._one_token(ids, k, {"temperature": 0}, refused).top

    def sample_next(
        self, ids: Sequence[int], k: int, *, temperature: float, top_k: int, top_p: float, seed: int
    ) -> SampledNext:
        """One token after `ids` drawn by the server (`SamplesNext`), and the `k` likeliest of the
        same position, from one `/v1/completions` request with `max_tokens=1` (as `next_token_top`).

        The fields, as vLLM's `CompletionRequest` takes them (vllm/entrypoints/openai/protocol.py,
        `to_sampling_params` → `SamplingParams`): `temperature` and `top_p` are OpenAI's; `seed` is
        OpenAI's too, and vLLM gives the request a generator of its own seeded with it, so the same
        seed and prompt draw the same token ("Random seed to use for the generation", vLLM's
        SamplingParams); `top_k` is a vLLM extra (sent in the body, -1 for none, as `_sampling`
        does). vLLM applies temperature, then top-k and top-p, then draws; the log-probabilities
        stay raw (`--logprobs-mode raw_logprobs`), and the drawn token is listed beside the top
        `k` when it is not among them, with its own in `token_logprobs[0]`.
        """

        def refused(said: str) -> SamplingRefused:
            return SamplingRefused(
                f"{self.endpoint.url} would not draw the next token with temperature {temperature:g}, "
                f"top-k {top_k}, top-p {top_p:g}, seed {seed} and {k} log-probabilities "
                f"(400: {said or 'no reason given'}). vLLM gives at most its --max-logprobs "
                f"({VLLM_DEFAULT_MAX_LOGPROBS} unless started with more): lower --top-k and "
                "LlmMagics.next_runners_up, or restart vLLM with more."
            )

        fields: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "seed": seed}
        return self._one_token(ids, k, fields, refused, extra={"top_k": top_k or -1})

    def _one_token(
        self,
        ids: Sequence[int],
        k: int,
        fields: dict[str, Any],
        refused: Callable[[str], RemoteError],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> SampledNext:
        """The one-token request both `next_token_top` and `sample_next` send, and its answer read
        by token id: the generated token, and the top `k` of its position."""
        with self._server.errors(bad_request=refused):
            answer = self._server.client.completions.create(
                model=self.model,
                prompt=list(ids),
                max_tokens=1,
                logprobs=k,
                extra_body={"return_tokens_as_token_ids": True, **(extra or {})},
                **fields,
            )
        try:
            logprobs = answer.choices[0].logprobs
            chosen = _token_id(logprobs.tokens[0])
            chosen_logprob = float(logprobs.token_logprobs[0])
            row = logprobs.top_logprobs[0]
            pairs = sorted(
                ((_token_id(key), float(lp)) for key, lp in row.items()), key=lambda p: (-p[1], p[0])
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url} gave no next-token log-probabilities by token id "
                "(logprobs with return_tokens_as_token_ids): is it an older vLLM?"
            ) from exc
        # The list holds the top k, plus the drawn token when it is not among them: keep the k, so
        # that what is listed is always the likeliest (the drawn one is in `chosen`).
        pairs = [(i, lp) for i, lp in pairs if math.isfinite(lp)][:k]
        if not pairs:
            raise NotOpenAICompatible(f"{self.endpoint.url} listed no next tokens with log-probabilities.")
        top = TopLogprobs(tuple(i for i, _ in pairs), tuple(lp for _, lp in pairs))
        return SampledNext(chosen, chosen_logprob, top)


def _token_id(key: str) -> int:
    """1234 from vLLM's "token_id:1234"; ValueError for anything else (decoded text)."""
    prefix, _, number = str(key).partition("token_id:")
    if prefix or not number:
        raise ValueError(key)
    return int(number)


__all__ = ["ScoringRemoteEngine"]
