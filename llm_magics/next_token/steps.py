"""Tokens chosen one at a time after some text (`%llm_next --steps N`), greedy or sampled."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engines.base import SamplesNext
from ..errors import InvalidOption, NotSupported
from .arithmetic import rank_of, ranked, warp, warp_top
from .candidates import candidates_from_logits, candidates_from_top, token_labels
from .reading import (
    chat_notes,
    check_context,
    decode,
    lists_only_top,
    logits_after,
    prompt_ids,
    require_engine,
    server_draw,
    top_logprobs,
)
from .results import MAX_STEPS, RUNNERS_UP, Candidate, PartialSampling, Sampling, Step, Steps, StepsEnd


@dataclass(frozen=True)
class Choice:
    """One step's token and what the view says of it. `known` is how many tokens the server
    listed beside a token it drew (None elsewhere)."""

    id: int
    probability: float
    sampled: float
    rank: int | None
    runners_up: tuple[Candidate, ...]
    known: int | None = None


class Chooser(Protocol):
    """Picks the token after `ids`: one class per way of knowing the distribution."""

    @property
    def exact(self) -> bool:
        """Whether every step's `sampled` is exact (see `PartialSampling`)."""
        ...

    def choose(self, ids: list[int]) -> Choice: ...


@dataclass
class LogitsChooser:
    """Full logits in process: greedy takes the argmax, sampling draws with the seeded generator."""

    engine: Any
    sampling: Sampling
    runners_up: int
    generator: Any = None
    exact: bool = True

    def choose(self, ids: list[int]) -> Choice:
        import torch

        logits = logits_after(self.engine, ids)
        warped = warp(logits, self.sampling)
        if self.generator is not None and not self.sampling.greedy:
            chosen = int(torch.multinomial(warped.sampled.unsqueeze(0), 1, generator=self.generator)[0, 0])
        else:
            chosen = int(torch.argmax(logits))
        probs = logits.softmax(dim=-1)
        others = [int(i) for i in ranked(logits)[: self.runners_up + 1] if int(i) != chosen][
            : self.runners_up
        ]
        runners = candidates_from_logits(self.engine.tokenizer, logits, warped, probs, others)
        return Choice(
            chosen,
            float(probs[chosen]),
            float(warped.sampled[chosen]),
            rank_of(logits, chosen),
            tuple(runners),
        )


@dataclass
class ServerGreedyChooser:
    """A server's top K log-probabilities: greedy needs nothing more (its list is sorted, ties by id)."""

    engine: Any
    sampling: Sampling
    runners_up: int
    exact: bool = True

    def choose(self, ids: list[int]) -> Choice:
        top = top_logprobs(self.engine, ids, self.runners_up + 1)
        top_warped, _ = warp_top(top, self.sampling)
        others_at = list(range(1, min(len(top.ids), self.runners_up + 1)))
        runners = candidates_from_top(self.engine.tokenizer, top, top_warped, others_at)
        return Choice(top.ids[0], math.exp(top.logprobs[0]), float(top_warped.sampled[0]), 1, tuple(runners))


@dataclass
class ServerDrawChooser:
    """The server draws each token (`SamplesNext`), step i with the seed `seed + i`, and lists its
    top `listed` beside it."""

    engine: Any
    sampling: Sampling
    runners_up: int
    listed: int
    seed: int
    hows: set[PartialSampling] = field(default_factory=set)
    drawn: int = 0

    @property
    def exact(self) -> bool:
        return all(how.exact for how in self.hows)

    def choose(self, ids: list[int]) -> Choice:
        seed = (self.seed + self.drawn) % 2**63
        drawn = server_draw(self.engine, ids, self.listed, self.sampling, seed)
        self.drawn += 1
        top = drawn.top
        top_warped, how = warp_top(top, self.sampling)
        self.hows.add(how)
        probability = math.exp(drawn.logprob)
        if drawn.id in top.ids:
            position = top.ids.index(drawn.id)
            rank, sampled = position + 1, float(top_warped.sampled[position])
        else:
            # Below the listed: at T = 1 without cuts it is drawn with its own probability;
            # otherwise its share is not told by the listed tokens.
            rank, sampled = None, probability if how is PartialSampling.PLAIN else math.nan
        others_at = [i for i, token_id in enumerate(top.ids) if token_id != drawn.id][: self.runners_up]
        runners = candidates_from_top(self.engine.tokenizer, top, top_warped, others_at)
        return Choice(drawn.id, probability, sampled, rank, tuple(runners), known=len(top.ids))


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

    sampling = _checked_sampling(steps, sample, seed, temperature, top_k, top_p)
    engine = require_engine(engine)
    partial = lists_only_top(engine)
    server_draws = partial and sample and not sampling.greedy
    if server_draws and not isinstance(engine, SamplesNext):
        raise NotSupported(
            f"--sample draws from the whole distribution, and {engine.name}'s server lists only its "
            "likeliest tokens and draws none for us: drop --sample for greedy steps, or let the server "
            "sample with %%llm_complete --temperature T --seed S."
        )
    ids, prompt = prompt_ids(engine.tokenizer, text, chat=chat)
    check_context(engine, len(ids) + steps, f"The text and {steps} steps")
    notes = list(chat_notes(engine, chat))
    if partial and not server_draws:
        notes.append(
            f"From the server's top {runners_up + 1} log-probabilities at each step: the probabilities "
            "and ranks are exact, greedy needs nothing more."
        )
    if sample and seed is None:
        seed = int(torch.seed() % 2**63)
        notes.append(f"No --seed given: this run used --seed {seed}; give it to get the same tokens again.")
    chooser = _chooser(engine, sampling, runners_up, sample, seed, server_draws=server_draws, partial=partial)
    done, end = _walk(engine.tokenizer, ids, steps, chooser)
    if isinstance(chooser, ServerDrawChooser):
        notes.append(_drawn_note(chooser.listed, sampling, seed, chooser.exact))
    return Steps(
        name=engine.name,
        text=text,
        prompt=prompt,
        prompt_tokens=len(ids),
        chat=chat,
        sampling=sampling,
        sample=sample,
        seed=seed if sample else None,
        steps=done,
        end=end,
        requested=steps,
        notes=tuple(notes),
        exact_sampling=chooser.exact,
    )


def _chooser(
    engine: Any,
    sampling: Sampling,
    runners_up: int,
    sample: bool,
    seed: int | None,
    *,
    server_draws: bool,
    partial: bool,
) -> Chooser:
    """Who picks each token: the server drawing it, the server's listed top for greedy, or our own
    arithmetic over the full logits (with a seeded generator when sampling)."""
    import torch

    if server_draws:
        assert seed is not None
        # Enough listed tokens for the runners-up, and for top-k: then the drawn token is listed.
        listed = max(runners_up + 1, sampling.top_k, 1)
        return ServerDrawChooser(engine, sampling, runners_up, listed, seed)
    if partial:
        return ServerGreedyChooser(engine, sampling, runners_up)
    generator = torch.Generator().manual_seed(seed) if sample and seed is not None else None
    return LogitsChooser(engine, sampling, runners_up, generator)


def _checked_sampling(
    steps: int, sample: bool, seed: int | None, temperature: float, top_k: int, top_p: float
) -> Sampling:
    """The sampling the options ask for, each option checked (one line for a bad one)."""
    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise InvalidOption(f"--steps must be between 1 and {MAX_STEPS}; got {steps}.")
    sampling = Sampling(temperature, top_k, top_p) if sample else Sampling(0.0)
    sampling.validate()
    if seed is not None and not (0 <= seed < 2**63):
        raise InvalidOption(f"--seed must be between 0 and 2**63 - 1; got {seed}.")
    if seed is not None and not sample:
        raise InvalidOption("--seed only matters with --sample (greedy steps need no seed).")
    return sampling


def _walk(tokenizer: Any, ids: list[int], steps: int, chooser: Chooser) -> tuple[tuple[Step, ...], StepsEnd]:
    """Up to `steps` tokens from `chooser`, each with the text it adds; stops at end-of-sequence.

    A token that ends inside a character (half an emoji) adds no text yet: the next token that
    completes the character carries the piece, with the ids of both.
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    base = decode(tokenizer, ids)
    generated: list[int] = []
    done: list[Step] = []
    shown_text = ""
    pending: list[int] = []
    for index in range(steps):
        choice = chooser.choose(ids + generated)
        generated.append(choice.id)
        (token, _, special, _) = token_labels(tokenizer, [choice.id])[0]
        pending.append(choice.id)
        grown = decode(tokenizer, ids + generated)
        grown = grown[len(base) :] if grown.startswith(base) else decode(tokenizer, generated)
        piece_ids: tuple[int, ...] = ()
        if grown.endswith("\ufffd") and "\ufffd" not in token:
            piece = ""
        else:
            piece, piece_ids = grown[len(shown_text) :], tuple(pending)
            shown_text, pending = grown, []
        done.append(
            Step(
                index=index + 1,
                id=choice.id,
                token=token,
                piece=piece,
                piece_ids=piece_ids,
                probability=choice.probability,
                sampled=choice.sampled,
                rank=choice.rank,
                runners_up=choice.runners_up,
                text=shown_text,
                special=special,
                known=choice.known,
            )
        )
        if eos is not None and choice.id == eos:
            return tuple(done), StepsEnd.END_OF_TEXT
    return tuple(done), StepsEnd.STEPS


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
