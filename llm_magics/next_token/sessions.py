"""The live explorer's state (`%llm_next --live`): typed text, tokens appended since, one forward pass per change."""

from __future__ import annotations

from typing import Any

from ..engines.base import SamplesNext
from ..errors import InvalidOption, NotSupported
from ..values import TopLogprobs
from .arithmetic import warp
from .distribution import distribution_from_logits, distribution_from_top
from .reading import (
    check_context,
    decode,
    lists_only_top,
    logits_after,
    prompt_ids,
    require_engine,
    server_draw,
    top_logprobs,
)
from .results import Asked, NextToken, Sampling


class ExplorerSession:
    """What both explorers keep: the typed text, its ids, and the tokens appended since.

    Subclasses say how the next token's distribution is known (`_start`, `_grow`, `_shrink`,
    `distribution`); everything else is written here once.
    """

    def __init__(self, engine: Any, *, chat: bool = False, show: int = 10) -> None:
        self.engine = require_engine(engine)
        self.chat = chat
        self.show = show
        self.text = ""
        self.prompt = ""
        self._ids: list[int] = []
        self._appended: list[int] = []
        self._started = False

    @property
    def appended(self) -> tuple[int, ...]:
        """The ids appended since the text was set, oldest first."""
        return tuple(self._appended)

    def set_text(self, text: str) -> None:
        """Start again from `text` (appended tokens are dropped); raises `InvalidOption` (or the
        server's refusal) and keeps the previous state when the text cannot be encoded."""
        ids, prompt = prompt_ids(self.engine.tokenizer, text, chat=self.chat)
        self._start(ids)
        self.text, self.prompt, self._ids, self._appended, self._started = text, prompt, ids, [], True

    def append(self, sampling: Sampling, *, sample: bool) -> int:
        """Append the likeliest token, or one drawn under `sampling`; returns its id."""
        sampling.validate()
        self._require_text()
        chosen = self._grow(self._ids + self._appended, sampling, sample)
        self._appended.append(chosen)
        return chosen

    def undo(self) -> None:
        """Remove the last appended token (nothing to undo is not an error)."""
        if self._appended:
            self._appended.pop()
            self._shrink(self._ids + self._appended)

    def appended_text(self) -> str:
        return decode(self.engine.tokenizer, self._appended) if self._appended else ""

    def distribution(self, sampling: Sampling) -> NextToken:
        raise NotImplementedError

    def _asked(self) -> Asked:
        """What the distribution answers now: the text, grown by the tokens appended."""
        ids = self._ids + self._appended
        prompt = decode(self.engine.tokenizer, ids) if self._appended else self.prompt
        return Asked(self.engine.name, self.text, prompt, len(ids), self.chat)

    def _require_text(self) -> None:
        if not self._started:
            raise InvalidOption("Type some text first: the model needs something to continue.")

    def _start(self, ids: list[int]) -> None:
        """Learn the distribution after `ids`, before any state changes (raise to refuse)."""
        raise NotImplementedError

    def _grow(self, ids: list[int], sampling: Sampling, sample: bool) -> int:
        """Choose the token after `ids` and learn the distribution after it; return its id."""
        raise NotImplementedError

    def _shrink(self, ids: list[int]) -> None:
        """The last appended token was removed: the distribution is again the one after `ids`."""
        raise NotImplementedError


class NextTokenSession(ExplorerSession):
    """The state behind `%llm_next --live`: the typed text, the tokens appended since (greedy or
    sampled), and the logits for the current ids. One forward pass per change of the ids; moving
    a slider only re-applies temperature, top-k and top-p to the logits it already has.
    """

    def __init__(self, engine: Any, *, chat: bool = False, show: int = 10, seed: int | None = None) -> None:
        import torch

        super().__init__(engine, chat=chat, show=show)
        if lists_only_top(self.engine):
            raise TypeError("a server lists only its top K: next_token_session() gives its session")
        self._logits: Any = None
        self._generator = torch.Generator().manual_seed(
            seed if seed is not None else int(torch.seed() % 2**63)
        )

    def distribution(self, sampling: Sampling) -> NextToken:
        sampling.validate()
        self._require_text()
        return distribution_from_logits(
            self._logits, self.engine.tokenizer, sampling, about=self._asked(), show=self.show
        )

    def _start(self, ids: list[int]) -> None:
        check_context(self.engine, len(ids), "The text")
        self._logits = logits_after(self.engine, ids)

    def _grow(self, ids: list[int], sampling: Sampling, sample: bool) -> int:
        import torch

        check_context(self.engine, len(ids) + 1, "One more token")
        if sample and not sampling.greedy:
            probs = warp(self._logits, sampling).sampled
            chosen = int(torch.multinomial(probs.unsqueeze(0), 1, generator=self._generator)[0, 0])
        else:
            chosen = int(torch.argmax(self._logits))
        self._logits = logits_after(self.engine, [*ids, chosen])
        return chosen

    def _shrink(self, ids: list[int]) -> None:
        self._logits = logits_after(self.engine, ids)


class ServerNextTokenSession(ExplorerSession):
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

        super().__init__(engine, chat=chat, show=show)
        if not lists_only_top(self.engine):
            raise TypeError("an engine with the whole distribution takes NextTokenSession")
        self.seed = seed if seed is not None else int(torch.seed() % 2**63)
        self.draws = 0
        # One server answer per prefix ([0] for the text, [i] after i appended tokens), and how
        # many tokens each asked for (a server may list fewer).
        self._tops: list[TopLogprobs] = []
        self._asked_for: list[int] = []

    def distribution(self, sampling: Sampling) -> NextToken:
        sampling.validate()
        self._require_text()
        wanted = max(self.show, sampling.top_k)
        top = self._tops[-1]
        if wanted > self._asked_for[-1]:
            # Top-k past the listed tokens: ask again, so what top-k keeps stays known.
            top = top_logprobs(self.engine, self._ids + self._appended, wanted)
            self._tops[-1], self._asked_for[-1] = top, wanted
        return distribution_from_top(
            top, self.engine.tokenizer, sampling, about=self._asked(), show=self.show
        )

    def _start(self, ids: list[int]) -> None:
        check_context(self.engine, len(ids) + 1, "The text and the next token")
        top = top_logprobs(self.engine, ids, self.show)
        self._tops, self._asked_for = [top], [self.show]

    def _grow(self, ids: list[int], sampling: Sampling, sample: bool) -> int:
        check_context(self.engine, len(ids) + 2, "One more token")
        draw = sample and not sampling.greedy
        if draw and not isinstance(self.engine, SamplesNext):
            raise NotSupported(
                f"{self.engine.name}'s server lists its likeliest tokens but draws none for us: "
                "use greedy, or load the model here with %llm_load."
            )
        if draw:
            listed = max(self.show, sampling.top_k, 1)
            chosen = server_draw(self.engine, ids, listed, sampling, (self.seed + self.draws) % 2**63).id
        else:
            chosen = self._tops[-1].ids[0]
        top = top_logprobs(self.engine, [*ids, chosen], self.show)
        self.draws += int(draw)
        self._tops.append(top)
        self._asked_for.append(self.show)
        return chosen

    def _shrink(self, ids: list[int]) -> None:
        self._tops.pop()
        self._asked_for.pop()


def next_token_session(
    engine: Any, *, chat: bool = False, show: int = 10, seed: int | None = None
) -> NextTokenSession | ServerNextTokenSession:
    """The state behind `%llm_next --live` for `engine`: the whole distribution in-process, or a
    server's top K."""
    engine = require_engine(engine)
    kind = ServerNextTokenSession if lists_only_top(engine) else NextTokenSession
    return kind(engine, chat=chat, show=show, seed=seed)
