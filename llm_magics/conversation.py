"""A conversation's messages, and the files `%llm_history --save/--load` write and read.

Engine-independent: every chat engine keeps its conversation as one of these (plus whatever it
keeps between turns, in its own session object), so saving and loading work the same everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import (
    ConversationFileInvalid,
    ConversationNotSaved,
    ConversationTooLarge,
    InvalidOption,
    WouldOverwrite,
)

#: One message: {"role": "system" | "user" | "assistant", "content": text}.
Message = dict[str, str]

ROLES = ("system", "user", "assistant")

#: `--load` reads no file larger than this, and takes no more messages than this: a long
#: conversation is a few hundred messages and well under a megabyte.
MAX_FILE_BYTES = 32 * 2**20
MAX_MESSAGES = 10_000

#: The "format" of the JSON files `--save` writes.
JSON_FORMAT = "llm_magics.conversation"

#: The first line of the Markdown files `--save` writes. The format, version 2::
#:
#:     <!-- llm_magics.conversation version=2 boundary=5f0c1e2d3b4a6978 -->
#:     # Conversation with smollm2-135m
#:
#:     <!-- 5f0c1e2d3b4a6978 role=user -->
#:     **User**
#:
#:     Hello
#:     <!-- 5f0c1e2d3b4a6978 end -->
#:
#: The boundary is random per file and appears in no message, so no message can forge a marker;
#: a message is exactly the text between its heading's blank line and the newline before its end
#: marker, with its own line endings (`\r\n`, `\r`) kept. The comments are invisible when the
#: Markdown is rendered.
MARKDOWN_MAGIC = "llm_magics.conversation"

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
            "format": JSON_FORMAT,
            "version": 1,
            "model": model,
            "messages": self.messages,
        }
        return json.dumps(document, indent=2, ensure_ascii=False)

    def to_markdown(self, model: str | None = None) -> str:
        """Readable Markdown that loads back to exactly these messages (the format: `MARKDOWN_MAGIC`)."""
        title = f"# Conversation with {_one_line(model)}\n" if model else ""
        texts = [title] + [m["content"] for m in self.messages]
        boundary = secrets.token_hex(8)
        while any(boundary in text for text in texts):  # 1 in 2**64 a message; loops ~never
            boundary = secrets.token_hex(8)
        parts = [f"<!-- {MARKDOWN_MAGIC} version=2 boundary={boundary} -->\n{title}"]
        for m in self.messages:
            parts.append(
                f"\n<!-- {boundary} role={m['role']} -->\n**{m['role'].capitalize()}**\n\n"
                f"{m['content']}\n<!-- {boundary} end -->\n"
            )
        return "".join(parts)

    def save(self, path: str | Path, model: str | None = None, *, force: bool = False) -> Path:
        """Write JSON (`.json`) or Markdown (`.md`, `.markdown`), chosen by the extension.

        The file is written whole or not at all (a temporary file in the same folder, renamed over
        it), and only replaces a file this package wrote, unless `force`.
        """
        path = _user_path(path)
        kind = _file_kind(path)
        for number, message in enumerate(self.messages, 1):
            where = lone_surrogate(message["content"])
            if where is not None:
                raise ConversationNotSaved(
                    f"Nothing saved: message {number} holds a lone surrogate ({where}), which no file can "
                    "encode; replace it (e.g. %llm_reset, or load a corrected file)."
                )
        text = self.to_json(model) if kind == "json" else self.to_markdown(model)
        try:
            if not force:
                _check_ours(path, kind)
            _write_atomically(path, text.encode("utf-8"))
        except OSError as exc:
            raise ConversationNotSaved(f"Nothing saved to {path}: {_os_reason(exc)}.") from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        """Read a file written by `save` (or a plain JSON list of role/content messages).

        At most `MAX_FILE_BYTES` are read and `MAX_MESSAGES` messages taken, and every message is
        checked, so a bad file is refused here rather than failing every later turn.
        """
        path = _user_path(path)
        kind = _file_kind(path)
        try:
            data = _read_bounded(path)
        except FileNotFoundError:
            raise ConversationFileInvalid(f"No such file: {path}.") from None
        except OSError as exc:
            raise ConversationFileInvalid(f"Cannot read {path}: {_os_reason(exc)}.") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversationFileInvalid(
                f"{path} is not a conversation: it is not UTF-8 text (byte {exc.start})."
            ) from None
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
    except RecursionError:
        # json's decoder recurses once per nested list or object.
        raise ConversationFileInvalid(
            f"{path} is not a conversation: its JSON is nested too deeply to read."
        ) from None
    if isinstance(document, dict):
        if "messages" not in document:
            raise ConversationFileInvalid(f"{path} is not a conversation: it has no 'messages'.")
        return document["messages"]
    return document


_MARKDOWN_HEADER = re.compile(
    rf"<!-- {re.escape(MARKDOWN_MAGIC)} version=(\d+) boundary=([0-9a-f]{{16,64}}) -->\n"
)
_MARKDOWN_V1_BLOCK = re.compile(r"^<!-- role: (\w+) -->\n\*\*\w+\*\*\n\n", re.MULTILINE)


def _parse_markdown(text: str, path: Path) -> list[Message]:
    header = _MARKDOWN_HEADER.match(text)
    if header is None and text.startswith(f"<!-- {MARKDOWN_MAGIC} "):
        raise ConversationFileInvalid(
            f"{path}: its first line (the header of a --save) is damaged; were its line endings changed?"
        )
    if header is None:
        return _parse_markdown_v1(text, path)
    if header.group(1) != "2":
        raise ConversationFileInvalid(
            f"{path} is a conversation in Markdown version {header.group(1)}, which this llm_magics cannot "
            "read; upgrade llm_magics."
        )
    boundary = header.group(2)
    opening = re.compile(rf"\n<!-- {boundary} role=(\w+) -->\n\*\*(\w+)\*\*\n\n")
    end_marker = f"\n<!-- {boundary} end -->\n"
    first = text.find(f"\n<!-- {boundary} ", header.end() - 1)
    position = len(text) if first < 0 else first
    messages: list[Message] = []
    while position < len(text):
        number = len(messages) + 1
        if number > MAX_MESSAGES:
            raise _too_many(path)
        found = opening.match(text, position)
        if found is None:
            raise ConversationFileInvalid(
                f"{path}: message {number} has no marker of this file where expected (was it edited?)."
            )
        close = text.find(end_marker, found.end())
        if close < 0:
            raise ConversationFileInvalid(f"{path}: message {number} has no end marker (was it cut short?).")
        # The content's own trailing newline, if any, sits before the newline of the end marker.
        messages.append({"role": found.group(1), "content": text[found.end() : close]})
        position = close + len(end_marker)
    return messages


def _parse_markdown_v1(text: str, path: Path) -> list[Message]:
    """The first Markdown format (no header): its markers could be forged, so it is only read."""
    parts = _MARKDOWN_V1_BLOCK.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ConversationFileInvalid(f"{path} is not a conversation saved by %llm_history --save.")
    if len(parts) // 2 > MAX_MESSAGES:
        raise _too_many(path)
    messages = []
    for role, body in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": role, "content": body[:-2] if body.endswith("\n\n") else body.rstrip("\n")})
    return messages


def _too_many(path: Path) -> ConversationTooLarge:
    return ConversationTooLarge(
        f"{path} holds more than {MAX_MESSAGES:,} messages, more than --load takes "
        "(llm_magics.conversation.MAX_MESSAGES)."
    )


def _validated(messages: Any, path: Path) -> list[Message]:
    def invalid(why: str) -> ConversationFileInvalid:
        return ConversationFileInvalid(f"{path} is not a conversation: {why}.")

    if not isinstance(messages, list):
        raise invalid("'messages' must be a list")
    if len(messages) > MAX_MESSAGES:
        raise _too_many(path)
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise invalid(f"message {index + 1} has no text 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"message {index + 1} has role {role!r}, not one of {', '.join(ROLES)}")
        if role == "system" and index != 0:
            raise invalid("only the first message may be a system message")
        where = lone_surrogate(message["content"])
        if where is not None:
            raise invalid(f"message {index + 1} holds a lone surrogate ({where}), which is not valid Unicode")
        clean.append({"role": role, "content": message["content"]})
    return clean


# --------------------------------------------------------------------------- the file system


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing what is not a regular file or is larger than `MAX_FILE_BYTES`
    (read with a bound too, for files that grow while read)."""
    with path.open("rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConversationFileInvalid(f"{path} is not a regular file; --load reads conversation files.")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_large(path, info.st_size)
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(path, len(data))
    return data


def _too_large(path: Path, size: int) -> ConversationTooLarge:
    return ConversationTooLarge(
        f"{path} is {size / 2**20:.1f} MB; --load reads conversation files up to "
        f"{MAX_FILE_BYTES / 2**20:.0f} MB (llm_magics.conversation.MAX_FILE_BYTES)."
    )


_OURS_JSON = re.compile(r'\A\s*\{\s*"format"\s*:\s*"' + re.escape(JSON_FORMAT) + '"')
_OURS_MARKDOWN = re.compile(
    rf"\A(<!-- {re.escape(MARKDOWN_MAGIC)} version=|<!-- role: (system|user|assistant) -->\n\*\*)"
)


def _check_ours(path: Path, kind: str) -> None:
    """Raise `WouldOverwrite` when `path` exists and is not a file this package wrote.

    Ours are recognised by their first bytes: JSON opening with our "format", Markdown opening
    with our header (or the first format's marker).
    """
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return  # a folder or device: writing fails below with its own reason
        head = file.read(4096).decode("utf-8", errors="replace")
    if (_OURS_JSON if kind == "json" else _OURS_MARKDOWN).match(head):
        return
    raise WouldOverwrite(
        f"{path} exists and was not written by %llm_history --save; nothing saved. "
        "Pick another name, or add --force to replace it."
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: readers (and a crash half
    way) see the old file or the new one, never a partial one. A link is written through."""
    if path.is_symlink():
        path = path.resolve()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb", closefd=True) as file:
            view = memoryview(data)
            while view:
                view = view[os.write(file.fileno(), view) :]
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _os_reason(exc: OSError) -> str:
    """Why a file operation failed, said by the error's type (its message is the system's)."""
    if isinstance(exc, FileNotFoundError):
        return "no such folder or file"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder; give a file name"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return "no permission"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _user_path(path: str | Path) -> Path:
    # os.path.expanduser leaves "~nosuchuser/x" as written; Path.expanduser raises RuntimeError.
    return Path(os.path.expanduser(path))


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["ROLES", "Conversation", "Message", "with_system"]
