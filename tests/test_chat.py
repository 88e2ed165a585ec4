"""The chat core without IPython: prompts, greedy equivalence, history, trimming, cache reuse,
interrupts and failures, sampling options, conversation files, and the reply views."""

from __future__ import annotations

import json
import math
import random
import threading
from pathlib import Path

import pytest

from llm_magics import prompts
from llm_magics.conversation import Conversation
from llm_magics.display.chat import ConversationView, ReplyView, footer_text
from llm_magics.engines.base import (
    Chats,
    Completes,
    Engine,
    HoldsModel,
    PredictsNext,
    ScoresTokens,
    Tokenizes,
)
from llm_magics.engines.transformers import TransformersEngine, generation
from llm_magics.errors import ConversationFileInvalid, GenerationFailed, InvalidOption
from llm_magics.values import EngineInfo, EngineKind, FinishReason, GenerationOptions, Stats
from tests.helpers import FakeClock, RaiseOnForward, say

QUESTION = "What is the capital of France?"


def smollm_engine(smollm) -> TransformersEngine:
    """A fresh engine (no conversation yet) around the session's model."""
    model, tokenizer = smollm
    info = EngineInfo(
        name="smol",
        source="bundled",
        kind=EngineKind.TRANSFORMERS,
        context_length=8192,
        has_chat_template=prompts.has_chat_template(tokenizer),
    )
    return TransformersEngine(info, tokenizer, model)


def plain_workflow(model, tokenizer, messages, max_new_tokens):
    """The reference: what the transformers docs do, token for token."""
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :]
    return new.tolist(), tokenizer.decode(new, skip_special_tokens=True)


def fresh_reply(tiny_engine, family, messages, message, **options):
    """What a fresh engine that never reuses a cache replies to `message` after `messages`."""
    engine = tiny_engine(family)
    engine.session.replace(Conversation(messages))
    return say(engine, message, reuse_cache=False, **options)


# -- greedy equivalence ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_greedy_reply_equals_the_plain_transformers_workflow(tiny_engine, family):
    engine = tiny_engine(family)
    session = engine.new_session()
    session.replace(Conversation(system="You are terse."))
    reply = say(engine, QUESTION, session=session, max_new_tokens=16)
    conversation = session.conversation
    ids, text = plain_workflow(
        engine.model, engine.tokenizer, [*conversation.messages[:2]], max_new_tokens=16
    )
    assert reply.token_ids == ids
    assert reply.text == text
    assert reply.stats.new_tokens == len(ids)


@pytest.mark.slow
def test_greedy_reply_of_the_bundled_model_equals_the_plain_workflow(smollm):
    engine = smollm_engine(smollm)
    session = engine.session
    conversation = session.conversation
    streamed: list[str] = []
    prepared = session.prepare(QUESTION, max_new_tokens=30)
    reply = session.respond(prepared, GenerationOptions(max_new_tokens=30), on_text=streamed.append)
    ids, text = plain_workflow(*smollm, [{"role": "user", "content": QUESTION}], max_new_tokens=30)
    assert reply.text == text == "The capital of France is Paris."
    assert reply.token_ids == ids
    assert reply.finish_reason is FinishReason.END_OF_TURN
    # Streamed as it came, growing to the final text.
    assert len(streamed) > 3 and streamed[-1] == reply.text
    assert all(later.startswith(earlier) for earlier, later in zip(streamed, streamed[1:], strict=False))
    assert engine.session is session and session.conversation is conversation
    assert conversation.messages[-1] == {"role": "assistant", "content": "The capital of France is Paris."}


@pytest.mark.slow
def test_bundled_model_second_turn_reuses_the_cache_and_matches_the_plain_workflow(smollm):
    engine = smollm_engine(smollm)
    say(engine, QUESTION, max_new_tokens=30)
    second = say(engine, "And of Germany?", max_new_tokens=30)
    conversation = engine.session.conversation
    ids, text = plain_workflow(*smollm, conversation.messages[:-1], max_new_tokens=30)
    assert second.text == text == "The capital of Germany is Berlin."
    assert second.token_ids == ids
    # The whole first turn (prompt and reply) was reused: only the new message was computed.
    assert second.stats.reused_tokens > second.stats.prompt_tokens - 20


# -- history, system message ------------------------------------------------------------------


def test_multi_turn_history_is_the_context_of_the_next_reply(tiny_engine):
    engine = tiny_engine("llama")
    conversation = engine.session.conversation
    first = say(engine, "Hello there")
    second = say(engine, "And then?")
    assert engine.session.conversation is conversation
    assert [m["role"] for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
    assert conversation.messages[1]["content"] == first.text
    ids, text = plain_workflow(engine.model, engine.tokenizer, conversation.messages[:3], max_new_tokens=12)
    assert second.token_ids == ids and second.text == text
    assert second.stats.prompt_tokens > first.stats.prompt_tokens + first.stats.new_tokens - 1


def test_system_message_is_first_and_can_be_replaced_or_removed(tiny_engine):
    engine = tiny_engine("llama")
    engine.session.replace(Conversation(system="Be brief."))
    conversation = engine.session.conversation
    say(engine, "Hi")
    assert conversation.system == "Be brief."
    prompt = engine.tokenizer.decode(
        prompts.prepare_turn(
            engine.tokenizer, conversation, "Next", max_new_tokens=8, context_length=256
        ).prompt_ids
    )
    assert prompt.count("Be brief.") == 1

    say(engine, "Again", system="Be verbose.")
    assert conversation.messages[0] == {"role": "system", "content": "Be verbose."}
    assert [m["role"] for m in conversation.messages].count("system") == 1
    assert len(conversation.messages) == 5

    say(engine, "Once more", system="")
    assert conversation.system is None
    assert len(conversation.messages) == 6


def test_system_given_to_prepare_changes_nothing_until_the_turn_is_generated(tiny_engine):
    engine = tiny_engine("llama")
    engine.session.replace(Conversation(system="Old."))
    prepared = engine.session.prepare("Hi", max_new_tokens=8, system="New.")
    assert prepared.messages[0]["content"] == "New."
    assert engine.session.conversation.messages == [{"role": "system", "content": "Old."}]
    direct = prompts.prepare_turn(
        engine.tokenizer,
        engine.session.conversation,
        "Hi",
        max_new_tokens=8,
        context_length=256,
        system="New.",
    )
    assert direct == prepared


# -- context trimming -------------------------------------------------------------------------


def test_oldest_turns_are_dropped_to_fit_and_the_system_message_stays(tiny_engine):
    engine = tiny_engine("llama")  # 256-token context
    session = engine.session
    session.replace(Conversation(system="Keep me."))
    long = "The quick brown fox jumps over the lazy dog. " * 6
    dropped = []
    for turn in range(4):
        prepared = session.prepare(f"{turn} {long}", max_new_tokens=48)
        dropped.append(prepared.dropped_turns)
        reply = session.respond(prepared, GenerationOptions(max_new_tokens=48))
        assert reply.stats.prompt_tokens + 48 <= 256
    assert dropped[0] == 0 and sum(dropped) >= 2
    conversation = session.conversation
    assert conversation.messages[0] == {"role": "system", "content": "Keep me."}
    kept = [m["content"].split()[0] for m in conversation.messages if m["role"] == "user"]
    assert kept == [str(turn) for turn in range(4 - len(kept), 4)], "the newest turns, in order"


def test_a_message_that_cannot_fit_is_refused_and_nothing_changes(tiny_engine):
    engine = tiny_engine("llama")
    say(engine, "Hi")
    session = engine.session
    before, cached = list(session.conversation.messages), list(session.cached_ids)
    with pytest.raises(InvalidOption, match="shorten it or lower --max-new-tokens"):
        session.prepare("word " * 300, max_new_tokens=16)
    with pytest.raises(InvalidOption, match="shorten it or lower --max-new-tokens"):
        prompts.prepare_turn(
            engine.tokenizer, session.conversation, "word " * 300, max_new_tokens=16, context_length=256
        )
    assert session.conversation.messages == before
    assert session.cached_ids == cached and session.cache is not None


class CountingTokenizer:
    """The tokenizer, counting the prompts it renders and the messages in each."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.rendered: list[int] = []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def apply_chat_template(self, messages, *args, **kwargs):
        self.rendered.append(len(messages))
        return self._tokenizer.apply_chat_template(messages, *args, **kwargs)


def short_history(n: int, seed: int = 0, system: str | None = "Short.") -> Conversation:
    """`n` short messages of varied length; some turns have two replies, as a loaded file may."""
    rng = random.Random(seed)
    messages = []
    for i in range(n):
        role = "user" if i % 2 == 0 or rng.random() < 0.1 else "assistant"
        messages.append({"role": role, "content": " ".join(["word"] * rng.randint(0, 6)) + f" {i}"})
    return Conversation(messages, system=system)


def drop_one_turn_at_a_time(tokenizer, conversation, message, *, budget):
    """The reference trimming: drop the oldest turn until the prompt fits (None when nothing does)."""
    head = conversation.messages[:1] if conversation.system is not None else []
    turns = conversation.messages[len(head) :]
    new = {"role": "user", "content": message}
    dropped = 0
    while True:
        messages = [*head, *turns, new]
        ids = prompts.encode_messages(tokenizer, messages)
        if len(ids) <= budget:
            return messages, ids, dropped
        if not turns:
            return None
        following_user = next((i for i, m in enumerate(turns) if i > 0 and m["role"] == "user"), len(turns))
        turns = turns[following_user:]
        dropped += 1


@pytest.mark.parametrize("max_new_tokens", [8, 60, 150, 220, 245])
def test_trimming_keeps_exactly_the_newest_turns_that_fit(tiny_engine, max_new_tokens):
    tokenizer = tiny_engine("llama").tokenizer
    conversation = short_history(200, seed=max_new_tokens)
    message = "And now?"
    expected = drop_one_turn_at_a_time(tokenizer, conversation, message, budget=256 - max_new_tokens)
    if expected is None:
        with pytest.raises(InvalidOption, match="shorten it or lower --max-new-tokens"):
            prompts.prepare_turn(
                tokenizer, conversation, message, max_new_tokens=max_new_tokens, context_length=256
            )
        return
    prepared = prompts.prepare_turn(
        tokenizer, conversation, message, max_new_tokens=max_new_tokens, context_length=256
    )
    assert (prepared.messages, prepared.prompt_ids, prepared.dropped_turns) == expected
    assert prepared.dropped_turns > 0, "200 messages never fit in 256 tokens"


def test_trimming_a_long_loaded_history_costs_what_its_tail_costs(tiny_engine):
    tokenizer = tiny_engine("llama").tokenizer
    budget = 256 - 16

    def prepare(n: int):
        counting = CountingTokenizer(tokenizer)
        conversation = short_history(n, seed=1)
        prepared = prompts.prepare_turn(
            counting, conversation, "Last one?", max_new_tokens=16, context_length=256
        )
        return conversation, prepared, counting.rendered

    small_conversation, small, small_calls = prepare(60)
    conversation, prepared, calls = prepare(6000)
    # A binary search over the turns that can fit at all: logarithmic, not one prompt per dropped turn...
    assert len(calls) <= 2 * math.log2(6000) + 2, calls
    assert len(calls) <= len(small_calls) + 2 * math.log2(6000 / 60), (calls, small_calls)
    # ...and no prompt longer than the budget allows (every message takes a token): the work is
    # bounded by the context, not by the 6,000 messages.
    assert max(calls) <= budget + 2

    # The kept turns are the newest that fit: one more (older) turn would not.
    for conv, turn in ((conversation, prepared), (small_conversation, small)):
        assert turn.dropped_turns > 0
        assert len(turn.prompt_ids) <= budget
        assert turn.messages[0] == {"role": "system", "content": "Short."}
        kept = turn.messages[1:-1]
        assert kept == conv.messages[len(conv.messages) - len(kept) :]
        assert kept[0]["role"] == "user" or len(kept) == len(conv.messages) - 1
        older = conv.messages[1 : len(conv.messages) - len(kept)]
        start = max(i for i, m in enumerate(older) if m["role"] == "user" or i == 0)
        one_more = [conv.messages[0], *older[start:], *kept, turn.messages[-1]]
        assert len(prompts.encode_messages(tokenizer, one_more)) > budget


# -- key/value-cache reuse --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
def test_cache_reuse_gives_the_same_greedy_replies_and_skips_the_shared_prefix(tiny_engine, family):
    with_reuse, without = tiny_engine(family), tiny_engine(family)
    for turn, message in enumerate(["Hello", "Tell me more", "Why?", "Thanks"]):
        reused = say(with_reuse, message, max_new_tokens=10, reuse_cache=True)
        fresh = say(without, message, max_new_tokens=10, reuse_cache=False)
        assert reused.token_ids == fresh.token_ids
        assert fresh.stats.reused_tokens == 0
        if turn:
            assert reused.stats.reused_tokens > 0
    a, b = with_reuse.session, without.session
    assert a.conversation.messages == b.conversation.messages
    assert a.cache is not None and b.cache is None


def test_cache_covers_exactly_the_ids_it_claims(tiny_engine):
    engine = tiny_engine("llama")
    reply = say(engine, "Hello")
    prompt = engine.new_session().prepare("Hello", max_new_tokens=12)
    session = engine.session
    assert session.cache.get_seq_length() == len(session.cached_ids)
    assert session.cached_ids == (prompt.prompt_ids + reply.token_ids)[: len(session.cached_ids)]


def test_trimming_invalidates_the_cache_and_replies_stay_identical(tiny_engine):
    with_reuse, without = tiny_engine("llama"), tiny_engine("llama")
    with_reuse.reuse_cache, without.reuse_cache = True, False
    a, b = with_reuse.session, without.session
    a.replace(Conversation(system="S."))
    b.replace(Conversation(system="S."))
    long = "Paris is the capital of France. " * 8
    trimmed = False
    for turn in range(4):
        pa = a.prepare(f"{turn} {long}", max_new_tokens=40)
        pb = b.prepare(f"{turn} {long}", max_new_tokens=40)
        ra = a.respond(pa, GenerationOptions(max_new_tokens=40))
        rb = b.respond(pb, GenerationOptions(max_new_tokens=40))
        assert ra.token_ids == rb.token_ids
        if pa.dropped_turns:
            trimmed = True
            # Only the part before the dropped turn (the system message) can be reused.
            system_only = prompts.encode_messages(with_reuse.tokenizer, [{"role": "system", "content": "S."}])
            assert ra.stats.reused_tokens < len(system_only)
    assert trimmed


def test_reset_load_and_a_new_session_start_without_a_cache(tiny_engine, tmp_path):
    engine = tiny_engine("llama")
    say(engine, "Hello")
    session = engine.session
    assert session.cache is not None

    session.replace(Conversation())
    assert session.cache is None and session.cached_ids == [], "the replaced conversation's cache is freed"
    assert say(engine, "Hello").stats.reused_tokens == 0

    path = engine.session.conversation.save(tmp_path / "c.json")
    engine.session.replace(Conversation.load(path))
    assert engine.session.cache is None
    reply = say(engine, "More")
    assert reply.stats.reused_tokens == 0
    fresh = fresh_reply(tiny_engine, "llama", Conversation.load(path).messages, "More")
    assert reply.token_ids == fresh.token_ids

    # A new session is not current until adopted; adopting it frees the old one's cache.
    old = engine.session
    assert old.cache is not None
    new = engine.new_session()
    assert engine.session is old and new.conversation.messages == [] and new.cache is None
    engine.adopt(new)
    assert engine.session is new
    assert old.cache is None and old.cached_ids == []
    assert say(engine, "Hello").stats.reused_tokens == 0


# -- interrupts and failures ------------------------------------------------------------------


def assert_cache_holds_its_ids(session, ids):
    """The kept cache covers a prefix of `ids`, in every layer."""
    assert session.cache is not None and session.cached_ids
    assert session.cached_ids == ids[: len(session.cached_ids)]
    assert {layer.get_seq_length() for layer in session.cache.layers} == {len(session.cached_ids)}


def test_keyboard_interrupt_keeps_the_partial_reply_and_the_next_turn_reuses_the_cache(tiny_engine):
    engine = tiny_engine("llama")
    session = engine.session
    threads = threading.active_count()
    seen: list[str] = []

    def stop_after_three_tokens(text: str) -> None:
        seen.append(text)
        if len(seen) == 3:
            raise KeyboardInterrupt

    prepared = session.prepare("Hello", max_new_tokens=30)
    reply = session.respond(prepared, GenerationOptions(max_new_tokens=30), on_text=stop_after_three_tokens)
    assert reply.finish_reason is FinishReason.INTERRUPTED and reply.interrupted
    assert reply.text == seen[-1]
    assert 3 <= reply.stats.new_tokens < 30
    assert threading.active_count() == threads
    assert session.conversation.messages == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": reply.text},
    ]
    # The cache is kept, up to what every layer had computed.
    assert_cache_holds_its_ids(session, prepared.prompt_ids + reply.token_ids)

    before = list(session.conversation.messages)
    after = say(engine, "Go on")
    assert after.finish_reason is not FinishReason.INTERRUPTED
    assert after.stats.reused_tokens > 0
    assert len(session.conversation.messages) == 4
    assert after.token_ids == fresh_reply(tiny_engine, "llama", before, "Go on").token_ids


def test_interrupt_between_two_layers_keeps_only_what_every_layer_holds(tiny_engine):
    engine = tiny_engine("llama")
    say(engine, "Hello")
    session = engine.session
    # Ctrl-C after the first layer of the fourth forward pass (a decoding step): that layer holds
    # one position more than the second.
    hook = engine.model.model.layers[0].register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=4))
    try:
        prepared = session.prepare("Again", max_new_tokens=12)
        reply = session.respond(prepared, GenerationOptions(max_new_tokens=12))
    finally:
        hook.remove()
    assert reply.interrupted and len(reply.token_ids) == 3
    assert_cache_holds_its_ids(session, prepared.prompt_ids + reply.token_ids)
    assert len(session.cached_ids) == len(prepared.prompt_ids) + 2

    before = list(session.conversation.messages)
    after = say(engine, "Go on")
    assert after.stats.reused_tokens > 0
    assert after.token_ids == fresh_reply(tiny_engine, "llama", before, "Go on").token_ids


def test_interrupt_inside_a_forward_pass_before_any_token_changes_nothing(tiny_engine):
    engine = tiny_engine("llama")
    say(engine, "Hello")
    session = engine.session
    before = list(session.conversation.messages)
    hook = engine.model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=1))
    try:
        prepared = session.prepare("Again", max_new_tokens=12)
        reply = session.respond(prepared, GenerationOptions(max_new_tokens=12))
    finally:
        hook.remove()
    assert reply.finish_reason is FinishReason.INTERRUPTED and reply.token_ids == [] and reply.empty
    assert session.conversation.messages == before
    # What the interrupted pass computed is kept: the prompt of the turn that did not happen.
    assert_cache_holds_its_ids(session, prepared.prompt_ids)
    again = say(engine, "Again")
    assert again.finish_reason is not FinishReason.INTERRUPTED
    assert again.stats.reused_tokens > 0
    assert again.token_ids == fresh_reply(tiny_engine, "llama", before, "Again").token_ids


def test_running_out_of_memory_is_one_line_and_leaves_history_and_threads_alone(tiny_engine):
    import torch

    engine = tiny_engine("llama")
    say(engine, "Hello")
    session = engine.session
    before = list(session.conversation.messages)
    threads = threading.active_count()
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail here")
    hook = engine.model.register_forward_hook(RaiseOnForward(oom, on_call=3))
    try:
        with pytest.raises(GenerationFailed) as caught:
            say(engine, "Again")
    finally:
        hook.remove()
    assert caught.value.__cause__ is oom
    lines = caught.value._render_traceback_()
    assert lines == [
        "GenerationFailed: Out of memory while generating; nothing was added to the conversation. "
        "Lower --max-new-tokens, start afresh with --new, or load the model with --quant 4bit."
    ]
    assert session.conversation.messages == before
    assert session.cache is None and session.cached_ids == []
    assert threading.active_count() == threads
    assert say(engine, "Again").text is not None
    assert len(session.conversation.messages) == len(before) + 2


@pytest.mark.parametrize("error", [RuntimeError("a model bug"), TypeError("a bad argument")])
def test_other_errors_in_generation_keep_their_type_and_traceback(tiny_engine, error):
    engine = tiny_engine("llama")
    say(engine, "Hello")
    session = engine.session
    before = list(session.conversation.messages)
    hook = engine.model.register_forward_hook(RaiseOnForward(error, on_call=3))
    try:
        with pytest.raises(type(error)) as caught:
            say(engine, "Again")
    finally:
        hook.remove()
    assert caught.value is error
    assert not isinstance(caught.value, GenerationFailed)
    # The traceback still reaches the code that raised.
    assert any(entry.name == "__call__" and "helpers" in str(entry.path) for entry in caught.traceback)
    assert session.conversation.messages == before
    assert session.cache is None, "a cache that may be half-updated is dropped"
    assert say(engine, "Again").finish_reason is not FinishReason.INTERRUPTED


def test_a_bug_in_the_display_callback_keeps_its_own_traceback(tiny_engine):
    engine = tiny_engine("llama")

    def broken(text: str) -> None:
        raise ZeroDivisionError("display bug")

    with pytest.raises(ZeroDivisionError, match="display bug"):
        say(engine, "Hello", on_text=broken)
    assert engine.session.conversation.messages == []


# -- options, finish reasons, stats -----------------------------------------------------------


def test_length_limit_is_the_finish_reason_when_max_new_tokens_is_reached(tiny_engine):
    engine = tiny_engine("llama")
    reply = say(engine, "Hello", session=engine.new_session(), max_new_tokens=5)
    assert reply.stats.new_tokens == 5
    assert reply.finish_reason is FinishReason.LENGTH


def test_sampling_with_a_seed_is_reproducible(tiny_engine):
    engine = tiny_engine("llama")

    def hello(**options):
        return say(engine, "Hello", session=engine.new_session(), max_new_tokens=20, **options)

    a = hello(temperature=1.5, top_k=0, seed=7)
    b = hello(temperature=1.5, top_k=0, seed=7)
    c = hello(temperature=1.5, top_k=0, seed=8)
    greedy = hello()
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids
    assert a.token_ids != greedy.token_ids


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("max_new_tokens", 0, "--max-new-tokens"),
        ("max_new_tokens", -5, "--max-new-tokens"),
        ("max_new_tokens", 10**9, "--max-new-tokens"),
        ("temperature", -1.0, "--temperature"),
        ("temperature", 1e6, "--temperature"),
        ("temperature", float("nan"), "--temperature"),
        ("top_p", 0.0, "--top-p"),
        ("top_p", 1.5, "--top-p"),
        ("top_k", -1, "--top-k"),
        ("repetition_penalty", 0.0, "--repetition-penalty"),
        ("repetition_penalty", 1000.0, "--repetition-penalty"),
        ("seed", -1, "--seed"),
    ],
)
def test_absurd_options_are_refused_in_one_line(option, value, flag):
    with pytest.raises(InvalidOption, match=f"^{flag} must be"):
        GenerationOptions(**{option: value}).validate()


def test_max_new_tokens_must_leave_room_for_a_prompt():
    with pytest.raises(InvalidOption, match="leaves no room"):
        GenerationOptions(max_new_tokens=256).validate(context_length=256)
    GenerationOptions(max_new_tokens=255).validate(context_length=256)


def test_stats_report_time_to_first_token_and_decoding_rate(tiny_engine):
    engine = tiny_engine("llama")
    clock = FakeClock(step=0.5)
    reply = generation.generate(
        engine.model, engine.tokenizer, [1, 2, 3], GenerationOptions(max_new_tokens=6), clock=clock
    ).reply
    # The clock is read at the start, at the first token and at the end: 0.5 s apart each.
    assert reply.stats.time_to_first_token == pytest.approx(0.5)
    assert reply.stats.seconds == pytest.approx(1.0)
    assert reply.stats.tokens_per_second == pytest.approx(5 / 0.5)
    assert reply.stats.prompt_tokens == 3 and reply.stats.new_tokens == 6


def test_a_tokenizer_only_engine_cannot_generate(tiny_models):
    from llm_magics.engines.transformers.loading import load_model
    from llm_magics.engines.transformers.plan import plan_load
    from llm_magics.engines.transformers.source import resolve_source

    source = resolve_source(str(tiny_models["llama"]), tokenizer_only=True)
    engine = load_model(plan_load(source, tokenizer_only=True))
    assert engine.describe().tokenizer_only
    assert isinstance(engine, Engine) and isinstance(engine, Tokenizes)
    for capability in (Chats, Completes, ScoresTokens, PredictsNext, HoldsModel):
        assert not isinstance(engine, capability), capability.__name__
    assert not hasattr(engine, "session") and not hasattr(engine, "complete")
    assert engine.tokenizer("Hi")["input_ids"]


# -- base models: the plain template and raw completion ---------------------------------------


def test_models_without_a_chat_template_use_the_plain_template(tiny_engine):
    engine = tiny_engine("gpt2")
    session = engine.session
    session.replace(Conversation(system="Be kind."))
    conversation = session.conversation
    prepared = session.prepare("Hi", max_new_tokens=8)
    assert prepared.plain_template
    assert engine.tokenizer.decode(prepared.prompt_ids) == "System: Be kind.\n\nUser: Hi\n\nAssistant:"
    reply = session.respond(prepared, GenerationOptions(max_new_tokens=8))
    assert conversation.messages[-1] == {"role": "assistant", "content": reply.text}
    assert not prompts.prepare_turn(
        tiny_engine("llama").tokenizer, conversation, "Hi", max_new_tokens=8, context_length=256
    ).plain_template


def test_plain_template_stops_at_the_next_user_line_and_never_streams_it(gpt2_tokenizer):
    import torch

    shown: list[str] = []
    streamer = generation.Streamer(gpt2_tokenizer, shown.append, [prompts.PLAIN_STOP], FakeClock())
    assert prompts.PLAIN_STOP == "\nUser:"
    streamer.put(torch.tensor([[0]]))  # the prompt comes first and is not shown
    for token in gpt2_tokenizer(" Paris is nice.\nUser: and Berlin?")["input_ids"]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert streamer.stopped_by_string()
    assert shown[-1] == "Paris is nice."
    assert not any("\nU" in text for text in shown)


class _CountingTokenizer:
    """A tokenizer that counts how many ids it is asked to decode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, **kwargs):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids, **kwargs)


def _stream(tokenizer, ids):
    """Feed `ids` to a streamer token by token; the texts it showed and the ids it decoded."""
    import torch

    counting = _CountingTokenizer(tokenizer)
    shown: list[str] = []
    streamer = generation.Streamer(counting, shown.append, [], FakeClock())
    streamer.put(torch.tensor([[0]]))
    for token in ids:
        streamer.put(torch.tensor([token]))
    work_while_streaming = counting.decoded
    streamer.end()
    return shown, work_while_streaming


@pytest.mark.parametrize(
    "text",
    [
        "Paris is nice. " * 15,
        "Emoji 👩‍👩‍👧 and CJK 漢字かな, tabs\tand\n\nnewlines, accents: déjà vu. " * 3,
    ],
)
def test_streaming_decodes_each_token_a_constant_number_of_times(smollm_tokenizer, text):
    ids = smollm_tokenizer(text)["input_ids"]
    shown, work = _stream(smollm_tokenizer, ids)
    final = smollm_tokenizer.decode(ids, skip_special_tokens=True)
    assert shown[-1] == final
    assert all(final.startswith(piece) and "\ufffd" not in piece for piece in shown)
    # Four times the reply, four times the work (decoding everything at each token: sixteen).
    long_ids = smollm_tokenizer(text * 4)["input_ids"]
    long_shown, long_work = _stream(smollm_tokenizer, long_ids)
    assert long_shown[-1] == smollm_tokenizer.decode(long_ids, skip_special_tokens=True)
    assert long_work / work < 4.5, (work, long_work)


def test_complete_continues_raw_text_like_plain_generate(tiny_engine):
    import torch

    engine = tiny_engine("gpt2")
    say(engine, "Hello")
    session = engine.session
    messages, cached = list(session.conversation.messages), list(session.cached_ids)
    reply = engine.complete("Once upon a time", GenerationOptions(max_new_tokens=12))
    inputs = engine.tokenizer("Once upon a time", return_tensors="pt")
    with torch.inference_mode():
        output = engine.model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert reply.token_ids == output[0, inputs["input_ids"].shape[1] :].tolist()
    assert reply.finish_reason in (FinishReason.LENGTH, FinishReason.END_OF_TEXT)
    # Completion leaves the conversation (and its cache) alone.
    assert engine.session is session
    assert session.conversation.messages == messages and session.cached_ids == cached


def test_complete_refuses_a_prompt_longer_than_the_context(tiny_engine):
    engine = tiny_engine("gpt2")
    with pytest.raises(InvalidOption, match="exceeds the 256-token context"):
        engine.complete("fox " * 300, GenerationOptions(max_new_tokens=8))


# -- conversation files -----------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Show code:\n\n```python\nprint({1: 2})\n```\n"},
    {"role": "assistant", "content": "Sure.\n\n\nDone <b>bold</b> 🙂"},
]


@pytest.mark.parametrize("suffix", [".json", ".md", ".markdown"])
def test_save_and_load_round_trip(tmp_path, suffix):
    path = Conversation(MESSAGES).save(tmp_path / f"chat{suffix}", model="tiny")
    assert Conversation.load(path).messages == MESSAGES


def test_saved_json_names_its_format_and_model(tmp_path):
    path = Conversation(MESSAGES).save(tmp_path / "chat.json", model="tiny")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "llm_magics.conversation" and document["model"] == "tiny"


def test_a_plain_json_list_of_messages_loads(tmp_path):
    path = tmp_path / "openai.json"
    path.write_text(json.dumps(MESSAGES[1:]), encoding="utf-8")
    assert Conversation.load(path).messages == MESSAGES[1:]


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("bad.json", "{not json", "invalid JSON"),
        ("bad.json", '{"cells": []}', "no 'messages'"),
        ("bad.json", '{"messages": {"a": 1}}', "must be a list"),
        ("bad.json", '[{"role": "robot", "content": "x"}]', "role 'robot'"),
        ("bad.json", '[{"role": "user"}]', "no text 'content'"),
        (
            "bad.json",
            '[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]',
            "first message",
        ),
        ("notes.md", "# My notes\n\nNot a chat.", "saved by %llm_history"),
    ],
)
def test_files_that_are_not_conversations_are_refused(tmp_path, name, content, why):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConversationFileInvalid, match=why):
        Conversation.load(path)


def test_missing_file_and_unknown_extension_are_one_line_errors(tmp_path):
    with pytest.raises(ConversationFileInvalid, match="No such file"):
        Conversation.load(tmp_path / "missing.json")
    with pytest.raises(InvalidOption, match=r"\.json or \.md"):
        Conversation.load(tmp_path / "chat.txt")
    with pytest.raises(InvalidOption, match=r"\.json or \.md"):
        Conversation(MESSAGES).save(tmp_path / "chat.txt")
    assert not (tmp_path / "chat.txt").exists()


# -- views ------------------------------------------------------------------------------------

HOSTILE = "Here: <script>alert(1)</script> and <img src=x onerror=alert(2)> and [x](javascript:alert(3))"


def test_reply_html_escapes_everything_from_the_model():
    bundle = ReplyView(HOSTILE + "\n\n**bold** and `code`", "footer")._repr_mimebundle_()
    page = bundle["text/html"]
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'href="javascript' not in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert bundle["text/plain"].startswith(HOSTILE)


def test_single_newlines_in_a_reply_are_line_breaks():
    page = ReplyView("Tides rise\nand fall\n\nNew verse")._repr_mimebundle_()["text/html"]
    assert "Tides rise<br />\nand fall</p>" in page and "<p>New verse</p>" in page


def test_images_in_a_reply_never_load_a_remote_url():
    page = ReplyView("![tracker](http://example.com/pixel.png)")._repr_mimebundle_()["text/html"]
    assert "<img" not in page and 'href="http://example.com/pixel.png"' in page


def test_conversation_view_escapes_and_labels_roles():
    bundle = ConversationView(
        [*MESSAGES, {"role": "assistant", "content": HOSTILE}], "tiny"
    )._repr_mimebundle_()
    assert "<script" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    assert bundle["text/plain"].startswith("System:\nBe brief.\n\nUser:\n")
    assert "No conversation" in ConversationView([], "tiny")._repr_mimebundle_()["text/plain"]


def test_footer_names_tokens_timing_and_reason():
    stats = Stats(prompt_tokens=37, new_tokens=8, reused_tokens=30, time_to_first_token=0.125, seconds=0.325)
    assert footer_text(stats, FinishReason.END_OF_TURN, "tiny") == (
        "tiny · 37 prompt tokens (30 reused) · 8 new tokens · first token 0.12 s · 35.0 tok/s · end of turn"
    )
    assert (
        footer_text(Stats(prompt_tokens=5), FinishReason.INTERRUPTED)
        == "5 prompt tokens · 0 new tokens · interrupted"
    )


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    modules = (
        "llm_magics.conversation, llm_magics.prompts, llm_magics.engines.base, "
        "llm_magics.engines.transformers.engine, llm_magics.engines.transformers.generation, "
        "llm_magics.engines.transformers.decoding, llm_magics.display.chat"
    )
    heavy = ("torch", "transformers", "markdown_it")
    code = f"import sys, {modules}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == ""
