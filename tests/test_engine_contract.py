"""The contract every engine keeps, run once per engine: what the magics rely on.

Each engine gets a `Subject`: the engine, and a way to make its next reply fail or be interrupted
after some tokens (a forward hook for an in-process model, a flag for the fake). A new engine
joins by adding a fixture parameter below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from llm_magics.conversation import Conversation
from llm_magics.engines.base import Chats, ChatSession, Completes, Engine
from llm_magics.values import FinishReason, GenerationOptions
from tests.fake_engine import fake_engine


@dataclass
class Subject:
    engine: Any
    #: Make the next reply raise `error` (KeyboardInterrupt: be interrupted) after some tokens.
    break_next: Callable[[BaseException, int], Callable[[], None]]
    #: The exception type the engine lets through for a failure that is not ours (a model bug).
    bug: type[BaseException] = RuntimeError


def _fake() -> Subject:
    engine = fake_engine("fake", reply=lambda messages: "one two three four five six seven eight")

    def break_next(error: BaseException, after: int) -> Callable[[], None]:
        if isinstance(error, KeyboardInterrupt):
            engine.interrupt_after = after
        else:
            engine.fail_with, engine.fail_after = error, after
        return lambda: None

    return Subject(engine, break_next)


def _transformers(request: pytest.FixtureRequest) -> Subject:
    from tests.helpers import RaiseOnForward

    engine = request.getfixturevalue("tiny_engine")("llama")

    def break_next(error: BaseException, after: int) -> Callable[[], None]:
        # Forward pass 1 is the prompt, each later one a new token.
        hook = engine.model.register_forward_hook(RaiseOnForward(error, on_call=after + 1))
        return hook.remove

    return Subject(engine, break_next)


def _text_generation_pipeline(request: pytest.FixtureRequest) -> Subject:
    # `%llm_pipe text-generation`'s engine is a causal LM: it keeps the whole chat contract too.
    from llm_magics.engines.pipeline import TaskName, TextGenerationEngine, task_details

    subject = _transformers(request)
    tiny = subject.engine
    engine = TextGenerationEngine(
        task_details(TaskName.TEXT_GENERATION, tiny.info), tiny.tokenizer, tiny.model
    )
    return Subject(engine, subject.break_next)


@pytest.fixture(
    params=[
        "fake",
        pytest.param("transformers", marks=pytest.mark.slow),
        pytest.param("pipeline", marks=pytest.mark.slow),
    ]
)
def subject(request: pytest.FixtureRequest) -> Subject:
    if request.param == "pipeline":
        return _text_generation_pipeline(request)
    return _fake() if request.param == "fake" else _transformers(request)


OPTIONS = GenerationOptions(max_new_tokens=6)


def turn(session: ChatSession, message: str, on_text: Any = None, **kwargs: Any):
    prepared = session.prepare(message, max_new_tokens=OPTIONS.max_new_tokens, **kwargs)
    return session.respond(prepared, OPTIONS, on_text=on_text)


def test_every_engine_describes_itself(subject):
    engine = subject.engine
    assert isinstance(engine, Engine)
    info = engine.describe()
    assert info.name == engine.name
    assert info.source


def test_a_turn_streams_growing_text_and_commits_both_messages(subject):
    engine = subject.engine
    assert isinstance(engine, Chats)
    seen: list[str] = []
    reply = turn(engine.session, "Hello", on_text=seen.append)
    assert seen and seen[-1] == reply.text, "the last update is the reply"
    assert all(
        later.startswith(earlier) or not earlier for earlier, later in zip(seen, seen[1:], strict=False)
    )
    assert reply.finish_reason in (FinishReason.END_OF_TURN, FinishReason.LENGTH)
    assert 0 < reply.stats.new_tokens <= OPTIONS.max_new_tokens
    assert reply.stats.prompt_tokens > 0
    assert engine.session.conversation.messages[-2:] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": reply.text},
    ]


def test_prepare_changes_nothing(subject):
    session = subject.engine.session
    turn(session, "Hello")
    before = [dict(m) for m in session.conversation.messages]
    prepared = session.prepare("Next", max_new_tokens=4, system="Be brief.")
    assert prepared.messages[0] == {"role": "system", "content": "Be brief."}
    assert prepared.messages[-1] == {"role": "user", "content": "Next"}
    assert session.conversation.messages == before


def test_a_failure_commits_nothing_and_keeps_its_type(subject):
    session = subject.engine.session
    turn(session, "Hello")
    before = [dict(m) for m in session.conversation.messages]
    restore = subject.break_next(subject.bug("a model bug"), 2)
    try:
        with pytest.raises(subject.bug):
            turn(session, "Again")
    finally:
        restore()
    assert session.conversation.messages == before
    assert turn(session, "Again").text, "the next turn works"


def test_an_interrupt_keeps_the_partial_reply(subject):
    session = subject.engine.session
    restore = subject.break_next(KeyboardInterrupt(), 3)
    try:
        reply = turn(session, "Hello")
    finally:
        restore()
    assert reply.interrupted and reply.finish_reason is FinishReason.INTERRUPTED
    assert reply.stats.new_tokens == 3
    assert session.conversation.messages[-1] == {"role": "assistant", "content": reply.text}


def test_an_interrupt_before_any_token_changes_nothing(subject):
    session = subject.engine.session
    turn(session, "Hello")
    before = [dict(m) for m in session.conversation.messages]
    restore = subject.break_next(KeyboardInterrupt(), 0)
    try:
        reply = turn(session, "Again")
    finally:
        restore()
    assert reply.interrupted and reply.empty
    assert session.conversation.messages == before


def test_sessions_are_independent_until_adopted(subject):
    engine = subject.engine
    turn(engine.session, "Hello")
    current = engine.session
    fresh = engine.new_session()
    turn(fresh, "Other")
    assert engine.session is current and len(current.conversation.messages) == 2
    engine.adopt(fresh)
    assert engine.session is fresh
    assert [m["content"] for m in engine.session.conversation.messages][0] == "Other"


def test_replace_continues_from_another_conversation(subject):
    session = subject.engine.session
    turn(session, "Hello")
    session.replace(Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]))
    assert turn(session, "And?").text
    assert [m["content"] for m in session.conversation.messages][:2] == ["Hi", "Yo"]


def test_completion_continues_text_and_leaves_the_conversation_alone(subject):
    engine = subject.engine
    assert isinstance(engine, Completes)
    seen: list[str] = []
    reply = engine.complete("Once upon a time", OPTIONS, on_text=seen.append)
    assert seen and seen[-1] == reply.text
    assert reply.finish_reason in (FinishReason.END_OF_TEXT, FinishReason.LENGTH)
    assert reply.stats.new_tokens <= OPTIONS.max_new_tokens
    assert engine.session.conversation.messages == []


def test_close_frees_and_reports_bytes(subject):
    engine = subject.engine
    turn(engine.session, "Hello")
    freed = engine.close()
    assert isinstance(freed, int) and freed >= 0
