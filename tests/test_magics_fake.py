"""The magics over the fake engine: parsing, display, errors and history, without torch.

These run in milliseconds and on Colab's Python without any model; what only a real model can
prove (transformers parity) is in test_chat_magics.py.
"""

from __future__ import annotations

import json

import pytest

from llm_magics.values import EngineInfo, EngineKind
from tests.fake_engine import fake_engine
from tests.helpers import FakeClock, assert_one_line_error, magics, run, shown_html, shown_text

pytestmark = pytest.mark.torchfree


@pytest.fixture
def fake(shell):
    engine = fake_engine("fake")
    magics(shell).registry.add(engine)
    return engine


def chat(shell, message: str, options: str = ""):
    return run(shell, f"%%llm_chat {options}\n{message}")


def messages(engine) -> list[dict[str, str]]:
    return engine.session.conversation.messages


# -- parsing: one parser, quotes stripped the same way everywhere -------------------------------


@pytest.mark.parametrize("quoted", ['"mine"', "'mine'"])
def test_quoted_out_name_is_unquoted(shell, fake, quoted):
    result, _ = chat(shell, "Hello", f"--out {quoted}")
    assert result.success
    assert shell.user_ns["mine"] == "Echo: Hello"


def test_quoted_system_message_keeps_its_spaces(shell, fake):
    chat(shell, "Hello", '--system "Answer in one sentence."')
    assert messages(fake)[0] == {"role": "system", "content": "Answer in one sentence."}


@pytest.mark.parametrize(
    "line",
    [
        '%%llm_chat --system "unclosed\nHello',
        '%llm_history --save "unclosed',
        '%llm_load x --as "unclosed',
        "%llm_use 'unclosed",
        '%llm_unload "unclosed',
        "%llm_reset 'unclosed",
    ],
)
def test_an_unclosed_quote_is_one_line_in_every_magic(shell, fake, line):
    before = list(messages(fake))
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, "InvalidOption", "No closing quotation")
    assert messages(fake) == before
    assert magics(shell).registry.names() == ["fake"]


def test_quoted_registry_names_are_unquoted(shell, fake):
    result, _ = run(shell, '%llm_use "fake"')
    assert result.success
    result, _ = run(shell, "%llm_unload 'fake'")
    assert result.success and fake.closed


# -- display ------------------------------------------------------------------------------------


def test_reply_streams_then_ends_as_rendered_output_with_its_footer(shell, fake):
    magics(shell).clock = FakeClock(step=1.0)  # every token a second apart: every one shown
    result, captured = chat(shell, "Hello <b>there</b>")
    assert result.success
    final = captured.outputs[-1].data
    assert final["text/plain"].startswith("Echo: Hello <b>there</b>")
    assert "fake · " in final["text/plain"] and "end of turn" in final["text/plain"]
    assert "<b>there</b>" not in shown_html(captured), "model text is escaped"
    assert "&lt;b&gt;there&lt;/b&gt;" in final["text/html"]
    assert len(captured.outputs) > 2, "a live output updated while streaming"
    assert shell.user_ns["_llm_reply"] == "Echo: Hello <b>there</b>"


def test_no_stream_shows_one_output(shell, fake):
    result, captured = chat(shell, "Hello", "--no-stream")
    assert result.success and len(captured.outputs) == 1


def test_terminal_prints_plain_text(shell, fake, monkeypatch):
    import llm_magics.display.notice as notice

    monkeypatch.setattr(notice, "is_rich", lambda shell: False)
    result, captured = chat(shell, "Hello")
    assert result.success
    assert "Echo: Hello" in captured.stdout and "[fake · " in captured.stdout


def test_interrupt_shows_the_partial_reply_and_keeps_it(shell, fake):
    fake.reply = lambda m: "one two three four five"
    fake.interrupt_after = 2
    result, captured = chat(shell, "Hello")
    assert_one_line_error(result, captured, "GenerationInterrupted", "the partial reply is kept")
    assert messages(fake)[-1] == {"role": "assistant", "content": "one two"}
    assert "interrupted" in captured.outputs[-1].data["text/plain"]


def test_an_interrupt_before_the_first_token_adds_nothing(shell, fake):
    fake.interrupt_after = 0
    result, captured = chat(shell, "Hello")
    assert_one_line_error(result, captured, "GenerationInterrupted", "nothing was added")
    assert messages(fake) == []


def test_our_own_bug_keeps_its_traceback(shell, fake):
    fake.fail_with = TypeError("a bug of ours")
    result, _ = chat(shell, "Hello")
    assert isinstance(result.error_in_exec, TypeError)
    assert messages(fake) == []


def test_dropped_turns_are_announced(shell):
    engine = fake_engine("small", context_length=40)
    magics(shell).registry.add(engine)
    for word in ("first", "second", "third", "fourth"):
        result, captured = chat(shell, f"{word} " * 5, "--max-new-tokens 8")
        assert result.success
    assert "Dropped the oldest" in shown_text(captured)


# -- capabilities and errors ----------------------------------------------------------------------


class DescribeOnly:
    """An engine that can do nothing but describe itself (like a pipeline for another task)."""

    name = "mute"

    def describe(self):
        return EngineInfo(name="mute", source="nowhere", kind=EngineKind.PIPELINE)

    def context_window(self):
        return None

    def close(self):
        return 0


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        (
            "%%llm_chat\nHello",
            "NotSupported",
            "cannot run %%llm_chat: the pipeline engine has no conversation",
        ),
        ("%%llm_complete\nOnce", "NotSupported", "cannot run %%llm_complete"),
        ("%llm_history", "NotSupported", "cannot run %llm_history"),
        ("%llm_reset", "NotSupported", "cannot run %llm_reset"),
        ("%tokens hello", "NotSupported", "cannot run %tokens"),
    ],
)
def test_what_an_engine_cannot_do_is_one_line(shell, line, error, fragment):
    magics(shell).registry.add(DescribeOnly())
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)


@pytest.mark.parametrize(
    "name", ["__builtins__", "print", "In", "Out", "get_ipython", "_", "_3", "_i3", "_ii", "exit", "class"]
)
def test_out_refuses_names_that_would_break_the_session(shell, fake, name):
    before = shell.user_ns.get(name, "missing")
    result, captured = chat(shell, "Hello", f"--out {name}")
    assert_one_line_error(result, captured, "InvalidOption", "")
    assert shell.user_ns.get(name, "missing") is before
    assert messages(fake) == []


# -- history --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".md"])
def test_history_round_trips_through_a_file(shell, fake, tmp_path, suffix):
    chat(shell, "Hello", "--system 'Be brief.'")
    chat(shell, "Again")
    saved = [dict(m) for m in messages(fake)]
    path = tmp_path / f"chat{suffix}"
    assert run(shell, f"%llm_history --save {path}")[0].success
    run(shell, "%llm_reset")
    assert messages(fake) == []
    assert run(shell, f"%llm_history --load {path}")[0].success
    assert messages(fake) == saved


def test_history_json_and_view(shell, fake):
    chat(shell, "Hello <i>x</i>")
    _, captured = run(shell, "%llm_history --json")
    assert json.loads(captured.stdout)["messages"][0]["content"] == "Hello <i>x</i>"
    _, captured = run(shell, "%llm_history")
    assert "<i>x</i>" not in shown_html(captured)


def test_new_conversation_is_adopted_only_when_the_turn_succeeds(shell, fake):
    chat(shell, "Hello")
    first = fake.session
    fake.fail_with = RuntimeError("boom")
    result, _ = chat(shell, "Fresh", "--new")
    assert not result.success
    assert fake.session is first and len(messages(fake)) == 2
    result, _ = chat(shell, "Fresh", "--new")
    assert result.success and fake.session is not first
    assert [m["content"] for m in messages(fake)] == ["Fresh", "Echo: Fresh"]


# -- the registry and the extension -----------------------------------------------------------------


def test_list_and_unload_go_through_the_engine(shell, fake):
    fake.footprint_bytes = 3_000_000
    _, captured = run(shell, "%llm_list")
    assert "fake" in shown_text(captured)
    _, captured = run(shell, "%llm_unload fake")
    assert fake.closed and "3.0 MB" in shown_text(captured)


def test_unload_ext_removes_the_magics_and_frees_the_engines(shell, fake):
    shell.run_line_magic("unload_ext", "llm_magics")
    try:
        assert fake.closed
        assert "llm_list" not in shell.magics_manager.magics["line"]
        assert "llm_chat" not in shell.magics_manager.magics["cell"]
    finally:
        shell.run_line_magic("load_ext", "llm_magics")
    assert "llm_list" in shell.magics_manager.magics["line"]


# -- side by side ----------------------------------------------------------------------------------


@pytest.fixture
def pair(shell):
    left = fake_engine("left", reply=lambda m: "Left says hi")
    right = fake_engine("right", reply=lambda m: "Right **says** <b>hi</b>")
    magics(shell).registry.add(left)
    magics(shell).registry.add(right)
    return left, right


def test_compare_streams_each_model_into_its_column(shell, pair):
    left, right = pair
    result, captured = chat(shell, "Hello", "left --compare right")
    assert result.success
    final = captured.outputs[-1]
    html = final.data["text/html"]
    assert html.index("left") < html.index("Left says hi") < html.index("right") < html.index("Right")
    assert "<strong>says</strong>" in html and "<b>hi</b>" not in html
    assert final.data["text/plain"].count("end of turn") == 2
    assert all(o.update for o in captured.outputs[1:]), "one output, updated in place"
    assert shell.user_ns["_llm_reply"] == {"left": "Left says hi", "right": "Right **says** <b>hi</b>"}
    assert messages(left)[-1]["content"] == "Left says hi"
    assert messages(right)[-1]["content"] == "Right **says** <b>hi</b>"


def test_compare_prepares_every_turn_before_any_generates(shell, pair):
    left, _ = pair
    tight = fake_engine("tight", context_length=10)
    magics(shell).registry.add(tight)
    result, captured = chat(shell, "a message far too long for the tight one", "left --compare tight")
    assert_one_line_error(result, captured, "InvalidOption", "")
    assert messages(left) == [] and messages(tight) == []
    assert left.calls == 0


def test_compare_interrupted_keeps_what_arrived(shell, pair):
    left, right = pair
    right.interrupt_after = 1
    result, captured = chat(shell, "Hello", "left --compare right")
    assert_one_line_error(result, captured, "GenerationInterrupted", "partial reply is kept")
    assert shell.user_ns["_llm_reply"] == {"left": "Left says hi", "right": "Right"}


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ("left --compare left", "InvalidOption", "different models"),
        ("left --compare nosuch", "NotLoaded", "'nosuch'"),
    ],
)
def test_bad_compare_is_one_line_and_changes_nothing(shell, pair, options, error, fragment):
    result, captured = chat(shell, "Hello", options)
    assert_one_line_error(result, captured, error, fragment)
    assert messages(pair[0]) == [] and messages(pair[1]) == []


@pytest.mark.parametrize("magic", ["llm_chat", "llm_complete"])
def test_a_lone_surrogate_in_a_cell_is_one_line(shell, fake, magic):
    shell.user_ns["test_bad"] = "bad \ud800 text"
    result, captured = run(shell, f"%%{magic}\nSay {{test_bad}}")
    assert_one_line_error(result, captured, "InvalidOption", "lone surrogate (U+D800")
    assert messages(fake) == [] and fake.calls == 0
