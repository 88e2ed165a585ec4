"""A conversation's messages, and the files `%llm_history --save/--load` write and read.

Engine-independent: every chat engine keeps its conversation as one of these (plus whatever it
keeps between turns, in its own session object), so saving and loading work the same everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConversationFileInvalid, InvalidOption

#: One message: {"role": "system" | "user" | "assistant", "content": text}.
Message = dict[str, str]

ROLES = ("system", "user", "assistant")

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """Where `text` holds a lone surrogate (not valid Unicode: no tokenizer, file or server takes
    it), as "U+D800 at 12"; None when the text is valid."""
    found = _SURROGATE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X} at {found.start()}"


def check_text(text: str, what: str = "The text") -> None:
    """Raise `InvalidOption` for text that is not valid Unicode, in one line."""
    where = lone_surrogate(text)
    if where is not None:
        raise InvalidOption(
            f"{what} holds a lone surrogate ({where}), which is not valid Unicode; no tokenizer can encode it."
        )


class Conversation:
    """One chat's `messages` (role/content dicts, the system message first if any)."""

    def __init__(self, messages: Sequence[Message] = (), system: str | None = None) -> None:
        self.messages: list[Message] = [dict(m) for m in messages]
        if system:
            self.messages = with_system(self.messages, system)

    def __repr__(self) -> str:
        return f"<Conversation: {len(self.messages)} messages>"

    @property
    def system(self) -> str | None:
        return self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else None

    # -- files ---------------------------------------------------------------------------------

    def to_json(self, model: str | None = None) -> str:
        document = {
            "format": "llm_magics.conversation",
            "version": 1,
            "model": model,
            "messages": self.messages,
        }
        return json.dumps(document, indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        # The HTML comments are invisible in any Markdown viewer and make the file loadable again.
        blocks = [
            f"<!-- role: {m['role']} -->\n**{m['role'].capitalize()}**\n\n{m['content']}\n\n"
            for m in self.messages
        ]
        return "".join(blocks)

    def save(self, path: str | Path, model: str | None = None) -> Path:
        """Write JSON (`.json`) or Markdown (`.md`, `.markdown`), chosen by the extension."""
        path = Path(path).expanduser()
        text = self.to_json(model) if _file_kind(path) == "json" else self.to_markdown()
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        """Read a file written by `save` (or a plain JSON list of role/content messages)."""
        path = Path(path).expanduser()
        kind = _file_kind(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConversationFileInvalid(f"No such file: {path}.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConversationFileInvalid(f"Cannot read {path}: {exc}.") from None
        messages = _parse_json(text, path) if kind == "json" else _parse_markdown(text, path)
        return cls(_validated(messages, path))


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    """`messages` with its system message replaced (or removed when `system` is empty)."""
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    return ([{"role": "system", "content": system}] if system else []) + list(rest)


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".md", ".markdown"):
        return "markdown"
    raise InvalidOption(f"Use a .json or .md file for a conversation, not {path.name!r}.")


def _parse_json(text: str, path: Path) -> Any:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversationFileInvalid(
            f"{path} is not a conversation: invalid JSON ({exc.msg}, line {exc.lineno})."
        ) from None
    if isinstance(document, dict):
        if "messages" not in document:
            raise ConversationFileInvalid(f"{path} is not a conversation: it has no 'messages'.")
        return document["messages"]
    return document


_MARKDOWN_BLOCK = re.compile(r"^<!-- role: (\w+) -->\n\*\*\w+\*\*\n\n", re.MULTILINE)


def _parse_markdown(text: str, path: Path) -> list[Message]:
    parts = _MARKDOWN_BLOCK.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ConversationFileInvalid(f"{path} is not a conversation saved by %llm_history --save.")
    messages = []
    for role, body in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": role, "content": body[:-2] if body.endswith("\n\n") else body.rstrip("\n")})
    return messages


def _validated(messages: Any, path: Path) -> list[Message]:
    def invalid(why: str) -> ConversationFileInvalid:
        return ConversationFileInvalid(f"{path} is not a conversation: {why}.")

    if not isinstance(messages, list):
        raise invalid("'messages' must be a list")
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise invalid(f"message {index + 1} has no text 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"message {index + 1} has role {role!r}, not one of {', '.join(ROLES)}")
        if role == "system" and index != 0:
            raise invalid("only the first message may be a system message")
        clean.append({"role": role, "content": message["content"]})
    return clean


__all__ = ["ROLES", "Conversation", "Message", "with_system"]
