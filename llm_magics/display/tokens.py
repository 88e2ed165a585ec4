"""Token views: self-contained HTML (inline CSS, no JavaScript), ANSI text, and the `--live` explorer.

The HTML must survive wherever a notebook is read (Colab, JupyterLab, VS Code, nbconvert, GitHub's
static view), so it is one `<style>` scoped under `.llm-tok` plus markup; everything from the user
or the tokenizer is escaped, and control characters are drawn as visible markers, never emitted
(a stray U+202E would otherwise reverse the rest of the page). ipywidgets is imported only by
`token_explorer`.
"""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from ..tokens import Tokenization, TokenSpan
from ..values import TokenProbs
from .widgets import widget_bundle

_CSS = """
.llm-tok{font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;line-height:1.3}
.llm-tok .panels{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.llm-tok .panel{flex:1 1 320px;min-width:0;border:1px solid rgba(127,127,127,.35);border-radius:6px;padding:8px}
.llm-tok .head{font-weight:600;margin-bottom:6px}
.llm-tok .text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
overflow-wrap:anywhere;line-height:1.9}
.llm-tok .t{border-radius:3px;padding:1px 0;margin-right:1px;unicode-bidi:isolate}
.llm-tok .c{display:inline-flex;flex-direction:column;align-items:center;vertical-align:top;line-height:1.25}
.llm-tok .id{font-size:9px;opacity:.7}
.llm-tok .a0{background:rgba(66,135,245,.20)}
.llm-tok .a1{background:rgba(245,166,35,.25)}
.llm-tok .sp{background:rgba(150,80,220,.30);border:1px solid rgba(150,80,220,.8);font-size:11px;padding:0 3px}
.llm-tok .gap{outline:1px dashed rgba(127,127,127,.8);opacity:.7}
.llm-tok .fr0{background:rgba(127,127,127,.16)}
.llm-tok .fr1{background:rgba(127,127,127,.28)}
.llm-tok .system0{background:rgba(230,180,0,.22)}
.llm-tok .system1{background:rgba(230,180,0,.38)}
.llm-tok .user0{background:rgba(66,135,245,.20)}
.llm-tok .user1{background:rgba(66,135,245,.36)}
.llm-tok .assistant0{background:rgba(40,170,90,.20)}
.llm-tok .assistant1{background:rgba(40,170,90,.36)}
.llm-tok .other0{background:rgba(200,80,160,.20)}
.llm-tok .other1{background:rgba(200,80,160,.36)}
.llm-tok .m{opacity:.45}
.llm-tok .note{margin-top:6px;font-size:12px}
.llm-tok .warn{color:#b35c00}
.llm-tok .foot{margin-top:6px;font-size:12px;opacity:.9}
.llm-tok .bar{height:6px;background:rgba(127,127,127,.25);border-radius:3px;overflow:hidden;margin-top:3px;max-width:320px}
.llm-tok .bar>div{height:100%;background:rgba(66,135,245,.85)}
.llm-tok .bar>div.over{background:rgba(220,50,50,.85)}
""".strip()

_ROLE_CLASSES = {"system": "system", "user": "user", "assistant": "assistant"}

# Terminal colours (256-colour palette): two alternating backgrounds, black text on top.
_ANSI_ALT = ("\x1b[30;48;5;153m", "\x1b[30;48;5;223m")
_ANSI_SPECIAL = "\x1b[1;97;45m"
_ANSI_GAP = "\x1b[2;9m"
_ANSI_FRAME = ("\x1b[30;48;5;252m", "\x1b[30;48;5;247m")
_ANSI_ROLE = {
    "system": ("\x1b[30;48;5;229m", "\x1b[30;48;5;221m"),
    "user": ("\x1b[30;48;5;153m", "\x1b[30;48;5;111m"),
    "assistant": ("\x1b[30;48;5;157m", "\x1b[30;48;5;114m"),
}
_ANSI_DIM = "\x1b[2m"
_ANSI_RESET = "\x1b[0m"


def visible(text: str) -> str:
    """`text` with whitespace and invisible or control characters drawn as markers (not escaped).

    Spaces become "·", tabs "→", newlines "↵" (the line break itself is added by the caller), C0
    controls their Unicode control pictures, and other invisible or direction-changing characters
    a `⟨U+XXXX⟩` label.
    """
    out = []
    for char in text:
        code = ord(char)
        if char == " ":
            out.append("·")
        elif char == "\t":
            out.append("→")
        elif char == "\n":
            out.append("↵")
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("␡")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"):
            out.append(f"⟨U+{code:04X}⟩")
        else:
            out.append(char)
    return "".join(out)


def marked_html(text: str) -> str:
    """Escaped text with the markers from `visible` dimmed, so markers read as not-the-text."""
    parts = []
    for char in text:
        shown = visible(char)
        if shown == char:
            parts.append(html.escape(char))
        else:
            parts.append(f'<span class="m">{html.escape(shown)}</span>')
    return "".join(parts)


def probability_colour(p: float) -> str:
    # Log scale: 1e-4 and below is red, certainty green; most text lives in between.
    level = max(0.0, min(1.0, 1 + math.log10(max(p, 1e-12)) / 4))
    return f"hsla({120 * level:.0f},75%,50%,.38)"


def _tooltip(span: TokenSpan, probs: TokenProbs | None) -> str:
    if not span.ids:
        return f"Not in any token: {len(span.text)} character(s) the tokenizer dropped or skipped"
    lines = []
    if len(span.ids) == 1:
        lines.append(f"id {span.ids[0]} · {repr(span.tokens[0])}")
    else:
        # Usually one character split into byte-level pieces; also a piece the tokenizer added in
        # front (SentencePiece's "▁") sharing its character's offsets.
        lines.append(f"{len(span.ids)} tokens share these characters: ids " + " ".join(map(str, span.ids)))
        lines.append(" ".join(repr(t) for t in span.tokens))
    if span.is_special:
        lines.append(
            "special token" if span.text else "special token added by the tokenizer (not in the text)"
        )
    if probs is not None:
        for offset, token_id in enumerate(span.ids):
            position = span.index + offset
            p = probs.probs[position] if position < len(probs.probs) else None
            if p is None:
                lines.append(f"{token_id}: first token, nothing predicts it")
                continue
            lines.append(f"p({token_id}) = {p:.4f}")
            for alt_id, alt_token, alt_p in probs.top[position] or []:
                lines.append(f"  {alt_p:.4f}  {alt_token!r}" + ("" if alt_id is None else f" ({alt_id})"))
    return "\n".join(lines)


def _span_probability(span: TokenSpan, probs: TokenProbs) -> float | None:
    values = [probs.probs[span.index + i] for i in range(len(span.ids)) if span.index + i < len(probs.probs)]
    known = [v for v in values if v is not None]
    # The probability of the whole span is the product of its tokens' (chain rule).
    return math.prod(known) if known else None


def _span_class(view: Tokenization, position: int, span: TokenSpan, parity: int) -> str:
    if not span.ids:
        return "gap"
    if span.is_special:
        return "sp"
    if view.roles:
        role, is_content = view.roles[position]
        if not is_content:
            return f"fr{parity}"
        return f"{_ROLE_CLASSES.get(role, 'other')}{parity}"
    return f"a{parity}"


def _spans_html(view: Tokenization, show_ids: bool) -> str:
    parts = []
    parity = 0
    for position, span in enumerate(view.spans):
        css = _span_class(view, position, span, parity)
        if span.ids and not span.is_special:
            parity ^= 1
        style = ""
        if view.probs is not None and span.ids and not span.is_special:
            p = _span_probability(span, view.probs)
            style = f' style="background:{probability_colour(p)}"' if p is not None else ""
        # A zero-width span is a token the tokenizer added (a BOS): its vocabulary string is the badge.
        body = marked_html(span.text or span.token)
        title = html.escape(_tooltip(span, view.probs), quote=True)
        if show_ids:
            ids = " ".join(map(str, span.ids)) or "–"
            body = f'<span>{body}</span><span class="id">{ids}</span>'
            css += " c"
        parts.append(f'<span class="t {css}"{style} title="{title}">{body}</span><wbr>')
        # The newline marker sits inside the token; the line break itself follows it.
        parts.append("<br>" * span.text.count("\n"))
    return "".join(parts)


def _counts(view: Tokenization) -> str:
    cpt = f"{view.chars_per_token:.2f}" if view.chars_per_token is not None else "–"
    return f"{view.n_tokens:,} tokens · {view.n_chars:,} characters · {cpt} characters per token"


def _context_line(view: Tokenization) -> str | None:
    fraction = view.context_fraction
    if fraction is None or view.context_length is None:
        return None
    if fraction > 1:
        return f"{fraction:.0%} of the {view.context_length:,}-token context window: too long for the model"
    return f"{fraction:.1%} of the {view.context_length:,}-token context window"


def _notes(view: Tokenization, max_tokens: int | None) -> list[tuple[str, bool]]:
    """(line, is_warning) for the view's footnotes."""
    notes: list[tuple[str, bool]] = [(note, False) for note in view.notes]
    if view.truncated:
        limit = f" (--max-tokens {max_tokens:,})" if max_tokens is not None else ""
        notes.append(
            (
                f"Showing the first {view.shown_tokens:,} of {view.n_tokens:,} tokens{limit}; "
                "the counts cover the whole text.",
                True,
            )
        )
    if view.round_trips:
        notes.append(("Decoding the ids gives the text back exactly.", False))
    else:
        described = "; ".join(change.describe() for change in view.changes)
        more = (
            f" (and {view.changes_total - len(view.changes)} more)"
            if view.changes_total > len(view.changes)
            else ""
        )
        notes.append(
            (
                f"Decoding the ids does not give the text back: the tokenizer normalises it. "
                f"{view.changes_total} change(s): {described}{more}.",
                True,
            )
        )
    return notes


def _legend(view: Tokenization) -> str | None:
    if view.probs is not None:
        return "Colour: each token's probability under the model, red = surprising, green = expected; hover for the top alternatives."
    if view.roles:
        return "Colour: system, user and assistant content; grey = what the chat template adds; purple badges = special tokens."
    return None


def _panel_html(view: Tokenization, show_ids: bool, max_tokens: int | None, title: str) -> str:
    head = html.escape(view.name or "tokenizer") + (f" · {html.escape(title)}" if title else "")
    parts = [f'<div class="panel"><div class="head">{head}</div>']
    parts.append(f'<div class="text">{_spans_html(view, show_ids)}</div>')
    for line, warn in _notes(view, max_tokens):
        parts.append(f'<div class="note{" warn" if warn else ""}">{html.escape(line)}</div>')
    legend = _legend(view)
    if legend:
        parts.append(f'<div class="note">{html.escape(legend)}</div>')
    foot = [html.escape(_counts(view))]
    if view.probs is not None and view.probs.perplexity is not None:
        foot.append(f"perplexity {view.probs.perplexity:,.2f}")
    parts.append(f'<div class="foot">{" · ".join(foot)}')
    context = _context_line(view)
    if context is not None and view.context_fraction is not None:
        width = min(100.0, view.context_fraction * 100)
        over = ' class="over"' if view.context_fraction > 1 else ""
        parts.append(
            f"<div>{html.escape(context)}</div>"
            f'<div class="bar"><div{over} style="width:{width:.2f}%"></div></div>'
        )
    parts.append("</div></div>")
    return "".join(parts)


def _ansi_spans(view: Tokenization, show_ids: bool) -> str:
    parts = []
    parity = 0
    for position, span in enumerate(view.spans):
        if not span.ids:
            colour = _ANSI_GAP
        elif span.is_special:
            colour = _ANSI_SPECIAL
        elif view.probs is not None:
            p = _span_probability(span, view.probs)
            colour = _ANSI_FRAME[parity] if p is None else _ansi_probability(p)
        elif view.roles:
            role, is_content = view.roles[position]
            palette = _ANSI_ROLE.get(role, _ANSI_ALT) if is_content else _ANSI_FRAME
            colour = palette[parity]
        else:
            colour = _ANSI_ALT[parity]
        if span.ids and not span.is_special:
            parity ^= 1
        body = visible(span.text or span.token)
        parts.append(f"{colour}{body}{_ANSI_RESET}")
        if show_ids and span.ids:
            parts.append(f"{_ANSI_DIM}[{' '.join(map(str, span.ids))}]{_ANSI_RESET}")
        parts.append("\n" * span.text.count("\n"))
    return "".join(parts)


def _ansi_probability(p: float) -> str:
    level = max(0.0, min(1.0, 1 + math.log10(max(p, 1e-12)) / 4))
    # red, orange, yellow, light green, green
    palette = (210, 216, 229, 193, 157)
    return f"\x1b[30;48;5;{palette[min(4, int(level * 5))]}m"


def _panel_text(view: Tokenization, show_ids: bool, max_tokens: int | None, title: str) -> str:
    head = (view.name or "tokenizer") + (f" · {title}" if title else "")
    lines = [f"── {head} ──", _ansi_spans(view, show_ids)]
    lines.extend(("! " if warn else "") + line for line, warn in _notes(view, max_tokens))
    foot = _counts(view)
    if view.probs is not None and view.probs.perplexity is not None:
        foot += f" · perplexity {view.probs.perplexity:,.2f}"
    lines.append(foot)
    context = _context_line(view)
    if context is not None and view.context_fraction is not None:
        filled = round(min(1.0, view.context_fraction) * 30)
        lines.append(f"[{'█' * filled}{'░' * (30 - filled)}] {context}")
    return "\n".join(lines)


class TokenView:
    """One or more token views side by side (two for `--compare`), as HTML and ANSI text."""

    def __init__(
        self,
        views: Sequence[Tokenization],
        *,
        show_ids: bool = False,
        max_tokens: int | None = None,
        title: str = "",
    ) -> None:
        self.views = list(views)
        self.show_ids = show_ids
        self.max_tokens = max_tokens
        self.title = title

    def html(self) -> str:
        panels = "".join(_panel_html(view, self.show_ids, self.max_tokens, self.title) for view in self.views)
        return f'<div class="llm-tok"><style>{_CSS}</style><div class="panels">{panels}</div></div>'

    def text(self) -> str:
        return "\n\n".join(
            _panel_text(view, self.show_ids, self.max_tokens, self.title) for view in self.views
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


#: Schedules a call after a delay in seconds and returns a function that cancels it.
Scheduler = Callable[[float, Callable[[], None]], Callable[[], None]]


def kernel_scheduler() -> Scheduler | None:
    """Timers on the kernel's own IOLoop, where widget messages are handled; None outside a kernel.

    The callback runs on the kernel's main thread between messages, like a comm handler: no
    thread of ours ever touches the shell or the widgets. ipykernel 6 and 7 both keep the loop as
    `kernel.io_loop` (a tornado IOLoop).
    """
    from IPython import get_ipython

    loop = getattr(getattr(get_ipython(), "kernel", None), "io_loop", None)
    if loop is None or not hasattr(loop, "call_later"):
        return None

    def schedule(delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        handle = loop.call_later(delay, callback)
        return lambda: loop.remove_timeout(handle)

    return schedule


class TokenExplorer:
    """`%tokens --live`: a text box whose token view updates when typing pauses, and a tokenizer picker.

    Every keystroke reaches the kernel (the text box updates continuously), but the view, which is
    what costs bytes, is drawn only once no key was pressed for `delay` seconds: a timer on the
    kernel's IOLoop, restarted by each keystroke. Without a kernel loop (terminal IPython, tests
    without a scheduler) the text box updates on Enter or when it loses focus instead.

    Displayed as the widget where widgets run, with the initial view as text/html and text/plain
    alongside, so a saved notebook (which keeps no widget state) still shows a token view.
    """

    def __init__(
        self,
        names: Sequence[str],
        render: Callable[[str, str], TokenView],
        *,
        text: str = "",
        name: str | None = None,
        delay: float = 0.3,
        scheduler: Scheduler | None = None,
    ) -> None:
        import ipywidgets as widgets

        self._render = render
        self._delay = delay
        self._schedule = scheduler if scheduler is not None else kernel_scheduler()
        self._cancel: Callable[[], None] | None = None
        self.textarea = widgets.Textarea(
            value=text,
            placeholder="Type or paste text to tokenise",
            continuous_update=self._schedule is not None,
            layout=widgets.Layout(width="100%", height="6em"),
        )
        self.picker = widgets.Dropdown(options=list(names), value=name or names[0], description="Tokenizer")
        self.output = widgets.HTML(value="")
        self.widget = widgets.VBox([self.picker, self.textarea, self.output])
        self.textarea.observe(self._typed, names="value")
        self.picker.observe(self._update, names="value")
        self.view = self._refresh()

    def _refresh(self) -> TokenView:
        view = self._render(self.picker.value, self.textarea.value)
        self.output.value = view.html()
        return view

    def _typed(self, change: Any = None) -> None:
        if self._schedule is None:
            self._update()
            return
        if self._cancel is not None:
            self._cancel()
        self._cancel = self._schedule(self._delay, self._update)

    def _update(self, change: Any = None) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        self.view = self._refresh()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(self.widget, self.view, "token explorer")


__all__ = ["TokenExplorer", "TokenView", "visible"]
