"""Conversations and their files (`%llm_history --save/--load`), without any model."""

from __future__ import annotations

import json

import pytest

from llm_magics.conversation import Conversation
from llm_magics.errors import ConversationFileInvalid

pytestmark = pytest.mark.torchfree

MESSAGES = [
    {"role": "user", "content": "Bonjour <b>!</b>\n\n**bold**"},
    {"role": "assistant", "content": "Salut 🙂"},
]


@pytest.mark.parametrize("name", ["chat.json", "chat.md"])
def test_a_saved_conversation_loads_back_unchanged(tmp_path, name):
    saved = Conversation(MESSAGES, system="Be brief.").save(tmp_path / name, model="smol")
    loaded = Conversation.load(saved)
    assert loaded.messages == [{"role": "system", "content": "Be brief."}, *MESSAGES]
    assert loaded.system == "Be brief."


def test_json_file_names_its_format_and_model(tmp_path):
    document = json.loads(Conversation(MESSAGES).save(tmp_path / "c.json", model="smol").read_text())
    assert (document["format"], document["model"], document["messages"]) == (
        "llm_magics.conversation",
        "smol",
        MESSAGES,
    )


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps([{"role": "wizard", "content": "x"}]), json.dumps({"messages": 3})],
)
def test_a_file_that_is_not_a_conversation_is_refused(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConversationFileInvalid, match="bad.json"):
        Conversation.load(path)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConversationFileInvalid, match="No such file"):
        Conversation.load(tmp_path / "nowhere.json")
