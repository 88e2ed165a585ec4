"""The logit lens view (`%llm_next --lens`): a table of layers with their likeliest next tokens,
the layer where the model's answer settles marked; self-contained HTML (inline CSS, no JavaScript,
everything escaped) and plain text. Tokens are drawn as `%tokens` draws them (`visible`)."""

from __future__ import annotations

import html
from typing import Any

from ..inside.lens import Lens
from .tokens import marked_html, visible

_CSS = """
.llm-lens{font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;line-height:1.35}
.llm-lens .head{font-weight:600;margin-bottom:4px}
.llm-lens table{border-collapse:collapse;border:none}
.llm-lens th{font-size:12px;text-align:left;padding:1px 8px 1px 0;opacity:.85}
.llm-lens td{padding:1px 8px 1px 0;text-align:left;border:none;white-space:nowrap}
.llm-lens td.num{text-align:right;font-variant-numeric:tabular-nums}
.llm-lens .tok{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;border-radius:3px;padding:0 2px;unicode-bidi:isolate}
.llm-lens .ans{background:rgba(40,170,90,.30)}
.llm-lens tr.settle td{border-top:2px solid rgba(40,170,90,.9)}
.llm-lens .m{opacity:.45}
.llm-lens .note{font-size:12px;opacity:.85;margin-top:4px}
""".strip()


def _layer_name(lens: Lens, layer: int) -> str:
    last = len(lens.rows) - 1
    if layer == 0:
        return "embeddings"
    return f"{layer} (output)" if layer == last else str(layer)


class LensView:
    """The layers of a `Lens`, one row each, the answer highlighted wherever it appears."""

    def __init__(self, lens: Lens) -> None:
        self.lens = lens

    def heading(self) -> str:
        lens = self.lens
        return (
            f"{lens.name} · logit lens · next token after {lens.prompt_tokens} tokens · "
            f"answer {visible(lens.answer.label)!r} ({lens.answer.probability:.1%}), top from layer {lens.settles} on"
        )

    def html(self) -> str:
        lens = self.lens
        rows = []
        for layer, (top, p_answer) in enumerate(zip(lens.rows, lens.answer_probabilities, strict=True)):
            cells = []
            for token in top:
                css = "tok ans" if token.id == lens.answer.id else "tok"
                title = html.escape(f"id {token.id} · {token.probability:.4f}", quote=True)
                cells.append(
                    f'<span class="{css}" title="{title}">{marked_html(token.label)}</span> {token.probability:.2f}'
                )
            settle = ' class="settle"' if layer == lens.settles else ""
            rows.append(
                f"<tr{settle}><td>{html.escape(_layer_name(lens, layer))}</td>"
                f'<td class="num">{p_answer:.3f}</td><td>{" &nbsp; ".join(cells)}</td></tr>'
            )
        return (
            f'<div class="llm-lens"><style>{_CSS}</style><div class="head">{html.escape(self.heading())}</div>'
            "<table><tr><th>layer</th><th>p(answer)</th><th>likeliest next tokens</th></tr>"
            f"{''.join(rows)}</table>"
            '<div class="note">Each layer\'s hidden state through the final norm and the output head. '
            "Green: the model's answer; the line marks where it becomes and stays the top token.</div></div>"
        )

    def text(self) -> str:
        lens = self.lens
        lines = [self.heading(), f"{'layer':<12} {'p(answer)':>9}  likeliest next tokens"]
        for layer, (top, p_answer) in enumerate(zip(lens.rows, lens.answer_probabilities, strict=True)):
            mark = "▶" if layer == lens.settles else " "
            tokens = "  ".join(
                f"{'*' if t.id == lens.answer.id else ''}{visible(t.label)} {t.probability:.2f}" for t in top
            )
            lines.append(f"{mark}{_layer_name(lens, layer):<11} {p_answer:>9.3f}  {tokens}")
        lines.append("* the model's answer; ▶ where it becomes and stays the top token")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


__all__ = ["LensView"]
