"""A fake engine, the way httpx ships `MockTransport`: real behaviour, no model, no torch.

It replies deterministically (by default "Echo: " and the last user message, one word per token),
streams through the same callback as real engines, keeps its conversation in a real session with
the two-step prepare/respond contract, and can be told to fail or be interrupted after N tokens.
Magic-level tests of parsing, display, errors and history run on it in milliseconds.

    engine = fake_engine("fake")                        # Engine, Chats, Completes
    engine = fake_engine("fake", tokenizer=tokenizer)   # … and Tokenizes
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from llm_magics.conversation import Conversation, Message, with_system
from llm_magics.errors import InvalidOption
from llm_magics.values import (
    EngineInfo,
    EngineKind,
    FinishReason,
    GenerationOptions,
    PreparedTurn,
    Reply,
    Stats,
    TextCallback,
)


def echo(messages: Sequence[Message]) -> str:
    """The default reply: the last user message, echoed."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"Echo: {last}"


class FakeEngine:
    """Chats and completes by rule; one word is one token, the context is counted in words.

    `fail_with` is raised after `fail_after` tokens of the next reply; `interrupt_after` ends the
    next reply with a KeyboardInterrupt after that many tokens, as the stop button does. Each is
    used once, then cleared.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        reply: Callable[[Sequence[Message]], str] = echo,
        context_length: int | None = None,
        footprint_bytes: int = 0,
    ) -> None:
        self.name = name
        self.reply = reply
        self.context_length = context_length
        self.footprint_bytes = footprint_bytes
        self.clock: Callable[[], float] = time.perf_counter
        self.fail_with: BaseException | None = None
        self.fail_after = 0
        self.interrupt_after: int | None = None
        self.closed = False
        self.calls = 0
        self._session: FakeChatSession | None = None

    def __repr__(self) -> str:
        return f"<FakeEngine {self.name!r}>"

    # -- Engine
    def describe(self) -> EngineInfo:
        return EngineInfo(
            name=self.name,
            source="fake",
            kind=EngineKind.TRANSFORMERS,
            context_length=self.context_length,
            footprint_bytes=self.footprint_bytes,
            has_chat_template=True,
        )

    def context_window(self) -> int | None:
        return self.context_length

    def close(self) -> int:
        self.closed = True
        self._session = None
        return self.footprint_bytes

    # -- Chats
    @property
    def session(self) -> FakeChatSession:
        if self._session is None:
            self._session = FakeChatSession(self)
        return self._session

    def new_session(self) -> FakeChatSession:
        return FakeChatSession(self)

    def adopt(self, session: Any) -> None:
        self._session = session

    # -- Completes
    def complete(
        self, prompt: str, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        return self.stream(
            self.reply([{"role": "user", "content": prompt}]),
            len(prompt.split()),
            options,
            on_text,
            FinishReason.END_OF_TEXT,
        )

    # -- how a reply is "generated"
    def stream(
        self,
        text: str,
        prompt_tokens: int,
        options: GenerationOptions,
        on_text: TextCallback | None,
        eos: FinishReason,
    ) -> Reply:
        self.calls += 1
        words = text.split(" ")
        stats = Stats(prompt_tokens=prompt_tokens)
        started = self.clock()
        shown: list[str] = []
        reason = eos
        fail, self.fail_with = self.fail_with, None
        interrupt, self.interrupt_after = self.interrupt_after, None
        try:
            for index, word in enumerate(words):
                if fail is not None and index == self.fail_after:
                    raise fail
                if interrupt is not None and index == interrupt:
                    raise KeyboardInterrupt
                if index >= options.max_new_tokens:
                    reason = FinishReason.LENGTH
                    break
                shown.append(word)
                if stats.time_to_first_token is None:
                    stats.time_to_first_token = self.clock() - started
                if on_text is not None:
                    on_text(" ".join(shown))
        except KeyboardInterrupt:
            reason = FinishReason.INTERRUPTED
        stats.seconds = self.clock() - started
        stats.new_tokens = len(shown)
        return Reply(" ".join(shown), reason, stats)


class FakeTokenizingEngine(FakeEngine):
    """A fake engine that also has a real Hugging Face tokenizer (`Tokenizes`)."""

    def __init__(self, name: str = "fake", *, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer


class FakeChatSession:
    """The fake engine's conversation: the same two-step contract as the real sessions."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.conversation = Conversation()

    def replace(self, conversation: Conversation) -> None:
        self.conversation = conversation

    def prepare(self, message: str, *, max_new_tokens: int, system: str | None = None) -> PreparedTurn:
        history = (
            self.conversation.messages if system is None else with_system(self.conversation.messages, system)
        )
        head = history[:1] if history and history[0]["role"] == "system" else []
        turns = history[len(head) :]
        new = {"role": "user", "content": message}
        limit = self.engine.context_length
        dropped = 0
        while limit is not None and _words([*head, *turns, new]) + max_new_tokens > limit:
            if not turns:
                raise InvalidOption("The message does not fit the fake engine's context.")
            following = next((i for i, m in enumerate(turns) if i > 0 and m["role"] == "user"), len(turns))
            turns = turns[following:]
            dropped += 1
        return PreparedTurn([*head, *turns, new], dropped_turns=dropped)

    def respond(
        self, prepared: PreparedTurn, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        options.validate()
        reply = self.engine.stream(
            self.engine.reply(prepared.messages),
            _words(prepared.messages),
            options,
            on_text,
            FinishReason.END_OF_TURN,
        )
        if not reply.empty:
            self.conversation.messages = [*prepared.messages, {"role": "assistant", "content": reply.text}]
        return reply


def _words(messages: Sequence[Message]) -> int:
    return sum(len(m["content"].split()) + 1 for m in messages)


def fake_engine(name: str = "fake", *, tokenizer: Any = None, **kwargs: Any) -> FakeEngine:
    """A fake engine; with a tokenizer it also `Tokenizes`."""
    if tokenizer is not None:
        return FakeTokenizingEngine(name, tokenizer=tokenizer, **kwargs)
    return FakeEngine(name, **kwargs)
