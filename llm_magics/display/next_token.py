"""Next-token views: bars as self-contained HTML (inline CSS, no JavaScript), plain text, and the
`--live` explorer (core ipywidgets only, so Colab needs no custom widget manager).

Tokens are drawn as `%tokens` draws them: whitespace and control characters as markers
(`visible`), escaped; a token holding only some bytes of a character shows those bytes, and a
character split across steps is shown once, on the step that completes it, with all its ids.
ipywidgets is imported only by `NextTokenExplorer`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

from ..errors import LlmMagicsError
from ..next_token import Candidate, Cut, NextToken, PartialSampling, Sampling, Step, Steps
from .tokens import marked_html, visible
from .widgets import widget_bundle

_CSS = """
.llm-next{font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;line-height:1.35;max-width:900px}
.llm-next .head{font-weight:600;margin-bottom:2px}
.llm-next .sub{font-size:12px;opacity:.8;margin-bottom:6px}
.llm-next .prompt{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
overflow-wrap:anywhere;opacity:.75}
.llm-next .cursor{opacity:.6}
.llm-next table.nt{border-collapse:collapse;margin:0;border:none}
.llm-next table.nt th{font-weight:600;font-size:12px;text-align:left;padding:2px 8px 2px 0;opacity:.85;white-space:nowrap}
.llm-next table.nt td{padding:1px 8px 1px 0;vertical-align:middle;text-align:left;border:none}
.llm-next table.nt td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.llm-next .tok{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre;
unicode-bidi:isolate;max-width:16em;overflow:hidden;text-overflow:ellipsis}
.llm-next .tok>span.b{background:rgba(66,135,245,.18);border-radius:3px;padding:0 2px}
.llm-next .sp{background:rgba(150,80,220,.30);border:1px solid rgba(150,80,220,.8);border-radius:3px;font-size:11px;padding:0 3px}
.llm-next .m{opacity:.45}
.llm-next .bar{width:180px;height:12px;background:rgba(127,127,127,.12);border-radius:2px;overflow:hidden}
.llm-next .bar>div{height:100%;min-width:1px}
.llm-next .raw>div{background:rgba(66,135,245,.85)}
.llm-next .hot>div{background:rgba(245,130,35,.9)}
.llm-next tr.cut td{opacity:.4}
.llm-next tr.cut .bar>div{background:rgba(127,127,127,.9)}
.llm-next .why{font-size:11px;opacity:.8;white-space:nowrap}
.llm-next .foot{margin-top:6px;font-size:12px}
.llm-next .note{margin-top:4px;font-size:12px;opacity:.85}
.llm-next .grow{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
overflow-wrap:break-word;max-width:36em}
.llm-next .grow .new{background:rgba(40,170,90,.30);border-radius:3px}
.llm-next .alt{font-size:12px;white-space:nowrap}
""".strip()

# Characters of the prompt shown before the cursor: the end is what the model continues.
_PROMPT_TAIL = 160
_BAR_CELLS = 20
_GROW_TAIL = 120


def _pct(p: float) -> str:
    if p == 0:
        return "0%"
    if p < 0.0001:
        return "<0.01%"
    return f"{p:.1%}" if p >= 0.001 else f"{p:.2%}"


def _sampled_pct(p: float) -> str:
    """A step's `p sampled`; NaN where a server's listed tokens do not tell it."""
    return "?" if math.isnan(p) else _pct(p)


def _step_rank(step: Step) -> str:
    return str(step.rank) if step.rank is not None else f">{step.known}"


def _bytes_label(data: bytes) -> str:
    return "⟨" + " ".join(f"{b:02X}" for b in data) + "⟩"


def token_html(text: str, token: str, *, special: bool = False, partial: bytes | None = None) -> str:
    """A token as the views draw it (escaped): text with markers, a badge, or its bytes."""
    if special:
        return f'<span class="sp">{html.escape(token)}</span>'
    if partial is not None:
        return f'<span class="m">{html.escape(_bytes_label(partial))}</span>'
    return f'<span class="b">{marked_html(text)}</span>' if text else '<span class="m">∅</span>'


def token_text(text: str, token: str, *, special: bool = False, partial: bytes | None = None) -> str:
    if special:
        return token
    if partial is not None:
        return _bytes_label(partial)
    return visible(text) if text else "∅"


def _candidate_title(c: Candidate, score: str = "logit") -> str:
    lines = [f"id {c.id} · {c.token!r} · {score} {c.logit:.3f}"]
    if c.partial_bytes is not None:
        lines.append("some bytes of a character: the next token completes it")
    if c.cut is not None:
        lines.append(f"cut by {c.cut.value}")
    return "\n".join(lines)


def _prompt_html(prompt: str) -> str:
    tail = prompt[-_PROMPT_TAIL:]
    more = "…" if len(prompt) > _PROMPT_TAIL else ""
    body = marked_html(tail).replace("↵</span>", "↵</span><br>")
    return f'<div class="prompt">{more}{body}<span class="cursor">▌</span></div>'


def _prompt_text(prompt: str) -> str:
    tail = prompt[-_PROMPT_TAIL:]
    return ("…" if len(prompt) > _PROMPT_TAIL else "") + visible(tail) + "▌"


def _after(chat: bool) -> str:
    return "after the chat template and the generation prompt" if chat else "after the text"


def _cut_word(cut: Cut | None, approximate: bool = False) -> str:
    if cut is None:
        return ""
    word = "greedy: never chosen" if cut is Cut.GREEDY else f"cut by {cut.value}"
    return "≈ " + word if approximate else word


def _bar(p: float, css: str) -> str:
    return f'<div class="bar {css}"><div style="width:{min(100.0, p * 100):.2f}%"></div></div>'


def _text_bar(p: float) -> str:
    filled = p * _BAR_CELLS
    whole = int(filled)
    return ("█" * whole + ("▌" if filled - whole >= 0.5 else "")).ljust(_BAR_CELLS)


def _temperature_label(sampling: Sampling) -> str:
    return "T = 0 (greedy)" if sampling.greedy else f"T = {sampling.temperature:g}"


class NextTokenView:
    """`%llm_next`: the likeliest next tokens as bars, at temperature 1 and after the temperature,
    with what top-k and top-p cut greyed out, the probability outside the bars, and the entropy."""

    def __init__(self, result: NextToken) -> None:
        self.result = result

    @property
    def _tempered_column(self) -> bool:
        return self.result.sampling.temperature != 1.0

    @property
    def _tempered_header(self) -> str:
        # From a server, the tempered column is computed within the listed tokens only: say so.
        approximate = "≈ " if self.result.partial else ""
        return f"{approximate}p at {_temperature_label(self.result.sampling)}"

    @property
    def _sampled_header(self) -> str:
        return "sampled" if self.result.exact_sampling else "≈ sampled"

    def _summary(self) -> list[str]:
        r = self.result
        lines = list(r.notes)
        outside = f"Outside these {len(r.candidates)}: {_pct(max(0.0, 1 - r.shown_probability))} at T = 1"
        if self._tempered_column and not r.partial:
            outside += f", {_pct(max(0.0, 1 - r.shown_tempered))} at {_temperature_label(r.sampling)}"
        elif self._tempered_column and r.known is not None and len(r.candidates) < r.known:
            outside += (
                f", {_pct(max(0.0, 1 - r.shown_tempered))} of the {r.known} listed at "
                f"{_temperature_label(r.sampling)}"
            )
        lines.append(outside + ".")
        if r.partial:
            lines.append(
                f"Entropy at least {r.entropy:.2f} bits at T = 1 (a lower bound: only the top {r.known} are known)."
            )
        else:
            entropy = f"Entropy {r.entropy:.2f} bits at T = 1: as undecided as a fair pick among {2**r.entropy:,.1f} tokens"
            if self._tempered_column and r.entropy_tempered is not None:
                entropy += f"; {r.entropy_tempered:.2f} bits at {_temperature_label(r.sampling)}"
            lines.append(entropy + ".")
        if r.sampling.greedy:
            lines.append("Temperature 0 is greedy: the likeliest token is always chosen.")
        elif r.partial and r.sampling == Sampling():
            lines.append("At T = 1 with no cut, sampling draws each token with exactly its probability.")
        elif r.partial and r.exact_sampling:
            lines.append(
                f"Sampling can pick {r.kept:,} tokens, all among the {r.known} listed; the last column is "
                "their share renormalised."
            )
        elif r.partial_sampling is PartialSampling.TOP_P_KEEPS_REST:
            lines.append(
                f"Sampling keeps all {r.known} listed tokens and some of the rest; the last column is each "
                "listed token's own probability, a lower bound of its share."
            )
        elif r.partial:
            lines.append(
                f"Within the {r.known} listed tokens sampling keeps {r.kept:,}; the last column renormalises "
                "them as if the rest of the vocabulary did not exist."
            )
        else:
            lines.append(
                f"Sampling can pick {r.kept:,} of {r.vocab_size:,} tokens, which held "
                f"{_pct(r.kept_tempered)} of the probability; the last column is that share renormalised."
            )
        return lines

    def html(self) -> str:
        r = self.result
        head = f"{html.escape(r.name)} · next token {_after(r.chat)} · {html.escape(r.sampling.describe())}"
        parts = [f'<div class="llm-next"><style>{_CSS}</style><div class="head">{head}</div>']
        parts.append(f'<div class="sub">{r.prompt_tokens:,} prompt tokens; the model continues from ▌</div>')
        parts.append(_prompt_html(r.prompt))
        tcol = html.escape(self._tempered_header) if self._tempered_column else ""
        parts.append('<table class="nt"><tr><th>#</th><th>token</th><th>p at T = 1</th><th></th>')
        if tcol:
            parts.append(f"<th>{tcol}</th><th></th>")
        parts.append(f"<th>{html.escape(self._sampled_header)}</th><th></th></tr>")
        score = "log p" if r.partial else "logit"
        for c in r.candidates:
            row = ' class="cut"' if c.cut is not None else ""
            title = html.escape(_candidate_title(c, score), quote=True)
            label = token_html(c.text, c.token, special=c.special, partial=c.partial_bytes)
            parts.append(
                f'<tr{row} title="{title}"><td class="num">{c.rank}</td><td class="tok">{label}</td>'
                f'<td>{_bar(c.probability, "raw")}</td><td class="num">{_pct(c.probability)}</td>'
            )
            if tcol:
                parts.append(f'<td>{_bar(c.tempered, "hot")}</td><td class="num">{_pct(c.tempered)}</td>')
            parts.append(
                f'<td class="num">{_pct(c.sampled)}</td><td class="why">{html.escape(_cut_word(c.cut, not r.exact_sampling))}</td></tr>'
            )
        parts.append("</table>")
        parts.append(
            '<div class="foot">' + "<br>".join(html.escape(line) for line in self._summary()) + "</div>"
        )
        parts.append("</div>")
        return "".join(parts)

    def text(self) -> str:
        r = self.result
        lines = [
            f"── {r.name} · next token {_after(r.chat)} · {r.sampling.describe()} ──",
            _prompt_text(r.prompt),
        ]
        header = f"{'#':>4}  {'token':<16} {'p at T = 1':<28}"
        if self._tempered_column:
            header += f" {self._tempered_header:<28}"
        lines.append(header + " " + self._sampled_header)
        for c in r.candidates:
            label = token_text(c.text, c.token, special=c.special, partial=c.partial_bytes)
            line = f"{c.rank:>4}  {label[:16]:<16} {_text_bar(c.probability)} {_pct(c.probability):>7}"
            if self._tempered_column:
                line += f" {_text_bar(c.tempered)} {_pct(c.tempered):>7}"
            line += f" {_pct(c.sampled):>7}"
            if c.cut is not None:
                line += f"  ({_cut_word(c.cut, not r.exact_sampling)})"
            lines.append(line)
        lines.extend(self._summary())
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


def _step_token_html(step: Step) -> str:
    if step.special:
        return token_html("", step.token, special=True)
    if not step.piece_ids:
        return '<span class="m">…</span>'
    body = token_html(step.piece, step.token)
    if len(step.piece_ids) > 1:
        body += f'<span class="m"> ({len(step.piece_ids)} tokens)</span>'
    return body


def _step_token_text(step: Step) -> str:
    if step.special:
        return step.token
    if not step.piece_ids:
        return "…"
    label = visible(step.piece) if step.piece else "∅"
    return label + (f" ({len(step.piece_ids)} tokens)" if len(step.piece_ids) > 1 else "")


def _step_title(step: Step) -> str:
    ids = " ".join(map(str, step.piece_ids or (step.id,)))
    lines = [f"id {step.id} · {step.token!r}"]
    if len(step.piece_ids) > 1:
        lines.append(f"one character from {len(step.piece_ids)} tokens: ids {ids}")
    elif not step.piece_ids:
        lines.append("some bytes of a character: a later step completes it")
    return "\n".join(lines)


def _runners(step: Step, as_html: bool) -> str:
    parts = []
    for c in step.runners_up:
        if as_html:
            label = token_html(c.text, c.token, special=c.special, partial=c.partial_bytes)
            parts.append(f"{label} {_pct(c.probability)}")
        else:
            parts.append(
                f"{token_text(c.text, c.token, special=c.special, partial=c.partial_bytes)} {_pct(c.probability)}"
            )
    return " · ".join(parts)


class StepsView:
    """`%llm_next --steps N`: one row per chosen token, with its probability and rank, the
    runners-up, and the text growing row by row."""

    def __init__(self, result: Steps) -> None:
        self.result = result

    def _how(self) -> str:
        r = self.result
        if not r.sample or r.sampling.greedy:
            return "greedy (the likeliest token each time)"
        return f"sampled ({r.sampling.describe()}, seed {r.seed})"

    def _summary(self) -> list[str]:
        r = self.result
        lines = list(r.notes)
        if r.end.value == "end of text":
            lines.append(f"Stopped at the end-of-text token after {len(r.steps)} of {r.requested} steps.")
        return lines

    def html(self) -> str:
        r = self.result
        sampled = r.sample and not r.sampling.greedy
        head = f"{html.escape(r.name)} · {len(r.steps)} steps {_after(r.chat)} · {html.escape(self._how())}"
        parts = [f'<div class="llm-next"><style>{_CSS}</style><div class="head">{head}</div>']
        parts.append(_prompt_html(r.prompt))
        parts.append('<table class="nt"><tr><th>step</th><th>token</th><th>p at T = 1</th><th>rank</th>')
        if sampled:
            parts.append(f"<th>{'' if r.exact_sampling else '≈ '}p sampled</th>")
        parts.append("<th>runners-up (T = 1)</th><th>text so far</th></tr>")
        previous = ""
        for step in r.steps:
            title = html.escape(_step_title(step), quote=True)
            # The end of the text so far: the whole of it on every row would grow as steps squared.
            before = ("…" + previous[-_GROW_TAIL:]) if len(previous) > _GROW_TAIL else previous
            grow = marked_html(before) + (
                f'<span class="new">{marked_html(step.piece)}</span>' if step.piece else ""
            )
            previous = step.text
            parts.append(
                f'<tr title="{title}"><td class="num">{step.index}</td><td class="tok">{_step_token_html(step)}</td>'
                f'<td class="num">{_pct(step.probability)}</td><td class="num">{_step_rank(step)}</td>'
            )
            if sampled:
                parts.append(f'<td class="num">{_sampled_pct(step.sampled)}</td>')
            parts.append(f'<td class="alt">{_runners(step, True)}</td><td class="grow">{grow}</td></tr>')
        parts.append("</table>")
        for line in self._summary():
            parts.append(f'<div class="note">{html.escape(line)}</div>')
        parts.append("</div>")
        return "".join(parts)

    def text(self) -> str:
        r = self.result
        sampled = r.sample and not r.sampling.greedy
        lines = [
            f"── {r.name} · {len(r.steps)} steps {_after(r.chat)} · {self._how()} ──",
            _prompt_text(r.prompt),
        ]
        for step in r.steps:
            p = f"{_pct(step.probability):>7}" + (f" {_sampled_pct(step.sampled):>7}" if sampled else "")
            lines.append(
                f"{step.index:>4}  {_step_token_text(step)[:16]:<16} {p}  rank {_step_rank(step):<5} "
                f"{_runners(step, False)}"
            )
        lines.append("Text: " + visible(r.steps[-1].text if r.steps else ""))
        lines.extend(self._summary())
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


class NextTokenExplorer:
    """`%llm_next --live`: a text box, sliders for temperature, top-p and top-k, and buttons that
    append the greedy or a sampled token (and undo); the bars update in place.

    Core ipywidgets only (7.7 and 8 alike), and every update runs in the widget's own callback:
    no thread. `model` is the core that owns the forward passes and the appended tokens (see
    `llm_magics.magics.next_token`); it gives a `NextTokenView` for the current settings. Shown
    with the initial view as text/html and text/plain too, for a saved notebook.
    """

    def __init__(self, model: Any, *, text: str, sampling: Sampling, max_top_k: int = 100) -> None:
        import ipywidgets as widgets

        # Full descriptions ("temperature" is cut to "temperat…" at the default width).
        wide = {"description_width": "initial"}
        self.model = model
        self.textarea = widgets.Textarea(
            value=text, placeholder="Type the text the model continues", layout=widgets.Layout(width="100%")
        )
        self.temperature = widgets.FloatSlider(
            value=sampling.temperature,
            min=0.0,
            max=2.0,
            step=0.05,
            description="temperature",
            style=wide,
            continuous_update=False,
            readout_format=".2f",
        )
        self.top_p = widgets.FloatSlider(
            value=sampling.top_p,
            min=0.05,
            max=1.0,
            step=0.05,
            description="top-p",
            style=wide,
            continuous_update=False,
            readout_format=".2f",
        )
        self.top_k = widgets.IntSlider(
            value=min(sampling.top_k, max_top_k),
            min=0,
            max=max_top_k,
            step=1,
            description="top-k",
            style=wide,
            continuous_update=False,
        )
        self.greedy_button = widgets.Button(description="greedy", tooltip="Append the likeliest token")
        self.sample_button = widgets.Button(
            description="sample", tooltip="Append a token drawn with these settings"
        )
        self.undo_button = widgets.Button(description="undo", tooltip="Remove the last appended token")
        self.status = widgets.HTML(value="")
        self.output = widgets.HTML(value="")
        buttons = widgets.HBox([self.greedy_button, self.sample_button, self.undo_button])
        self.widget = widgets.VBox(
            [self.textarea, self.temperature, self.top_p, self.top_k, buttons, self.status, self.output]
        )
        for control in (self.temperature, self.top_p, self.top_k):
            control.observe(self._on_settings, names="value")
        self.textarea.observe(self._on_text, names="value")
        self.greedy_button.on_click(self._act(lambda: self.model.append(self.sampling, sample=False)))
        self.sample_button.on_click(self._act(lambda: self.model.append(self.sampling, sample=True)))
        self.undo_button.on_click(self._act(self.model.undo))
        self.view: NextTokenView | None = None
        self._safely(lambda: self.model.set_text(text))

    @property
    def sampling(self) -> Sampling:
        return Sampling(float(self.temperature.value), int(self.top_k.value), float(self.top_p.value))

    def _act(self, action: Callable[[], Any]) -> Callable[[Any], None]:
        return lambda button: self._safely(action)

    def _on_settings(self, change: Any = None) -> None:
        self._safely(lambda: None)

    def _on_text(self, change: Any = None) -> None:
        self._safely(lambda: self.model.set_text(self.textarea.value))

    def _safely(self, action: Callable[[], Any]) -> None:
        """Run `action`, then redraw; an expected error becomes the status line, not a traceback."""

        try:
            action()
            self.view = NextTokenView(self.model.distribution(self.sampling))
        except LlmMagicsError as error:
            self.status.value = f'<span style="color:#b35c00">{html.escape(str(error))}</span>'
            return
        appended = self.model.appended_text()
        self.status.value = (
            f'<span style="font-size:12px">appended: <span style="font-family:monospace">{marked_html(appended)}</span></span>'
            if appended
            else ""
        )
        self.output.value = self.view.html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(self.widget, self.view, "next-token explorer")


__all__ = ["NextTokenExplorer", "NextTokenView", "StepsView", "token_html", "token_text"]
