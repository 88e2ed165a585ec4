"""Chat replies on screen: streamed while they are generated, ordinary output once finished.

In a notebook a reply is one `display(..., display_id=True)` output, updated in place at most once
per `interval` seconds however fast tokens come; its last state (the reply rendered as Markdown,
with a footer) is what a saved notebook, nbconvert or a reopened file shows. Everything from the
model is escaped: Markdown is rendered with raw HTML off, so `<script>` shows as text. In terminal
IPython (no HTML front end) the text is printed to stdout as it arrives.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, TextIO

from ..values import FinishReason, Reply, Stats


class ViewState(str, Enum):
    """Where a shown reply is in its life; it picks the accent colour."""

    STREAMING = "streaming"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


STREAMING, FINISHED, INTERRUPTED, FAILED = ViewState

_ACCENT = {STREAMING: "#9aa5ff", FINISHED: "#6b7cff", INTERRUPTED: "#e0a100", FAILED: "#d9534f"}
_FOOTER_STYLE = "font-size:85%;opacity:0.7;margin-top:4px;font-family:system-ui,sans-serif"

_markdown: Any = None


def render_markdown(text: str) -> str:
    """HTML for Markdown `text`; raw HTML in it is escaped, and images become plain links."""
    global _markdown
    if _markdown is None:
        from markdown_it import MarkdownIt  # 30 ms, paid at the first reply rather than at %load_ext

        # Images are off so a reply never makes the page fetch a remote URL; they show as links.
        # Single newlines are line breaks, as in chat front ends: poems and addresses keep their lines.
        _markdown = (
            MarkdownIt("commonmark", {"html": False, "breaks": True})
            .enable(["table", "strikethrough"])
            .disable("image")
        )
    return str(_markdown.render(text))


def footer_text(stats: Stats, finish_reason: FinishReason, model: str | None = None) -> str:
    """ "tiny · 37 prompt tokens (30 reused) · 8 new tokens · first token 0.12 s · 35.1 tok/s · end of turn"."""
    reused = f" ({stats.reused_tokens} reused)" if stats.reused_tokens else ""
    parts = [model] if model else []
    if stats.prompt_tokens is not None:
        parts.append(f"{count(stats.prompt_tokens, 'prompt token')}{reused}")
    parts.append(count(stats.new_tokens, "new token"))
    if stats.time_to_first_token is not None:
        parts.append(f"first token {stats.time_to_first_token:.2f} s")
    if stats.tokens_per_second is not None:
        parts.append(f"{stats.tokens_per_second:.1f} tok/s")
    parts.append(finish_reason.value)
    return " · ".join(parts)


def count(number: int, noun: str) -> str:
    """ "1 new token", "2 new tokens"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


class ReplyView:
    """A chat reply as output: rendered Markdown and a footer in HTML, the raw text in text/plain."""

    def __init__(self, text: str, footer: str = "", state: ViewState = FINISHED) -> None:
        self.text, self.footer, self.state = text, footer, state

    def __repr__(self) -> str:
        return f"<ReplyView {self.state}: {self.text[:40]!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        plain = self.text + (f"\n\n[{self.footer}]" if self.footer else "")
        body = render_markdown(self.text) if self.text else "<p style='opacity:0.6'>…</p>"
        return {"text/plain": plain, "text/html": _frame(body, self.footer, self.state)}


class CompletionView:
    """A raw continuation: the prompt dimmed, then the model's text, both as preformatted text."""

    def __init__(self, prompt: str, text: str, footer: str = "", state: ViewState = FINISHED) -> None:
        self.prompt, self.text, self.footer, self.state = prompt, text, footer, state

    def __repr__(self) -> str:
        return f"<CompletionView {self.state}: {self.text[:40]!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        plain = self.prompt + self.text + (f"\n\n[{self.footer}]" if self.footer else "")
        body = (
            "<div style='white-space:pre-wrap;font-family:monospace'>"
            f"<span style='opacity:0.55'>{html.escape(self.prompt)}</span>{html.escape(self.text)}</div>"
        )
        return {"text/plain": plain, "text/html": _frame(body, self.footer, self.state)}


@dataclass
class Column:
    """One model's reply in a side-by-side comparison."""

    name: str
    text: str = ""
    footer: str = "waiting…"
    state: ViewState = ViewState.STREAMING


class CompareView:
    """`%%llm_chat --compare`: the same message's replies from several models, in columns."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)

    def __repr__(self) -> str:
        return f"<CompareView {[c.name for c in self.columns]}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        plain = "\n\n".join(
            f"── {c.name} ──\n{c.text}" + (f"\n[{c.footer}]" if c.footer else "") for c in self.columns
        )
        cells = []
        for column in self.columns:
            body = render_markdown(column.text) if column.text else "<p style='opacity:0.6'>…</p>"
            title = (
                f"<div style='{_FOOTER_STYLE};font-weight:600;opacity:0.9'>{html.escape(column.name)}</div>"
            )
            cells.append(
                f"<div style='flex:1 1 0;min-width:0'>{title}{_frame(body, column.footer, column.state)}</div>"
            )
        return {
            "text/plain": plain,
            "text/html": "<div class='llm-magics-compare' style='display:flex;gap:16px;align-items:flex-start'>"
            + "".join(cells)
            + "</div>",
        }


class ConversationView:
    """A whole conversation, as `%llm_history` shows it."""

    def __init__(self, messages: Sequence[dict[str, str]], model: str) -> None:
        self.messages, self.model = list(messages), model

    def __repr__(self) -> str:
        return f"<ConversationView {self.model}: {len(self.messages)} messages>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if not self.messages:
            empty = f"No conversation with {self.model!r} yet."
            return {"text/plain": empty, "text/html": f"<p>{html.escape(empty)}</p>"}
        plain = "\n\n".join(f"{m['role'].capitalize()}:\n{m['content']}" for m in self.messages)
        blocks = []
        for message in self.messages:
            role = message["role"]
            style = "opacity:0.75;font-style:italic" if role == "system" else ""
            accent = "#6b7cff" if role == "assistant" else "#999"
            blocks.append(
                f"<div style='border-left:3px solid {accent};padding:2px 0 2px 12px;margin:6px 0'>"
                f"<div style='{_FOOTER_STYLE};margin:0 0 2px 0;text-transform:uppercase;letter-spacing:0.05em'>"
                f"{html.escape(role)}</div><div style='{style}'>{render_markdown(message['content'])}</div></div>"
            )
        title = f"<div style='{_FOOTER_STYLE}'>Conversation with {html.escape(self.model)}</div>"
        return {
            "text/plain": plain,
            "text/html": "<div class='llm-magics-history'>" + title + "".join(blocks) + "</div>",
        }


def _frame(body: str, footer: str, state: ViewState) -> str:
    footer_html = f"<div style='{_FOOTER_STYLE}'>{html.escape(footer)}</div>" if footer else ""
    return (
        f"<div class='llm-magics-reply' style='border-left:3px solid {_ACCENT[state]};padding:2px 0 2px 12px;margin:4px 0'>"
        f"{body}{footer_html}</div>"
    )


ViewFactory = Callable[[str, str, ViewState], Any]


class ReplyStream:
    """Shows a reply while it streams; use it as a context manager so it always ends finished or failed.

    `view(text, footer, state)` builds what is shown. With `rich` (a notebook), one display output
    is created and updated in place, at most once per `interval` seconds of `clock`; updates in
    between are batched into the next one. Otherwise text is printed to `out` as it comes, after
    `prefix`. With `stream=False` nothing is shown until the end.
    """

    def __init__(
        self,
        view: ViewFactory,
        *,
        rich: bool,
        stream: bool = True,
        interval: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
        out: TextIO | None = None,
        prefix: str = "",
        handle: Any = None,
    ) -> None:
        self.view, self.rich, self.stream, self.interval, self.clock = view, rich, stream, interval, clock
        self.out = out
        self.prefix = prefix
        self.text = ""
        self.updates = 0
        self.state: ViewState | None = None
        #: The display output this stream updates; pass one in to continue an earlier stream's output.
        self.handle: Any = handle
        self._last_update: float | None = None
        self._printed = ""

    def __enter__(self) -> ReplyStream:
        if self.stream and self.rich:
            from IPython.display import display

            # The placeholder does not start the throttle: the first token shows the moment it comes.
            placeholder = self.view("", "generating…", STREAMING)
            if self.handle is None:
                self.handle = display(placeholder, display_id=True)
            else:
                self._show(placeholder)
        elif self.stream:
            self._write(self.prefix)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.state is None:
            reason = (
                "stopped"
                if exc is None
                else f"failed: {exc}"
                if isinstance(exc, Exception)
                else "interrupted"
            )
            self.fail(reason)

    def update(self, text: str) -> None:
        """The reply so far (generation calls this for every token)."""
        self.text = text
        if not self.stream:
            return
        if not self.rich:
            self._print_new(text)
            return
        now = self.clock()
        if self._last_update is not None and now - self._last_update < self.interval:
            return
        self._last_update = now
        self._show(self.view(text, "generating…", STREAMING))

    def finish(self, reply: Reply, footer: str) -> None:
        """The final state: the whole reply and its footer, as ordinary output."""
        self.text = reply.text
        self._end(reply.text, footer, INTERRUPTED if reply.interrupted else FINISHED)

    def fail(self, message: str) -> None:
        """The failed state: what had arrived, marked as failed."""
        self._end(self.text, message, FAILED)

    def _end(self, text: str, footer: str, state: ViewState) -> None:
        self.state = state
        if self.rich:
            view = self.view(text, footer, state)
            if self.handle is not None:
                self._show(view)
            else:
                from IPython.display import display

                self.handle = display(view, display_id=True)
            return
        if not self.stream:
            self._write(self.prefix)
        if not text.startswith(self._printed):
            self._write("\n")
            self._printed = ""
        self._print_new(text)
        self._write(f"\n[{footer}]\n")

    def _show(self, view: Any) -> None:
        self.updates += 1
        self.handle.update(view)

    def _print_new(self, text: str) -> None:
        # Decoded text only grows, except in rare re-tokenisations; `_end` then prints it whole.
        if text.startswith(self._printed):
            self._write(text[len(self._printed) :])
            self._printed = text

    def _write(self, text: str) -> None:
        if text:
            out = self.out or sys.stdout
            out.write(text)
            out.flush()
