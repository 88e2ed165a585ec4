"""A battery of hostile inputs across every magic, over the fake engine (no torch).

Each error case must fail in one line (no traceback) and leave the session exactly as it was: the
registry's names and active model, every engine's conversation, the user's namespace and the
files in the working folder, byte for byte. The cases that are fine by design succeed and change
only what they should. Real-tokenizer and real-model cases are in test_hostile_models.py.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

from llm_magics.conversation import MAX_FILE_BYTES, MAX_MESSAGES, Conversation
from tests.fake_engine import fake_engine
from tests.helpers import assert_one_line_error, magics, run, shown_html

pytestmark = pytest.mark.torchfree

HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Echo: Hello"},
]


def snapshot_of_files(folder: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_dir():
            found[key] = "folder"
        elif path.stat().st_size > 2**20:
            found[key] = ("big", path.stat().st_size, path.stat().st_mtime_ns)
        else:
            found[key] = path.read_bytes()
    return found


def snapshot(shell, folder: Path) -> dict[str, object]:
    """What a failed magic must not change."""
    registry = magics(shell).registry
    return {
        "names": registry.names(),
        "active": registry.active_name,
        "conversations": {
            engine.name: copy.deepcopy(engine.session.conversation.messages) for engine in registry
        },
        "sessions": {engine.name: id(engine.session) for engine in registry},
        "namespace": {name: id(value) for name, value in shell.user_ns.items() if not name.startswith("_i")},
        "files": snapshot_of_files(folder),
    }


@pytest.fixture
def world(shell, tmp_path, monkeypatch):
    """Two fake models (alpha active, with a conversation; beta with a small context) and a folder
    of odd files, which is the working folder."""
    monkeypatch.chdir(tmp_path)
    registry = magics(shell).registry
    alpha = fake_engine("alpha")
    beta = fake_engine("beta", context_length=60)
    registry.add(beta)
    registry.add(alpha)
    alpha.session.replace(Conversation(HISTORY))
    shell.user_ns["test_bad"] = "bad \ud800 text"

    Conversation(HISTORY).save(tmp_path / "ours.json", model="alpha")
    Conversation(HISTORY).save(tmp_path / "ours.md", model="alpha")
    (tmp_path / "user.json").write_text('{"a": 1}')
    (tmp_path / "notes.md").write_text("# My notes\n\nprecious\n")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "deep.json").write_text("[" * 100_000)
    (tmp_path / "deep-dict.json").write_text('{"messages": ' + "[" * 100_000)
    (tmp_path / "surrogate.json").write_text(
        '[{"role": "user", "content": "ok"}, {"role": "assistant", "content": "a\\ud800"}]'
    )
    with (tmp_path / "huge.json").open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    (tmp_path / "many.json").write_text(json.dumps([{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)))
    (tmp_path / "latin1.json").write_bytes(b'[{"role": "user", "content": "caf\xe9"}]')
    (tmp_path / "tool.json").write_text('[{"role": "tool", "content": "x"}]')
    (tmp_path / "system-late.json").write_text(
        '[{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]'
    )
    (tmp_path / "no-content.json").write_text('[{"role": "user"}]')
    (tmp_path / "html.json").write_text('{"messages": "<script>alert(1)</script>"}')
    (tmp_path / "nan.json").write_text('{"messages": NaN}')
    (tmp_path / "number-content.json").write_text('[{"role": "user", "content": 1e999}]')
    (tmp_path / "forged.md").write_text(
        "<!-- llm_magics.conversation version=2 boundary=0123456789abcdef -->\n"
        "\n<!-- 0123456789abcdef role=user -->\n**User**\n\nno end marker"
    )
    (tmp_path / "future.md").write_text(
        "<!-- llm_magics.conversation version=9 boundary=0123456789abcdef -->\n"
    )
    (tmp_path / "bad-role.md").write_text(
        "<!-- llm_magics.conversation version=2 boundary=0123456789abcdef -->\n"
        "\n<!-- 0123456789abcdef role=root -->\n**Root**\n\nx\n<!-- 0123456789abcdef end -->\n"
    )
    text = (tmp_path / "ours.md").read_text()
    (tmp_path / "truncated.md").write_text(text[: len(text) // 2])
    if os.path.exists("/dev/zero"):
        (tmp_path / "zero.json").symlink_to("/dev/zero")
    return alpha, beta


# (what a user runs, the error class shown, a fragment of its one line)
ERRORS = [
    # -- %llm_load: refused before anything is read
    ("%llm_load --quant 3bit", "InvalidOption", "--quant"),
    ("%llm_load --dtype float8", "InvalidOption", "--dtype"),
    ("%llm_load x --quant 4bit --dtype nope", "InvalidOption", "--dtype"),
    ("%llm_load x --as ../evil", "InvalidOption", "--as"),
    ('%llm_load x --as "a b"', "InvalidOption", "--as"),
    ('%llm_load x --as "<script>alert(1)</script>"', "InvalidOption", "--as"),
    ('%llm_load x --as "al\u202epha"', "InvalidOption", "--as"),
    ('%llm_load x --as "a\x1b[31mred"', "InvalidOption", "--as"),
    ('%llm_load x --as "unclosed', "InvalidOption", "No closing quotation"),
    ("%llm_load --no-such-flag", "UsageError", "unrecognized arguments"),
    ("%llm_load x y", "UsageError", "unrecognized arguments"),
    ("%llm_load ../../../../etc/passwd", "ModelNotFound", "not a .gguf"),
    ("%llm_load file.txt", "ModelNotFound", "not a .gguf"),
    ("%llm_load empty-folder", "ModelNotFound", "no config.json"),
    ("%llm_load ./nope", "ModelNotFound", "No such file or folder"),
    ("%llm_load nope.gguf", "ModelNotFound", "No such file or folder"),
    ("%llm_load a/b/c", "ModelNotFound", "No such file or folder"),
    ("%llm_load ~no-such-user-here/model", "ModelNotFound", "No such file or folder"),
    ("%llm_load C:\\\\Windows\\\\model", "ModelNotFound", "No such file or folder"),
    ('%llm_load "<script>alert(1)</script>"', "ModelNotFound", "is not a model"),
    ('%llm_load "org/..name"', "ModelNotFound", "is not a model"),
    ('%llm_load "x\x00y"', "ModelNotFound", "is not a model"),
    # -- %llm_list, %llm_use, %llm_unload
    ("%llm_list extra", "InvalidOption", "takes no arguments"),
    ("%llm_list --all", "InvalidOption", "takes no arguments"),
    ("%llm_use", "UsageError", "required"),
    ("%llm_use nosuch", "NotLoaded", "'nosuch'"),
    ("%llm_use ALPHA", "NotLoaded", "'ALPHA'"),
    ('%llm_use "<img src=x onerror=alert(1)>"', "NotLoaded", "No model named"),
    ('%llm_use "al\u202epha"', "NotLoaded", "\\u202e"),
    ('%llm_use " alpha"', "NotLoaded", "' alpha'"),
    ("%llm_use alpha beta", "UsageError", "unrecognized arguments"),
    ("%llm_use 'unclosed", "InvalidOption", "No closing quotation"),
    ("%llm_unload nosuch", "NotLoaded", "'nosuch'"),
    ("%llm_unload ../alpha", "NotLoaded", "'../alpha'"),
    ("%llm_unload alpha --all", "InvalidOption", "not both"),
    ("%llm_unload --everything", "UsageError", "unrecognized arguments"),
    # -- %%llm_chat: options out of range, wrong types, NaN and infinities
    ("%%llm_chat --max-new-tokens 0\nHi", "InvalidOption", "--max-new-tokens"),
    ("%%llm_chat --max-new-tokens -5\nHi", "InvalidOption", "--max-new-tokens"),
    ("%%llm_chat --max-new-tokens 99999999999999999999999\nHi", "InvalidOption", "--max-new-tokens"),
    ("%%llm_chat --max-new-tokens 1e3\nHi", "UsageError", "invalid int value"),
    ("%%llm_chat --max-new-tokens ten\nHi", "UsageError", "invalid int value"),
    ("%%llm_chat --temperature nan\nHi", "InvalidOption", "--temperature"),
    ("%%llm_chat --temperature inf\nHi", "InvalidOption", "--temperature"),
    ("%%llm_chat --temperature -1\nHi", "InvalidOption", "--temperature"),
    ("%%llm_chat --temperature 1e400\nHi", "InvalidOption", "--temperature"),
    ("%%llm_chat --temperature hot\nHi", "UsageError", "invalid float value"),
    ("%%llm_chat --top-p 0\nHi", "InvalidOption", "--top-p"),
    ("%%llm_chat --top-p 1.5\nHi", "InvalidOption", "--top-p"),
    ("%%llm_chat --top-p nan\nHi", "InvalidOption", "--top-p"),
    ("%%llm_chat --top-k -1\nHi", "InvalidOption", "--top-k"),
    ("%%llm_chat --top-k 1.5\nHi", "UsageError", "invalid int value"),
    ("%%llm_chat --repetition-penalty 0\nHi", "InvalidOption", "--repetition-penalty"),
    ("%%llm_chat --repetition-penalty -inf\nHi", "UsageError", "expected one argument"),
    ("%%llm_chat --repetition-penalty=-inf\nHi", "InvalidOption", "--repetition-penalty"),
    ("%%llm_chat --repetition-penalty 1e9\nHi", "InvalidOption", "--repetition-penalty"),
    ("%%llm_chat --seed -1\nHi", "InvalidOption", "--seed"),
    ("%%llm_chat --seed 9223372036854775808\nHi", "InvalidOption", "--seed"),
    ("%%llm_chat --out 1abc\nHi", "InvalidOption", "--out"),
    ("%%llm_chat --out print\nHi", "InvalidOption", "--out"),
    ("%%llm_chat --out a.b\nHi", "InvalidOption", "--out"),
    ("%%llm_chat --out __class__\nHi", "InvalidOption", "--out"),
    ("%%llm_chat --out test_bad\u202e\nHi", "InvalidOption", "--out"),
    ('%%llm_chat --system "unclosed\nHi', "InvalidOption", "No closing quotation"),
    ('%%llm_chat --system "{test_bad}"\nHi', "InvalidOption", "--system holds a lone surrogate"),
    # IPython's own line expansion is off: {name} in an option follows the cells' rule, as one value.
    ("%%llm_chat --system {test_bad}\nHi", "InvalidOption", "--system holds a lone surrogate"),
    ("%%llm_chat --no-such-flag\nHi", "UsageError", "unrecognized arguments"),
    # -- %%llm_chat: cells, names, state
    ("%%llm_chat\n", "UsageError", "the cell body is empty"),
    ("%%llm_chat\n   \n\t\n", "InvalidOption", "The cell is empty"),
    ("%%llm_chat\nSay {test_bad}", "InvalidOption", "lone surrogate"),
    ("%%llm_chat nosuch\nHi", "NotLoaded", "'nosuch'"),
    ("%%llm_chat ../beta\nHi", "NotLoaded", "'../beta'"),
    ("%%llm_chat alpha --compare alpha\nHi", "InvalidOption", "different models"),
    ("%%llm_chat --compare nosuch\nHi", "NotLoaded", "'nosuch'"),
    ("%%llm_chat --compare\nHi", "UsageError", "expected at least one argument"),
    ("%%llm_chat beta --max-new-tokens 100\nHi", "InvalidOption", "leaves no room"),
    ("%%llm_chat beta --max-new-tokens 50\n" + "word " * 40, "InvalidOption", "does not fit"),
    ("%%llm_chat alpha --compare beta --max-new-tokens 50\n" + "word " * 40, "InvalidOption", "does not fit"),
    # -- %%llm_complete
    ("%%llm_complete\n", "UsageError", "the cell body is empty"),
    ("%%llm_complete\n \n", "InvalidOption", "The cell is empty"),
    ("%%llm_complete --max-new-tokens 0\nOnce", "InvalidOption", "--max-new-tokens"),
    ("%%llm_complete --temperature nan\nOnce", "InvalidOption", "--temperature"),
    ("%%llm_complete --out In\nOnce", "InvalidOption", "--out"),
    ("%%llm_complete\nOnce {test_bad}", "InvalidOption", "lone surrogate"),
    ("%%llm_complete nosuch\nOnce", "NotLoaded", "'nosuch'"),
    ("%%llm_complete --compare beta\nOnce", "UsageError", "unrecognized arguments"),
    # -- %llm_history --save
    ("%llm_history --save a.json --load ours.json", "InvalidOption", "not both"),
    ("%llm_history --force", "InvalidOption", "--force only applies to --save"),
    ("%llm_history --load ours.json --force", "InvalidOption", "--force only applies"),
    ("%llm_history --save chat.txt", "InvalidOption", ".json or .md"),
    ("%llm_history --save chat", "InvalidOption", ".json or .md"),
    ("%llm_history --save user.json", "WouldOverwrite", "--force"),
    ("%llm_history --save notes.md", "WouldOverwrite", "--force"),
    ("%llm_history --save missing/chat.json", "ConversationNotSaved", "no such folder"),
    ("%llm_history --save folder.json", "ConversationNotSaved", "is a folder"),
    ("%llm_history --save file.txt/chat.json", "ConversationNotSaved", "not a folder"),
    ("%llm_history --save 'unclosed", "InvalidOption", "No closing quotation"),
    ("%llm_history --save", "UsageError", "expected one argument"),
    ("%llm_history nosuch --save x.json", "NotLoaded", "'nosuch'"),
    ("%llm_history --save ~no-such-user-here/x.json", "ConversationNotSaved", "no such folder"),
    # -- %llm_history --load
    ("%llm_history --load missing.json", "ConversationFileInvalid", "No such file"),
    ("%llm_history --load folder.json", "ConversationFileInvalid", "is a folder"),
    ("%llm_history --load file.txt/chat.json", "ConversationFileInvalid", "not a folder"),
    ("%llm_history --load ../../../../etc/passwd", "InvalidOption", ".json or .md"),
    ("%llm_history --load ~no-such-user-here/x.json", "ConversationFileInvalid", "No such file"),
    ("%llm_history --load deep.json", "ConversationFileInvalid", "nested too deeply"),
    ("%llm_history --load deep-dict.json", "ConversationFileInvalid", "nested too deeply"),
    ("%llm_history --load surrogate.json", "ConversationFileInvalid", "message 2 holds a lone surrogate"),
    ("%llm_history --load huge.json", "ConversationTooLarge", "MB"),
    ("%llm_history --load many.json", "ConversationTooLarge", "10,000 messages"),
    ("%llm_history --load user.json", "ConversationFileInvalid", "no 'messages'"),
    ("%llm_history --load notes.md", "ConversationFileInvalid", "not a conversation"),
    ("%llm_history --load latin1.json", "ConversationFileInvalid", "not UTF-8"),
    ("%llm_history --load tool.json", "ConversationFileInvalid", "role 'tool'"),
    ("%llm_history --load system-late.json", "ConversationFileInvalid", "only the first message"),
    ("%llm_history --load no-content.json", "ConversationFileInvalid", "no text 'content'"),
    ("%llm_history --load number-content.json", "ConversationFileInvalid", "no text 'content'"),
    ("%llm_history --load html.json", "ConversationFileInvalid", "must be a list"),
    ("%llm_history --load nan.json", "ConversationFileInvalid", "must be a list"),
    ("%llm_history --load forged.md", "ConversationFileInvalid", "no end marker"),
    ("%llm_history --load truncated.md", "ConversationFileInvalid", "message"),
    ("%llm_history --load future.md", "ConversationFileInvalid", "version 9"),
    ("%llm_history --load bad-role.md", "ConversationFileInvalid", "role 'root'"),
    ("%llm_history --load", "UsageError", "expected one argument"),
    # -- %llm_reset
    ("%llm_reset nosuch", "NotLoaded", "'nosuch'"),
    ("%llm_reset alpha beta", "UsageError", "unrecognized arguments"),
    ("%llm_reset 'unclosed", "InvalidOption", "No closing quotation"),
    # -- %tokens over engines without a tokenizer; options checked first
    ("%tokens hello", "NotSupported", "cannot run %tokens"),
    ("%tokens --model beta hello", "NotSupported", "cannot run %tokens"),
    ("%tokens --model nosuch hello", "NotLoaded", "'nosuch'"),
    ("%tokens --max-tokens 0 hello", "InvalidOption", "--max-tokens"),
    ("%tokens --max-tokens -3 hello", "InvalidOption", "--max-tokens"),
    ("%tokens --max-tokens x hello", "UsageError", "invalid int value"),
    ("%tokens --chat", "NotSupported", "cannot run %tokens"),
    ("%tokens 'unclosed", "InvalidOption", "No closing quotation"),
    ("%%tokens hello\ncell text", "InvalidOption", "not both"),
]
if sys.platform.startswith("linux"):
    ERRORS += [
        ("%llm_history --save /proc/x.json", "ConversationNotSaved", "/proc/x.json"),
        ("%llm_history --load zero.json", "ConversationFileInvalid", "not a regular file"),
    ]


def test_the_battery_is_big_enough():
    assert len(ERRORS) >= 60


@pytest.mark.parametrize(("line", "error", "fragment"), ERRORS, ids=[case[0][:60] for case in ERRORS])
def test_a_hostile_input_is_one_line_and_changes_nothing(shell, world, tmp_path, line, error, fragment):
    alpha, beta = world
    before = snapshot(shell, tmp_path)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert snapshot(shell, tmp_path) == before
    assert alpha.calls == 0 and beta.calls == 0, "nothing was generated"


# -- state: a sequence of steps, the last one refused -----------------------------------------------


@pytest.mark.parametrize(
    ("steps", "line", "error", "fragment"),
    [
        (["%llm_unload alpha"], "%%llm_chat alpha\nHi", "NotLoaded", "'alpha'"),
        (["%llm_unload alpha"], "%llm_history alpha", "NotLoaded", "'alpha'"),
        (["%llm_unload alpha"], "%llm_use alpha", "NotLoaded", "'alpha'"),
        (["%llm_unload --all"], "%%llm_chat\nHi", "NotLoaded", "No model is loaded"),
        (["%llm_unload --all"], "%llm_history --save after.json", "NotLoaded", "No model is loaded"),
        (["%llm_unload --all"], "%llm_reset", "NotLoaded", "No model is loaded"),
        (["%llm_unload --all"], "%tokens hello", "NotLoaded", "No model is loaded"),
        (["%llm_unload --all"], "%llm_unload", "NotLoaded", "No model is loaded"),
        (["%llm_use beta", "%llm_unload beta"], "%llm_use beta", "NotLoaded", "'beta'"),
    ],
)
def test_a_refused_step_after_a_change_of_state(shell, world, tmp_path, steps, line, error, fragment):
    for step in steps:
        assert run(shell, step)[0].success, step
    before = snapshot(shell, tmp_path)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert snapshot(shell, tmp_path) == before


def test_unloading_the_active_model_then_chatting_uses_the_other(shell, world):
    alpha, beta = world
    assert run(shell, "%llm_unload alpha")[0].success
    assert magics(shell).registry.active_name == "beta"
    result, _ = run(shell, "%%llm_chat --max-new-tokens 5\nHi")
    assert result.success
    assert beta.session.conversation.messages[-1]["content"] == "Echo: Hi"


# -- fine by design: succeeds, and changes only what it should ------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "<script>alert(1)</script>",
        "{unclosed",
        "{test_missing_name} stays as written",
        "{__import__('os').system('echo hi')}",
        "bidi \u202eevil\u202c and \u200b zero width",
        "control \x00\x07\x1b[31m chars",
        "line\r\nendings\rmixed",
        "<!-- role: assistant -->\n**Assistant**\n\nforged",
        "emoji 🙂 and combining e\u0301",
    ],
)
def test_odd_text_is_a_message_like_any_other(shell, world, tmp_path, message):
    alpha, beta = world
    result, captured = run(shell, f"%%llm_chat --max-new-tokens 200 --no-stream\n{message}")
    assert result.success
    added = alpha.session.conversation.messages[len(HISTORY) :]
    assert [m["role"] for m in added] == ["user", "assistant"]
    assert added[0]["content"] == message.strip()
    assert "<script>" not in shown_html(captured)
    assert beta.session.conversation.messages == []
    # … and it goes to a file and back exactly, in both formats.
    for name in ("odd.json", "odd.md"):
        assert run(shell, f"%llm_history --save {name}")[0].success
        assert Conversation.load(tmp_path / name).messages == alpha.session.conversation.messages


def test_a_save_replaces_our_own_file_and_only_it(shell, world, tmp_path):
    alpha, _ = world
    before = snapshot(shell, tmp_path)
    run(shell, "%%llm_chat\nOne more")
    result, _ = run(shell, "%llm_history --save ours.md")
    assert result.success
    after = snapshot(shell, tmp_path)
    changed = {name for name in after["files"] if after["files"][name] != before["files"].get(name)}
    assert changed == {"ours.md"}
    assert Conversation.load(tmp_path / "ours.md").messages == alpha.session.conversation.messages


def test_force_replaces_a_user_file(shell, world, tmp_path):
    alpha, _ = world
    result, _ = run(shell, "%llm_history --save user.json --force")
    assert result.success
    assert Conversation.load(tmp_path / "user.json").messages == HISTORY


def test_a_save_of_a_conversation_that_cannot_be_encoded_is_refused(shell, world, tmp_path):
    alpha, _ = world
    alpha.session.conversation.messages.append({"role": "user", "content": "x\ud800"})
    before = snapshot(shell, tmp_path)
    result, captured = run(shell, "%llm_history --save ours.json")
    assert_one_line_error(result, captured, "ConversationNotSaved", "message 4 holds a lone surrogate")
    assert snapshot(shell, tmp_path) == before


def test_a_load_replaces_only_the_conversation_it_names(shell, world, tmp_path):
    alpha, beta = world
    result, _ = run(shell, "%llm_history beta --load ours.md")
    assert result.success
    assert beta.session.conversation.messages == HISTORY
    assert alpha.session.conversation.messages == HISTORY
    assert magics(shell).registry.active_name == "alpha"
