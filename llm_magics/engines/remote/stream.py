"""What a server's answer needs beyond the HTTP library's timeouts and openai's stream decoder.

- `BoundedTransport`: the library's read timeout restarts at every byte, so a `/v1/models`
  trickled one byte a second, or a stream of `: keep-alive` comments and no tokens, would hold
  the notebook forever. The transport bounds the whole of a plain answer by the read timeout, and
  in a stream of server-sent events the wait between two lines that are not comments.
- `Utf16Halves`: a server may send a character as two UTF-16 halves (JSON's `"\\ud83d"` and
  `"\\ude00"`, even in two chunks). Python keeps them as lone surrogates, which no file can hold
  and no request can send again: the halves are joined, and a half without its partner is
  replaced by U+FFFD and counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

_LINE_END = re.compile(rb"[\r\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _EventLines:
    """Reads a server-sent event stream's bytes as they come, and tells when a line other than a
    comment (`: keep-alive`) or a blank line has ended: what counts as the server saying something."""

    def __init__(self) -> None:
        self.line: str | None = None  # None: nothing on this line yet; else "comment" or "data"

    def ends_data(self, chunk: bytes) -> bool:
        ended = False
        for index, piece in enumerate(_LINE_END.split(chunk)):
            if index:  # a line ended just before this piece
                ended = ended or self.line == "data"
                self.line = None
            if piece and self.line is None:
                self.line = "comment" if piece.startswith(b":") else "data"
        return ended


class _BoundedStream:
    """A response body that raises the library's `ReadTimeout` once `check` says the wait is over."""

    def __init__(self, inner: Any, check: Callable[[bytes], None]) -> None:
        self.inner, self.check = inner, check

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.check(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class BoundedTransport:
    """The HTTP library's transport with the bounds its timeouts lack (see the module docstring).

    `read_seconds` is asked at each request, so a changed `remote_read_timeout` applies at once."""

    def __init__(
        self,
        http: Any,
        read_seconds: Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        **transport: Any,
    ) -> None:
        self.http, self.read_seconds, self.clock = http, read_seconds, clock
        self.inner = http.HTTPTransport(**transport)
        # The client checks that a body is the library's own stream type.
        self.stream_class = type("BoundedStream", (_BoundedStream, http.SyncByteStream), {})

    def handle_request(self, request: Any) -> Any:
        started = self.clock()
        response = self.inner.handle_request(request)
        events = response.headers.get("content-type", "").startswith("text/event-stream")
        response.stream = self.stream_class(response.stream, self._check(request, started, events))
        return response

    def _check(self, request: Any, started: float, events: bool) -> Callable[[bytes], None]:
        lines = _EventLines()
        last = [started]

        def check(chunk: bytes) -> None:
            now, limit = self.clock(), self.read_seconds()
            if events and lines.ends_data(chunk):
                last[0] = now
            elif now - last[0] > limit:
                what = "sent nothing but comments" if events else "had not finished its answer"
                raise self.http.ReadTimeout(f"The server {what} in {limit:g} s.", request=request)

        return check

    def close(self) -> None:
        self.inner.close()


class Utf16Halves:
    """Joins UTF-16 halves across a stream's pieces; `replaced` counts the halves that had no partner."""

    def __init__(self) -> None:
        self.pending = ""
        self.replaced = 0

    def feed(self, piece: str) -> str:
        """The text of `piece` that is whole now (a trailing high half waits for the next piece)."""
        piece, self.pending = self.pending + piece, ""
        if piece and "\ud800" <= piece[-1] <= "\udbff":
            piece, self.pending = piece[:-1], piece[-1]
        return self._whole(piece)

    def flush(self) -> str:
        """What is left at the end of the stream: a high half that never got its partner, replaced."""
        rest, self.pending = self.pending, ""
        return self._whole(rest)

    def _whole(self, text: str) -> str:
        if not _SURROGATE.search(text):
            return text
        # UTF-16 joins each high half with the low one after it; "replace" turns the rest into U+FFFD.
        joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        self.replaced += joined.count("\ufffd") - text.count("\ufffd")
        return joined


class StreamedReply:
    """A chat or completion stream read chunk by chunk: the text so far (UTF-16 halves joined),
    how many pieces it came in, when the first came, why the server ended it, and its usage."""

    def __init__(
        self,
        piece_of: Callable[[Any], str | None],
        on_text: Callable[[str], None] | None,
        on_choice: Callable[[Any], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self.piece_of, self.on_text, self.on_choice, self.clock = piece_of, on_text, on_choice, clock
        self.started = clock()
        self.first_piece_after: float | None = None
        self.text = ""
        self.pieces = 0
        self.finish: str | None = None
        self.usage: Any = None
        self.halves = Utf16Halves()

    def take(self, chunk: Any) -> None:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        # Usage-only chunks have no choices at all.
        for choice in getattr(chunk, "choices", None) or []:
            if self.on_choice is not None:
                self.on_choice(choice)
            self._add(self.halves.feed(self.piece_of(choice) or ""))
            if getattr(choice, "finish_reason", None):
                self.finish = choice.finish_reason

    def end(self) -> None:
        self.text += self.halves.flush()

    def _add(self, piece: str) -> None:
        if not piece:
            return
        if self.first_piece_after is None:
            self.first_piece_after = self.clock() - self.started
        self.text += piece
        self.pieces += 1
        if self.on_text is not None:
            self.on_text(self.text)
