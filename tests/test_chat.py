"""The chat core without IPython: prompts, greedy equivalence, history, trimming, cache reuse,
interrupts and failures, sampling options, conversation files, and the reply views."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from llm_magics import chat as core
from llm_magics.display.chat import ConversationView, ReplyView, footer_text
from llm_magics.errors import ConversationFileInvalid, GenerationFailed, InvalidOption
from llm_magics.registry import ModelEntry
from tests.helpers import FakeClock, RaiseOnForward, say

QUESTION = "What is the capital of France?"


def smollm_entry(smollm) -> ModelEntry:
    """A fresh entry (no conversation yet) around the session's model."""
    model, tokenizer = smollm
    return ModelEntry(name="smol", source="bundled", tokenizer=tokenizer, model=model, context_length=8192)


def plain_workflow(model, tokenizer, messages, max_new_tokens):
    """The reference: what the transformers docs do, token for token."""
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :]
    return new.tolist(), tokenizer.decode(new, skip_special_tokens=True)


# -- greedy equivalence ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_greedy_reply_equals_the_plain_transformers_workflow(tiny_entry, family):
    entry = tiny_entry(family)
    conversation = core.Conversation(system="You are terse.")
    reply = say(entry, conversation, QUESTION, max_new_tokens=16)
    ids, text = plain_workflow(entry.model, entry.tokenizer, [*conversation.messages[:2]], max_new_tokens=16)
    assert reply.token_ids == ids
    assert reply.text == text
    assert reply.stats.new_tokens == len(ids)


@pytest.mark.slow
def test_greedy_reply_of_the_bundled_model_equals_the_plain_workflow(smollm):
    entry = smollm_entry(smollm)
    conversation = core.get_conversation(entry)
    streamed: list[str] = []
    prepared = core.prepare_chat(
        entry.tokenizer, conversation, QUESTION, max_new_tokens=30, context_length=8192
    )
    reply = core.chat(
        entry, conversation, prepared, core.GenerationOptions(max_new_tokens=30), on_text=streamed.append
    )
    ids, text = plain_workflow(*smollm, [{"role": "user", "content": QUESTION}], max_new_tokens=30)
    assert reply.text == text == "The capital of France is Paris."
    assert reply.token_ids == ids
    assert reply.finish_reason == core.END_OF_TURN
    # Streamed as it came, growing to the final text.
    assert len(streamed) > 3 and streamed[-1] == reply.text
    assert all(later.startswith(earlier) for earlier, later in zip(streamed, streamed[1:], strict=False))
    assert entry.state["conversation"] is conversation
    assert conversation.messages[-1] == {"role": "assistant", "content": "The capital of France is Paris."}


@pytest.mark.slow
def test_bundled_model_second_turn_reuses_the_cache_and_matches_the_plain_workflow(smollm):
    entry = smollm_entry(smollm)
    conversation = core.get_conversation(entry)
    say(entry, conversation, QUESTION, max_new_tokens=30)
    second = say(entry, conversation, "And of Germany?", max_new_tokens=30)
    ids, text = plain_workflow(*smollm, conversation.messages[:-1], max_new_tokens=30)
    assert second.text == text == "The capital of Germany is Berlin."
    assert second.token_ids == ids
    # The whole first turn (prompt and reply) was reused: only the new message was computed.
    assert second.stats.reused_tokens > second.stats.prompt_tokens - 20


# -- history, system message ------------------------------------------------------------------


def test_multi_turn_history_is_the_context_of_the_next_reply(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    first = say(entry, conversation, "Hello there")
    second = say(entry, conversation, "And then?")
    assert [m["role"] for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
    assert conversation.messages[1]["content"] == first.text
    ids, text = plain_workflow(entry.model, entry.tokenizer, conversation.messages[:3], max_new_tokens=12)
    assert second.token_ids == ids and second.text == text
    assert second.stats.prompt_tokens > first.stats.prompt_tokens + first.stats.new_tokens - 1


def test_system_message_is_first_and_can_be_replaced_or_removed(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.Conversation(system="Be brief.")
    say(entry, conversation, "Hi")
    assert conversation.system == "Be brief."
    prompt = entry.tokenizer.decode(
        core.prepare_chat(
            entry.tokenizer, conversation, "Next", max_new_tokens=8, context_length=256
        ).prompt_ids
    )
    assert prompt.count("Be brief.") == 1

    say(entry, conversation, "Again", system="Be verbose.")
    assert conversation.messages[0] == {"role": "system", "content": "Be verbose."}
    assert [m["role"] for m in conversation.messages].count("system") == 1
    assert len(conversation.messages) == 5

    say(entry, conversation, "Once more", system="")
    assert conversation.system is None
    assert len(conversation.messages) == 6


def test_system_given_to_prepare_changes_nothing_until_the_turn_is_generated(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.Conversation(system="Old.")
    prepared = core.prepare_chat(
        entry.tokenizer, conversation, "Hi", max_new_tokens=8, context_length=256, system="New."
    )
    assert prepared.messages[0]["content"] == "New."
    assert conversation.messages == [{"role": "system", "content": "Old."}]


# -- context trimming -------------------------------------------------------------------------


def test_oldest_turns_are_dropped_to_fit_and_the_system_message_stays(tiny_entry):
    entry = tiny_entry("llama")  # 256-token context
    conversation = core.Conversation(system="Keep me.")
    long = "The quick brown fox jumps over the lazy dog. " * 6
    dropped = []
    for turn in range(4):
        prepared = core.prepare_chat(
            entry.tokenizer, conversation, f"{turn} {long}", max_new_tokens=48, context_length=256
        )
        dropped.append(prepared.dropped_turns)
        reply = core.chat(entry, conversation, prepared, core.GenerationOptions(max_new_tokens=48))
        assert reply.stats.prompt_tokens + 48 <= 256
    assert dropped[0] == 0 and sum(dropped) >= 2
    assert conversation.messages[0] == {"role": "system", "content": "Keep me."}
    kept = [m["content"].split()[0] for m in conversation.messages if m["role"] == "user"]
    assert kept == [str(turn) for turn in range(4 - len(kept), 4)], "the newest turns, in order"


def test_a_message_that_cannot_fit_is_refused_and_nothing_changes(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    say(entry, conversation, "Hi")
    before = list(conversation.messages)
    with pytest.raises(InvalidOption, match="shorten it or lower --max-new-tokens"):
        core.prepare_chat(entry.tokenizer, conversation, "word " * 300, max_new_tokens=16, context_length=256)
    assert conversation.messages == before


# -- key/value-cache reuse --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
def test_cache_reuse_gives_the_same_greedy_replies_and_skips_the_shared_prefix(tiny_entry, family):
    with_reuse, without = tiny_entry(family), tiny_entry(family)
    a, b = core.get_conversation(with_reuse), core.get_conversation(without)
    for turn, message in enumerate(["Hello", "Tell me more", "Why?", "Thanks"]):
        reused = say(with_reuse, a, message, max_new_tokens=10, reuse_cache=True)
        fresh = say(without, b, message, max_new_tokens=10, reuse_cache=False)
        assert reused.token_ids == fresh.token_ids
        assert fresh.stats.reused_tokens == 0
        if turn:
            assert reused.stats.reused_tokens > 0
    assert a.messages == b.messages
    assert a.cache is not None and b.cache is None


def test_cache_covers_exactly_the_ids_it_claims(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    reply = say(entry, conversation, "Hello")
    prompt = core.prepare_chat(
        entry.tokenizer, core.Conversation(), "Hello", max_new_tokens=12, context_length=256
    )
    assert conversation.cache.get_seq_length() == len(conversation.cached_ids)
    assert conversation.cached_ids == (prompt.prompt_ids + reply.token_ids)[: len(conversation.cached_ids)]


def test_trimming_invalidates_the_cache_and_replies_stay_identical(tiny_entry):
    with_reuse, without = tiny_entry("llama"), tiny_entry("llama")
    a, b = core.Conversation(system="S."), core.Conversation(system="S.")
    long = "Paris is the capital of France. " * 8
    trimmed = False
    for turn in range(4):
        pa = core.prepare_chat(
            with_reuse.tokenizer, a, f"{turn} {long}", max_new_tokens=40, context_length=256
        )
        pb = core.prepare_chat(without.tokenizer, b, f"{turn} {long}", max_new_tokens=40, context_length=256)
        ra = core.chat(with_reuse, a, pa, core.GenerationOptions(max_new_tokens=40), reuse_cache=True)
        rb = core.chat(without, b, pb, core.GenerationOptions(max_new_tokens=40), reuse_cache=False)
        assert ra.token_ids == rb.token_ids
        if pa.dropped_turns:
            trimmed = True
            # Only the part before the dropped turn (the system message) can be reused.
            system_only = core.encode_messages(with_reuse.tokenizer, [{"role": "system", "content": "S."}])
            assert ra.stats.reused_tokens < len(system_only)
    assert trimmed


def test_reset_and_load_start_without_a_cache(tiny_entry, tmp_path):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    say(entry, conversation, "Hello")
    old_cache = conversation.cache
    assert old_cache is not None

    core.set_conversation(entry, core.Conversation())
    assert conversation.cache is None, "the replaced conversation's cache is freed"
    assert say(entry, core.get_conversation(entry), "Hello").stats.reused_tokens == 0

    path = core.get_conversation(entry).save(tmp_path / "c.json")
    core.set_conversation(entry, core.Conversation.load(path))
    loaded = core.get_conversation(entry)
    assert loaded.cache is None
    reply = say(entry, loaded, "More")
    assert reply.stats.reused_tokens == 0
    fresh = say(tiny_entry("llama"), core.Conversation.load(path), "More", reuse_cache=False)
    assert reply.token_ids == fresh.token_ids


# -- interrupts and failures ------------------------------------------------------------------


def test_keyboard_interrupt_keeps_the_partial_reply_and_the_next_turn_works(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    threads = threading.active_count()
    seen: list[str] = []

    def stop_after_three_tokens(text: str) -> None:
        seen.append(text)
        if len(seen) == 3:
            raise KeyboardInterrupt

    prepared = core.prepare_chat(
        entry.tokenizer, conversation, "Hello", max_new_tokens=30, context_length=256
    )
    reply = core.chat(
        entry,
        conversation,
        prepared,
        core.GenerationOptions(max_new_tokens=30),
        on_text=stop_after_three_tokens,
    )
    assert reply.finish_reason == core.INTERRUPTED
    assert reply.text == seen[-1]
    assert 3 <= reply.stats.new_tokens < 30
    assert threading.active_count() == threads
    assert conversation.messages == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": reply.text},
    ]
    assert conversation.cache is None

    after = say(entry, conversation, "Go on")
    assert after.finish_reason != core.INTERRUPTED
    assert len(conversation.messages) == 4


def test_interrupt_inside_a_forward_pass_before_any_token_changes_nothing(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    say(entry, conversation, "Hello")
    before = list(conversation.messages)
    hook = entry.model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=1))
    try:
        reply = say(entry, conversation, "Again")
    finally:
        hook.remove()
    assert reply.finish_reason == core.INTERRUPTED and reply.token_ids == []
    assert conversation.messages == before
    assert conversation.cache is None
    assert say(entry, conversation, "Again").finish_reason != core.INTERRUPTED


def test_generation_error_is_one_line_and_leaves_history_and_threads_alone(tiny_entry):
    entry = tiny_entry("llama")
    conversation = core.get_conversation(entry)
    say(entry, conversation, "Hello")
    before = list(conversation.messages)
    threads = threading.active_count()
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail here")
    hook = entry.model.register_forward_hook(RaiseOnForward(oom, on_call=3))
    try:
        with pytest.raises(GenerationFailed) as caught:
            say(entry, conversation, "Again")
    finally:
        hook.remove()
    lines = caught.value._render_traceback_()
    assert lines == [
        "GenerationFailed: Generation failed, nothing was added to the conversation: "
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    ]
    assert conversation.messages == before
    assert conversation.cache is None
    assert threading.active_count() == threads
    assert say(entry, conversation, "Again").text is not None


def test_a_bug_in_the_display_callback_keeps_its_own_traceback(tiny_entry):
    entry = tiny_entry("llama")

    def broken(text: str) -> None:
        raise ZeroDivisionError("display bug")

    conversation = core.get_conversation(entry)
    with pytest.raises(ZeroDivisionError, match="display bug"):
        say(entry, conversation, "Hello", on_text=broken)
    assert conversation.messages == []


# -- options, finish reasons, stats -----------------------------------------------------------


def test_length_limit_is_the_finish_reason_when_max_new_tokens_is_reached(tiny_entry):
    entry = tiny_entry("llama")
    reply = say(entry, core.Conversation(), "Hello", max_new_tokens=5)
    assert reply.stats.new_tokens == 5
    assert reply.finish_reason == core.LENGTH


def test_sampling_with_a_seed_is_reproducible(tiny_entry):
    entry = tiny_entry("llama")
    a = say(entry, core.Conversation(), "Hello", max_new_tokens=20, temperature=1.5, top_k=0, seed=7)
    b = say(entry, core.Conversation(), "Hello", max_new_tokens=20, temperature=1.5, top_k=0, seed=7)
    c = say(entry, core.Conversation(), "Hello", max_new_tokens=20, temperature=1.5, top_k=0, seed=8)
    greedy = say(entry, core.Conversation(), "Hello", max_new_tokens=20)
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
        core.GenerationOptions(**{option: value}).validate()


def test_max_new_tokens_must_leave_room_for_a_prompt():
    with pytest.raises(InvalidOption, match="leaves no room"):
        core.GenerationOptions(max_new_tokens=256).validate(context_length=256)
    core.GenerationOptions(max_new_tokens=255).validate(context_length=256)


def test_stats_report_time_to_first_token_and_decoding_rate(tiny_entry):
    entry = tiny_entry("llama")
    clock = FakeClock(step=0.5)
    reply = core.generate(entry, [1, 2, 3], core.GenerationOptions(max_new_tokens=6), clock=clock).reply
    # The clock is read at the start, at the first token and at the end: 0.5 s apart each.
    assert reply.stats.time_to_first_token == pytest.approx(0.5)
    assert reply.stats.seconds == pytest.approx(1.0)
    assert reply.stats.tokens_per_second == pytest.approx(5 / 0.5)
    assert reply.stats.prompt_tokens == 3 and reply.stats.new_tokens == 6


def test_a_tokenizer_only_entry_cannot_generate(loaded_tiny):
    _, tokenizer = loaded_tiny("llama")
    entry = ModelEntry(name="toks", source="x", tokenizer=tokenizer)
    with pytest.raises(core.NotLoaded, match="tokenizer only"):
        say(entry, core.Conversation(), "Hi")


# -- base models: the plain template and raw completion ---------------------------------------


def test_models_without_a_chat_template_use_the_plain_template(tiny_entry):
    entry = tiny_entry("gpt2")
    conversation = core.Conversation(system="Be kind.")
    prepared = core.prepare_chat(entry.tokenizer, conversation, "Hi", max_new_tokens=8, context_length=256)
    assert prepared.plain_template
    assert entry.tokenizer.decode(prepared.prompt_ids) == "System: Be kind.\n\nUser: Hi\n\nAssistant:"
    reply = core.chat(entry, conversation, prepared, core.GenerationOptions(max_new_tokens=8))
    assert conversation.messages[-1] == {"role": "assistant", "content": reply.text}
    assert not core.prepare_chat(
        tiny_entry("llama").tokenizer, conversation, "Hi", max_new_tokens=8, context_length=256
    ).plain_template


def test_plain_template_stops_at_the_next_user_line_and_never_streams_it(gpt2_tokenizer):
    import torch

    shown: list[str] = []
    streamer = core._Streamer(gpt2_tokenizer, shown.append, ["\nUser:"], FakeClock())
    streamer.put(torch.tensor([[0]]))  # the prompt comes first and is not shown
    for token in gpt2_tokenizer(" Paris is nice.\nUser: and Berlin?")["input_ids"]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert streamer.stopped_by_string()
    assert shown[-1] == "Paris is nice."
    assert not any("\nU" in text for text in shown)


def test_complete_continues_raw_text_like_plain_generate(tiny_entry):
    import torch

    entry = tiny_entry("gpt2")
    reply = core.complete(entry, "Once upon a time", core.GenerationOptions(max_new_tokens=12))
    inputs = entry.tokenizer("Once upon a time", return_tensors="pt")
    with torch.inference_mode():
        output = entry.model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert reply.token_ids == output[0, inputs["input_ids"].shape[1] :].tolist()
    assert reply.finish_reason in (core.LENGTH, core.END_OF_TEXT)
    assert "conversation" not in entry.state


def test_complete_refuses_a_prompt_longer_than_the_context(tiny_entry):
    entry = tiny_entry("gpt2")
    with pytest.raises(InvalidOption, match="exceeds the 256-token context"):
        core.complete(entry, "fox " * 300, core.GenerationOptions(max_new_tokens=8))


# -- conversation files -----------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Show code:\n\n```python\nprint({1: 2})\n```\n"},
    {"role": "assistant", "content": "Sure.\n\n\nDone <b>bold</b> 🙂"},
]


@pytest.mark.parametrize("suffix", [".json", ".md", ".markdown"])
def test_save_and_load_round_trip(tmp_path, suffix):
    path = core.Conversation(MESSAGES).save(tmp_path / f"chat{suffix}", model="tiny")
    assert core.Conversation.load(path).messages == MESSAGES


def test_saved_json_names_its_format_and_model(tmp_path):
    path = core.Conversation(MESSAGES).save(tmp_path / "chat.json", model="tiny")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "llm_magics.conversation" and document["model"] == "tiny"


def test_a_plain_json_list_of_messages_loads(tmp_path):
    path = tmp_path / "openai.json"
    path.write_text(json.dumps(MESSAGES[1:]), encoding="utf-8")
    assert core.Conversation.load(path).messages == MESSAGES[1:]


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
        core.Conversation.load(path)


def test_missing_file_and_unknown_extension_are_one_line_errors(tmp_path):
    with pytest.raises(ConversationFileInvalid, match="No such file"):
        core.Conversation.load(tmp_path / "missing.json")
    with pytest.raises(InvalidOption, match=r"\.json or \.md"):
        core.Conversation.load(tmp_path / "chat.txt")
    with pytest.raises(InvalidOption, match=r"\.json or \.md"):
        core.Conversation(MESSAGES).save(tmp_path / "chat.txt")
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
    stats = core.Stats(
        prompt_tokens=37, new_tokens=8, reused_tokens=30, time_to_first_token=0.125, seconds=0.325
    )
    assert footer_text(stats, core.END_OF_TURN, "tiny") == (
        "tiny · 37 prompt tokens (30 reused) · 8 new tokens · first token 0.12 s · 35.0 tok/s · end of turn"
    )
    assert (
        footer_text(core.Stats(prompt_tokens=5), core.INTERRUPTED)
        == "5 prompt tokens · 0 new tokens · interrupted"
    )


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, llm_magics.chat, llm_magics.display.chat; print(','.join(m for m in ('torch', 'transformers', 'markdown_it') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == ""
