"""A reply's alternatives (`--alternatives`): self-contained HTML (inline CSS, no JavaScript) and text.

Each token is coloured by the probability the model gave it (the scale of `%tokens --probs`), its
runners-up in its tooltip; the expanded positions (the least likely tokens) follow as `<details>`,
each runner-up with the reply's text before it and where greedy decoding went from there. Model
text is escaped and its whitespace and control characters drawn as markers, as `%tokens` does.
"""

from __future__ import annotations

import html
from typing import Any

from ..inside.alternatives import Alternative, Position, ReplyAlternatives
from ..values import ScoreSource
from .tokens import marked_html, probability_colour, visible

_CSS = """
.llm-alt{font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;line-height:1.35;max-width:900px}
.llm-alt .head{font-weight:600;margin-bottom:4px}
.llm-alt .text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
overflow-wrap:anywhere;line-height:1.9}
.llm-alt .t{border-radius:3px;padding:1px 0;margin-right:1px;unicode-bidi:isolate}
.llm-alt .sp{background:rgba(150,80,220,.30);border:1px solid rgba(150,80,220,.8);font-size:11px;padding:0 3px}
.llm-alt .m{opacity:.45}
.llm-alt details{margin:3px 0}
.llm-alt summary{cursor:pointer}
.llm-alt .tok{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;unicode-bidi:isolate}
.llm-alt .branch{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
overflow-wrap:anywhere;margin:2px 0 2px 14px}
.llm-alt .pre{opacity:.55}
.llm-alt .alt{background:rgba(245,166,35,.35);border-radius:3px}
.llm-alt .foot{margin-top:6px;font-size:12px;opacity:.85}
""".strip()

# Characters of the reply shown before a branch's alternative token.
_PREFIX_TAIL = 60


def _pct(p: float) -> str:
    return f"{100 * p:.2f}%" if p >= 0.0001 else f"{p:.1e}"


def _tooltip(position: Position) -> str:
    lines = [f"{position.token!r} · p = {position.probability:.4f}"]
    lines += [f"  {alt.probability:.4f}  {alt.token!r}" for alt in position.runners_up]
    return "\n".join(lines)


def _token_html(position: Position) -> str:
    title = html.escape(_tooltip(position), quote=True)
    if position.special:
        return f'<span class="t sp" title="{title}">{html.escape(position.token)}</span>'
    colour = probability_colour(position.probability)
    body = marked_html(position.token) if position.token else '<span class="m">∅</span>'
    return f'<span class="t" style="background:{colour}" title="{title}">{body}</span>'


def _alt_html(alt: Alternative) -> str:
    return f'<span class="tok">{marked_html(alt.token)}</span> {_pct(alt.probability)}'


def _details_html(position: Position) -> str:
    summary = (
        f"token {position.index + 1}: <span class='tok'>{marked_html(position.token)}</span> "
        f"{_pct(position.probability)} · instead: " + ", ".join(_alt_html(alt) for alt in position.runners_up)
    )
    prefix = position.prefix[-_PREFIX_TAIL:]
    cut = "…" if len(position.prefix) > _PREFIX_TAIL else ""
    rows = "".join(
        f'<div class="branch"><span class="pre">{html.escape(cut)}{marked_html(prefix)}</span>'
        f'<span class="alt" title="{html.escape(_pct(b.alternative.probability), quote=True)}">'
        f"{marked_html(b.alternative.token)}</span>{html.escape(b.continuation)}…</div>"
        for b in position.branches
    )
    return f"<details><summary>{summary}</summary>{rows}</details>"


def _foot(view: ReplyAlternatives) -> str:
    how = (
        "softmax of the raw logits"
        if view.temperature == 1
        else f"softmax of the raw logits / temperature {view.temperature:g}"
    )
    if view.source is not ScoreSource.LOGITS:
        how = "the server's log-probabilities"
    parts = [f"{len(view.positions)} tokens", f"probabilities: {how}", f"{view.show} runners-up each"]
    if view.no_branches:
        parts.append(f"no branches ({view.no_branches})")
    elif view.expand:
        parts.append(
            f"branches for the {view.expand} least likely tokens, {view.branch_tokens} greedy tokens each "
            "(LlmMagics.alternatives_expand, alternatives_branch_tokens)"
        )
    return " · ".join(parts)


class AlternativesView:
    """A reply's tokens coloured by probability, runners-up in tooltips, branches when expanded."""

    def __init__(self, alternatives: ReplyAlternatives) -> None:
        self.alternatives = alternatives

    def __repr__(self) -> str:
        return f"<AlternativesView {self.alternatives.model}: {len(self.alternatives.positions)} tokens>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def html(self) -> str:
        view = self.alternatives
        tokens = "".join(_token_html(p) for p in view.positions)
        details = "".join(_details_html(p) for p in view.expanded)
        return (
            f'<div class="llm-alt"><style>{_CSS}</style>'
            f'<div class="head">Alternatives of {html.escape(view.model)}\'s reply</div>'
            f'<div class="text">{tokens}</div>{details}'
            f'<div class="foot">{html.escape(_foot(view))}</div></div>'
        )

    def text(self) -> str:
        """For terminals: one line per token (probability, token, runners-up), then the branches."""
        view = self.alternatives
        lines = [f"Alternatives of {view.model}'s reply"]
        for p in view.positions:
            runners = "  ".join(f"{visible(a.token)} {_pct(a.probability)}" for a in p.runners_up)
            lines.append(f"{p.index + 1:>4} {_pct(p.probability):>8}  {visible(p.token):<16} | {runners}")
        for p in view.expanded:
            lines.append(f"\ntoken {p.index + 1} {visible(p.token)} ({_pct(p.probability)}) could have been:")
            tail = p.prefix[-_PREFIX_TAIL:]
            for b in p.branches:
                lines.append(f"  …{visible(tail)}[{visible(b.alternative.token)}]{visible(b.continuation)}…")
        lines.append(f"[{_foot(view)}]")
        return "\n".join(lines)


__all__ = ["AlternativesView"]
