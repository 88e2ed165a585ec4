"""%%llm_chat, %%llm_complete, %llm_history and %llm_reset as a user drives them in a shell."""

from __future__ import annotations

import json
import threading

import pytest
import torch

import llm_magics
from llm_magics.values import FinishReason
from tests.helpers import (
    FakeClock,
    RaiseOnForward,
    assert_one_line_error,
    magics,
    run,
    shown_html,
    shown_text,
)

QUESTION = "What is the capital of France?"


def chat(shell, message: str, options: str = ""):
    """Run a %%llm_chat cell as a user would; return the result and what it showed."""
    return run(shell, f"%%llm_chat {options}\n{message}")


def conversation(shell, name: str | None = None) -> list[dict[str, str]]:
    return magics(shell).registry.get(name).session.conversation.messages


def plain_workflow(name: str, messages, max_new_tokens: int):
    """What the transformers docs do with the same loaded model: the reference for greedy replies."""
    import torch

    model, tokenizer = llm_magics.get_model(name)
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture
def tiny(shell, tiny_models):
    """A tiny Llama (SmolLM2's tokenizer and chat template) loaded as "tiny"."""
    result, _ = run(shell, f"%llm_load {tiny_models['llama']} --as tiny --dtype float32")
    assert result.success
    return "tiny"


@pytest.fixture
def base(shell, tiny_models):
    """A tiny GPT-2 with no chat template, loaded as "base"."""
    result, _ = run(shell, f"%llm_load {tiny_models['gpt2']} --as base --dtype float32")
    assert result.success
    return "base"


# -- replies ----------------------------------------------------------------------------------


def test_greedy_chat_matches_the_plain_workflow_and_is_kept_in_the_namespace(shell, tiny):
    result, captured = chat(shell, QUESTION, "--temperature 0 --max-new-tokens 12 --out answer")
    assert result.success and result.result is None
    expected = plain_workflow(tiny, [{"role": "user", "content": QUESTION}], 12)
    assert shell.user_ns["_llm_reply"] == shell.user_ns["answer"] == expected
    assert conversation(shell) == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": expected},
    ]
    final = captured.outputs[-1].data
    assert "12 new tokens" in final["text/plain"] and "length limit" in final["text/plain"]
    assert "prompt tokens" in final["text/html"] and "tok/s" in final["text/html"]


@pytest.mark.slow
def test_bundled_model_answers_like_the_plain_workflow(shell):
    assert run(shell, "%llm_load --as smol --dtype float32")[0].success
    result, captured = chat(shell, QUESTION, "--temperature 0 --max-new-tokens 30")
    assert result.success
    assert shell.user_ns["_llm_reply"] == "The capital of France is Paris."
    assert shell.user_ns["_llm_reply"] == plain_workflow("smol", [{"role": "user", "content": QUESTION}], 30)
    assert "end of turn" in captured.outputs[-1].data["text/plain"]
    assert "<p>The capital of France is Paris.</p>" in captured.outputs[-1].data["text/html"]

    result, captured = chat(shell, "And of Germany?", "--temperature 0 --max-new-tokens 30")
    assert shell.user_ns["_llm_reply"] == "The capital of Germany is Berlin."
    assert shell.user_ns["_llm_reply"] == plain_workflow("smol", conversation(shell)[:-1], 30)
    assert "reused" in captured.outputs[-1].data["text/plain"]


def test_multi_turn_history_and_one_conversation_per_model(shell, tiny, tiny_models):
    chat(shell, "Hello", "--max-new-tokens 4")
    chat(shell, "Go on", "--max-new-tokens 4")
    assert run(shell, f"%llm_load {tiny_models['qwen2']} --as other")[0].success
    chat(shell, "Hi other", "other --max-new-tokens 4")
    assert [m["content"] for m in conversation(shell, "tiny") if m["role"] == "user"] == ["Hello", "Go on"]
    assert [m["content"] for m in conversation(shell, "other") if m["role"] == "user"] == ["Hi other"]

    _, captured = run(shell, "%llm_history tiny")
    plain = shown_text(captured)
    assert "User:\nHello" in plain and "User:\nGo on" in plain and "Hi other" not in plain


def test_system_message_new_conversation_and_reset(shell, tiny):
    chat(shell, "Hello", "--system 'Answer in French.' --max-new-tokens 4")
    assert conversation(shell)[0] == {"role": "system", "content": "Answer in French."}
    chat(shell, "More", "--max-new-tokens 4")
    assert len(conversation(shell)) == 5

    chat(shell, "Fresh start", "--new --max-new-tokens 4")
    assert [m["role"] for m in conversation(shell)] == ["user", "assistant"]

    result, captured = run(shell, "%llm_reset")
    assert result.success and "fresh conversation" in shown_text(captured)
    assert conversation(shell) == []


def test_default_system_prompt_trait_applies_to_new_conversations(shell, tiny):
    run(shell, "%config LlmMagics.system_prompt = 'You are a pirate.'")
    chat(shell, "Hello", "--max-new-tokens 4")
    assert conversation(shell)[0] == {"role": "system", "content": "You are a pirate."}
    chat(shell, "Hello", "--new --system '' --max-new-tokens 4")
    assert conversation(shell)[0]["role"] == "user"


def test_interpolation_replaces_known_names_and_leaves_everything_else(shell, tiny):
    shell.user_ns.update(test_topic="tides", test_items=["moon", "sun"])
    message = "Explain {test_topic} and {test_items[0]}; keep {unknown_name}, {{test_topic}} and code {'a': {1, 2}}."
    assert chat(shell, message, "--max-new-tokens 2")[0].success
    assert conversation(shell)[-2]["content"] == (
        "Explain tides and moon; keep {unknown_name}, {test_topic} and code {'a': {1, 2}}."
    )
    chat(shell, "Literally {test_topic}", "--no-interpolate --max-new-tokens 2")
    assert conversation(shell)[-2]["content"] == "Literally {test_topic}"


def test_traits_are_the_defaults_and_flags_override_them(shell, tiny):
    run(shell, "%config LlmMagics.max_new_tokens = 3")
    _, captured = chat(shell, "Hello")
    assert "3 new tokens" in captured.outputs[-1].data["text/plain"]
    _, captured = chat(shell, "Hello", "--max-new-tokens 5")
    assert "5 new tokens" in captured.outputs[-1].data["text/plain"]


def test_cache_reuse_shows_in_the_footer_and_can_be_switched_off(shell, tiny):
    chat(shell, "Hello", "--max-new-tokens 4")
    _, captured = chat(shell, "Again", "--max-new-tokens 4")
    assert "reused)" in captured.outputs[-1].data["text/plain"]
    first_reply = shell.user_ns["_llm_reply"]

    run(shell, "%config LlmMagics.reuse_cache = False")
    run(shell, "%llm_reset")
    chat(shell, "Hello", "--max-new-tokens 4")
    _, captured = chat(shell, "Again", "--max-new-tokens 4")
    assert "reused" not in captured.outputs[-1].data["text/plain"]
    assert shell.user_ns["_llm_reply"] == first_reply


def test_cpu_decoding_mode_is_a_setting_and_replies_stay_the_same(shell, tiny):
    def cache_layers() -> set[str]:
        cache = magics(shell).registry.get(None).session.cache
        return {type(layer).__name__ for layer in cache.layers}

    replies = {}
    for mode, layers in (
        ("exact", "GrowingLayer"),
        ("fastest", "GrowingLayer"),
        ("transformers", "DynamicLayer"),
    ):
        run(shell, f"%config LlmMagics.cpu_decoding = '{mode}'")
        run(shell, "%llm_reset")
        chat(shell, "Hello", "--max-new-tokens 4")
        chat(shell, "Again", "--max-new-tokens 4")
        assert cache_layers() == {layers}
        replies[mode] = shell.user_ns["_llm_reply"]
    assert len(set(replies.values())) == 1


def test_long_history_is_trimmed_with_a_notice(shell, tiny):
    long = "The quick brown fox jumps over the lazy dog. " * 7
    notices = []
    for turn in range(4):
        _, captured = chat(shell, f"{turn} {long}", "--system 'Keep me.' --max-new-tokens 40")
        notices.append("Dropped the oldest" in shown_text(captured))
    assert notices[0] is False and any(notices)
    messages = conversation(shell)
    assert messages[0] == {"role": "system", "content": "Keep me."}
    assert not messages[1]["content"].startswith("0 ")


def test_base_model_gets_the_plain_template_with_a_single_notice(shell, base):
    _, first = chat(shell, "Hello", "--max-new-tokens 4")
    _, second = chat(shell, "Again", "--max-new-tokens 4")
    assert "has no chat template" in shown_text(first)
    assert "has no chat template" not in shown_text(second)
    assert len(conversation(shell)) == 4


def test_complete_continues_the_text_and_leaves_the_conversation_alone(shell, base):
    import torch

    result, captured = run(shell, "%%llm_complete --max-new-tokens 8 --out story\nOnce upon a time")
    assert result.success
    model, tokenizer = llm_magics.get_model("base")
    inputs = tokenizer("Once upon a time", return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    expected = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert shell.user_ns["story"] == shell.user_ns["_llm_reply"] == expected
    final = captured.outputs[-1].data
    assert final["text/plain"].startswith("Once upon a time" + expected)
    assert conversation(shell, "base") == []


# -- the Python API: llm_magics.chat ------------------------------------------------------------


def test_chat_from_python_is_a_turn_of_the_same_conversation(shell, tiny):
    reply = llm_magics.chat(QUESTION, temperature=0, max_new_tokens=10)
    assert reply.text == plain_workflow(tiny, [{"role": "user", "content": QUESTION}], 10)
    assert reply.stats.new_tokens == 10 and reply.finish_reason is FinishReason.LENGTH
    assert conversation(shell) == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": reply.text},
    ]
    # A cell goes on from it, and Python from the cell.
    result, _ = chat(shell, "And of Italy?", "--temperature 0 --max-new-tokens 6")
    assert result.success
    again = llm_magics.chat("Thanks", tiny, temperature=0, max_new_tokens=6)
    assert conversation(shell)[-2:] == [
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": again.text},
    ]
    assert again.text == plain_workflow(tiny, conversation(shell)[:-1], 6)


def test_chat_from_python_takes_new_system_and_the_session_defaults(shell, tiny):
    llm_magics.chat("Hello", max_new_tokens=4)
    magics(shell).max_new_tokens = 5
    reply = llm_magics.chat(QUESTION, new=True, system="Answer in one word.", temperature=0)
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": QUESTION}]
    assert conversation(shell) == [*messages, {"role": "assistant", "content": reply.text}]
    assert reply.stats.new_tokens == 5 and reply.text == plain_workflow(tiny, messages, 5)


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda: llm_magics.chat("Hi", max_tokens=5), "InvalidOption", "max_new_tokens"),
        (lambda: llm_magics.chat("   "), "InvalidOption", "needs a message"),
        (lambda: llm_magics.chat(["Hi"]), "InvalidOption", "needs a message"),
        (lambda: llm_magics.chat("Hi", temperature=-1), "InvalidOption", "temperature"),
        (lambda: llm_magics.chat("Hi", max_new_tokens=10**9), "InvalidOption", "max-new-tokens"),
        (lambda: llm_magics.chat("Hi \ud800", max_new_tokens=4), "InvalidOption", "message"),
        (lambda: llm_magics.chat("Hi", "nobody"), "NotLoaded", "nobody"),
        (lambda: llm_magics.chat("word " * 5000, max_new_tokens=4), "InvalidOption", "context"),
    ],
)
def test_bad_input_to_chat_from_python_is_one_line_and_changes_nothing(shell, tiny, call, error, fragment):
    llm_magics.chat("Hello", max_new_tokens=4)
    before = [dict(m) for m in conversation(shell)]
    with pytest.raises(Exception) as raised:
        call()
    assert type(raised.value).__name__ == error and fragment in str(raised.value), raised.value
    assert "\n" not in str(raised.value)
    assert conversation(shell) == before and magics(shell).registry.names() == [tiny]


def test_chat_from_python_on_a_tokenizer_alone_says_it_cannot(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --tokenizer-only --as tok")
    with pytest.raises(Exception, match="tok") as raised:
        llm_magics.chat("Hi")
    assert "\n" not in str(raised.value)


def test_an_interrupted_chat_from_python_ends_the_cell_and_keeps_the_partial_reply(shell, tiny):
    model, _ = llm_magics.get_model(tiny)
    hook = model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=4))
    try:
        with pytest.raises(Exception, match="the partial reply is kept") as raised:
            llm_magics.chat("Tell me a story", max_new_tokens=30)
    finally:
        hook.remove()
    assert type(raised.value).__name__ == "GenerationInterrupted"
    assert len(conversation(shell)) == 2 and conversation(shell)[-1]["content"]


# -- streaming and display --------------------------------------------------------------------


def test_streaming_updates_are_throttled_whatever_the_token_rate(shell, tiny):
    # 0.01 s per token on the fake clock: 100 tokens a second, against at most 10 updates a second.
    magics(shell).clock = FakeClock(step=0.01)
    result, captured = chat(shell, "Tell me a long story", "--max-new-tokens 200")
    assert result.success
    assert "200 new tokens" in captured.outputs[-1].data["text/plain"]
    streamed = [out for out in captured.outputs if out.data["text/plain"].endswith("[generating…]")]
    assert len(captured.outputs) == len(streamed) + 1, "one live output, then its final state"
    assert all(out.update for out in captured.outputs[1:]), "updated in place, not appended"
    assert 5 <= len(streamed) <= 200 * 0.01 / 0.1 + 2


def test_the_first_token_shows_at_once_whatever_the_throttle(shell, tiny):
    # With a huge interval only one streamed update can happen: it must be the first token's,
    # not held back because the "generating…" placeholder was shown just before.
    magics(shell).clock = FakeClock(step=0.01)
    run(shell, "%config LlmMagics.stream_interval = 1000.0")
    _, captured = chat(shell, "Tell me a story", "--max-new-tokens 20")
    streamed = [
        out.data["text/plain"] for out in captured.outputs if out.data["text/plain"].endswith("[generating…]")
    ]
    assert len(streamed) == 2, "the placeholder, then the first token"
    first_text = streamed[1].removesuffix("[generating…]").removesuffix("\n")
    assert first_text, "the update carries the first token's text"
    assert shell.user_ns["_llm_reply"].strip().startswith(first_text.strip())


def test_stream_interval_zero_updates_on_every_new_piece_of_text(shell, tiny):
    magics(shell).clock = FakeClock(step=0.01)
    run(shell, "%config LlmMagics.stream_interval = 0.0")
    _, captured = chat(shell, "Tell me a story", "--max-new-tokens 40")
    streamed = [out for out in captured.outputs if out.data["text/plain"].endswith("[generating…]")]
    assert len(streamed) > 20


def test_the_final_output_is_ordinary_rendered_output(shell, tiny):
    _, captured = chat(shell, "Hello", "--max-new-tokens 6")
    reply = shell.user_ns["_llm_reply"]
    final = captured.outputs[-1]
    assert final.data["text/plain"].startswith(reply)
    assert "llm-magics-reply" in final.data["text/html"] and "generating" not in final.data["text/html"]
    assert "<script" not in final.data["text/html"]


def test_no_stream_shows_one_output_only_at_the_end(shell, tiny):
    _, captured = chat(shell, "Hello", "--max-new-tokens 6 --no-stream")
    assert len(captured.outputs) == 1
    assert captured.outputs[0].data["text/plain"].startswith(shell.user_ns["_llm_reply"])


@pytest.fixture
def terminal(shell):
    """The shell as terminal IPython configures it: only text/plain is shown."""
    before = list(shell.display_formatter.active_types)
    shell.display_formatter.active_types = ["text/plain"]
    yield shell
    shell.display_formatter.active_types = before


def test_terminal_prints_the_reply_as_plain_text(terminal, tiny):
    magics(terminal).clock = FakeClock(step=0.01)
    result, captured = chat(terminal, "Hello", "--max-new-tokens 8")
    assert result.success
    reply = terminal.user_ns["_llm_reply"]
    assert captured.outputs == []
    assert captured.stdout.startswith(reply)
    assert captured.stdout.rstrip().endswith("length limit]")
    assert "<" not in captured.stdout.replace(reply, "")


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_terminal_completion_prints_the_prompt_then_the_continuation(terminal, base, stream):
    _, captured = run(terminal, f"%%llm_complete --max-new-tokens 4 {stream}\nOnce upon a time")
    assert captured.outputs == []
    assert captured.stdout.startswith("Once upon a time" + terminal.user_ns["_llm_reply"] + "\n[base · ")


# -- interrupts and failures ------------------------------------------------------------------


def test_interrupt_keeps_the_partial_reply_and_the_next_chat_works(shell, tiny):
    chat(shell, "Hello", "--max-new-tokens 4")
    threads = threading.active_count()
    model, _ = llm_magics.get_model(tiny)
    hook = model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=4))
    try:
        result, captured = chat(shell, "Tell me more", "--max-new-tokens 30")
    finally:
        hook.remove()
    assert_one_line_error(result, captured, "GenerationInterrupted", "the partial reply is kept")
    assert threading.active_count() == threads
    partial = shell.user_ns["_llm_reply"]
    assert conversation(shell)[-1] == {"role": "assistant", "content": partial}
    assert len(conversation(shell)) == 4
    final = captured.outputs[-1].data
    assert "interrupted" in final["text/plain"] and "3 new tokens" in final["text/plain"]

    result, _ = chat(shell, "Continue", "--max-new-tokens 4")
    assert result.success
    assert len(conversation(shell)) == 6


def test_generation_failure_is_one_line_and_history_is_untouched(shell, tiny):
    chat(shell, "Hello", "--max-new-tokens 4")
    before = [dict(m) for m in conversation(shell)]
    threads = threading.active_count()
    model, _ = llm_magics.get_model(tiny)
    hook = model.register_forward_hook(
        RaiseOnForward(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"), 2)
    )
    try:
        result, captured = chat(shell, "Again", "--max-new-tokens 10")
    finally:
        hook.remove()
    assert_one_line_error(result, captured, "GenerationFailed", "Out of memory")
    assert conversation(shell) == before
    assert threading.active_count() == threads
    assert "failed" in captured.outputs[-1].data["text/plain"], "the live output ends in a failed state"
    assert chat(shell, "Again", "--max-new-tokens 4")[0].success


def test_a_bug_inside_generation_keeps_its_traceback_and_history_is_untouched(shell, tiny):
    chat(shell, "Hello", "--max-new-tokens 4")
    before = [dict(m) for m in conversation(shell)]
    model, _ = llm_magics.get_model(tiny)
    hook = model.register_forward_hook(RaiseOnForward(TypeError("a bug of ours"), 2))
    try:
        result, captured = chat(shell, "Again", "--max-new-tokens 10")
    finally:
        hook.remove()
    assert isinstance(result.error_in_exec, TypeError), "not wrapped into a one-line error"
    assert "Traceback" in captured.stdout + captured.stderr or result.error_in_exec.__traceback__ is not None
    assert conversation(shell) == before


# -- history files ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".md"])
def test_history_save_and_load_round_trip(shell, tiny, tmp_path, suffix):
    chat(shell, "Hello", "--system 'Be brief.' --max-new-tokens 4")
    chat(shell, "Code: {'a': 1}", "--max-new-tokens 4")
    saved = [dict(m) for m in conversation(shell)]
    path = tmp_path / f"chat{suffix}"
    result, captured = run(shell, f"%llm_history --save {path}")
    assert result.success and "Saved 5 messages" in shown_text(captured)
    run(shell, "%llm_reset")
    result, captured = run(shell, f"%llm_history --load {path}")
    assert result.success and "Loaded 5 messages" in shown_text(captured)
    assert conversation(shell) == saved
    assert chat(shell, "And now?", "--max-new-tokens 4")[0].success


def test_history_json_prints_the_conversation(shell, tiny):
    chat(shell, "Hello", "--max-new-tokens 4")
    _, captured = run(shell, "%llm_history --json")
    document = json.loads(captured.stdout)
    assert document["model"] == "tiny" and document["messages"] == conversation(shell)


def test_history_escapes_what_the_model_said(shell, tiny, tmp_path):
    path = tmp_path / "hostile.json"
    messages = [
        {"role": "user", "content": "Show me HTML"},
        {"role": "assistant", "content": "<script>alert(1)</script> <img src=x onerror=alert(2)>"},
    ]
    path.write_text(json.dumps(messages), encoding="utf-8")
    run(shell, f"%llm_history --load {path}")
    _, captured = run(shell, "%llm_history")
    page = shown_html(captured)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- bad input: one line each, nothing changed ------------------------------------------------


def test_chat_with_no_model_loaded(shell):
    result, captured = chat(shell, "Hello")
    assert_one_line_error(result, captured, "NotLoaded", "%llm_load")


@pytest.mark.parametrize(
    ("options", "cell", "error", "fragment"),
    [
        ("nosuch", "Hello", "NotLoaded", "'nosuch'"),
        ("", "   \n  ", "InvalidOption", "The cell is empty"),
        ("--max-new-tokens -3", "Hello", "InvalidOption", "--max-new-tokens must be"),
        ("--max-new-tokens 100000", "Hello", "InvalidOption", "leaves no room"),
        ("--temperature -1", "Hello", "InvalidOption", "--temperature must be"),
        ("--temperature 1e9", "Hello", "InvalidOption", "--temperature must be"),
        ("--top-p 2", "Hello", "InvalidOption", "--top-p must be"),
        ("--top-k -1", "Hello", "InvalidOption", "--top-k must be"),
        ("--repetition-penalty 0", "Hello", "InvalidOption", "--repetition-penalty must be"),
        ("--seed -4", "Hello", "InvalidOption", "--seed must be"),
        ("--out 'not a name'", "Hello", "InvalidOption", "--out needs a variable name"),
        ("--temperature warm", "Hello", "UsageError", "invalid float value"),
    ],
)
def test_bad_chat_input_is_one_line_and_changes_nothing(shell, tiny, options, cell, error, fragment):
    chat(shell, "Hello", "--max-new-tokens 4")
    before = [dict(m) for m in conversation(shell)]
    names = magics(shell).registry.names()
    shell.user_ns.pop("_llm_reply")
    result, captured = chat(shell, cell, options)
    assert_one_line_error(result, captured, error, fragment)
    assert conversation(shell) == before
    assert magics(shell).registry.names() == names
    assert "_llm_reply" not in shell.user_ns


def test_a_message_that_interpolates_to_nothing_is_refused(shell, tiny):
    shell.user_ns["test_blank"] = "  "
    result, captured = chat(shell, "{test_blank}", "--max-new-tokens 4")
    assert_one_line_error(result, captured, "InvalidOption", "The message is empty")
    assert conversation(shell) == []


def test_bad_trait_value_is_reported_like_a_bad_flag(shell, tiny):
    run(shell, "%config LlmMagics.temperature = -2.0")
    result, captured = chat(shell, "Hello")
    assert_one_line_error(result, captured, "InvalidOption", "--temperature must be")


def test_tokenizer_only_entry_cannot_chat(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --tokenizer-only --as toks")
    result, captured = chat(shell, "Hello")
    assert_one_line_error(result, captured, "NotSupported", "tokenizer only")


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        ("{broken", "ConversationFileInvalid", "invalid JSON"),
        ('[{"role": "wizard", "content": "x"}]', "ConversationFileInvalid", "role 'wizard'"),
    ],
)
def test_loading_a_file_that_is_not_a_conversation_changes_nothing(
    shell, tiny, tmp_path, content, error, fragment
):
    chat(shell, "Hello", "--max-new-tokens 4")
    before = [dict(m) for m in conversation(shell)]
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result, captured = run(shell, f"%llm_history --load {path}")
    assert_one_line_error(result, captured, error, fragment)
    assert conversation(shell) == before


def test_other_bad_history_input(shell, tiny, tmp_path):
    result, captured = run(shell, f"%llm_history --load {tmp_path / 'missing.json'}")
    assert_one_line_error(result, captured, "ConversationFileInvalid", "No such file")
    result, captured = run(shell, f"%llm_history --save {tmp_path / 'a.json'} --load {tmp_path / 'a.json'}")
    assert_one_line_error(result, captured, "InvalidOption", "not both")
    result, captured = run(shell, f"%llm_history --save {tmp_path / 'chat.txt'}")
    assert_one_line_error(result, captured, "InvalidOption", ".json or .md")
    result, captured = run(shell, "%llm_history nosuch")
    assert_one_line_error(result, captured, "NotLoaded", "'nosuch'")
    result, captured = run(shell, "%llm_reset nosuch")
    assert_one_line_error(result, captured, "NotLoaded", "'nosuch'")


def test_the_magics_are_registered_with_their_help(shell):
    assert {"llm_chat", "llm_complete"} <= set(shell.magics_manager.magics["cell"])
    assert {"llm_history", "llm_reset"} <= set(shell.magics_manager.magics["line"])
    assert (
        "--max-new-tokens" in magics(shell).llm_chat.__doc__ and "Example" in magics(shell).llm_chat.__doc__
    )


def test_compare_gives_each_model_the_reply_it_gives_alone(shell, tiny, tiny_models):
    assert run(shell, f"%llm_load {tiny_models['qwen2']} --as other --dtype float32")[0].success
    result, captured = chat(shell, QUESTION, f"{tiny} --compare other --max-new-tokens 8")
    assert result.success
    together = shell.user_ns["_llm_reply"]
    assert together[tiny] == plain_workflow(tiny, [{"role": "user", "content": QUESTION}], 8)
    assert together["other"] == plain_workflow("other", [{"role": "user", "content": QUESTION}], 8)
    assert len(conversation(shell, tiny)) == len(conversation(shell, "other")) == 2
