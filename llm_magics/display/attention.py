"""Attention views: a grid of small heatmaps (one per layer and head) and one large heatmap with
the tokens on both axes, as self-contained HTML/SVG (inline CSS, no JavaScript, hover `<title>`s
with the weights); a table of the most attended tokens as plain text; and the `--live` explorer
(core ipywidgets sliders, 7.7 and 8 alike). Tokens are drawn as `%tokens` draws them (`visible`),
escaped. ipywidgets is imported only by `AttentionExplorer`.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..inside.attention import Attention
from .tokens import visible
from .widgets import widget_bundle

#: A grid of at most this many small heatmaps is shown open; a bigger one is folded (one click).
GRID_OPEN_UP_TO = 64
#: Small heatmaps pool the tokens into at most this many cells a side, so a 30 × 9 grid stays small.
GRID_CELLS = 16
_SMALL = 48  # pixels a side
_CELL = 14  # pixels per token in the large heatmap
_LABEL = 90  # pixels for the token labels

_CSS = """
.llm-att{font-family:ui-sans-serif,system-ui,sans-serif;font-size:12px;line-height:1.3}
.llm-att .head{font-weight:600;margin-bottom:4px}
.llm-att .grid{display:grid;gap:2px;margin:6px 0;overflow-x:auto}
.llm-att .grid .lab{font-size:10px;opacity:.7;align-self:center;white-space:nowrap}
.llm-att svg{display:block}
.llm-att .on rect.frame{stroke:#d9480f;stroke-width:2}
.llm-att .note{font-size:12px;opacity:.85;margin-top:4px}
""".strip()


def _label(text: str, limit: int = 12) -> str:
    shown = visible(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _pooled(matrix: np.ndarray, cells: int) -> np.ndarray:
    """[q, k] weights pooled into at most `cells` × `cells`: mean over the queries of a cell, sum
    over its keys (so each pooled row still sums to 1)."""
    n = matrix.shape[0]
    if n <= cells:
        return matrix
    edges = np.linspace(0, n, cells + 1).round().astype(int)
    out = np.zeros((cells, cells), dtype=np.float32)
    for i in range(cells):
        rows = matrix[edges[i] : edges[i + 1]]
        for j in range(cells):
            out[i, j] = rows[:, edges[j] : edges[j + 1]].sum(axis=1).mean()
    return out


def _small_svg(matrix: np.ndarray, title: str, chosen: bool) -> str:
    pooled = _pooled(matrix, GRID_CELLS)
    n = pooled.shape[0]
    step = _SMALL / n
    # One path per shade keeps the grid small: 8 shades, the faintest left out.
    levels = np.minimum(7, (pooled * 8).astype(int))
    paths = []
    for level in range(1, 8):
        cells = np.argwhere(levels == level)
        if len(cells):
            d = "".join(
                f"M{j * step:.1f} {i * step:.1f}h{step:.1f}v{step:.1f}h-{step:.1f}z" for i, j in cells
            )
            paths.append(f'<path d="{d}" fill="#1c5fd6" fill-opacity="{(level + 0.5) / 8:.2f}"/>')
    css = ' class="on"' if chosen else ""
    return (
        f'<svg{css} width="{_SMALL}" height="{_SMALL}" viewBox="0 0 {_SMALL} {_SMALL}">'
        f"<title>{html.escape(title)}</title>"
        f'<rect class="frame" width="{_SMALL}" height="{_SMALL}" fill="none" stroke="rgba(127,127,127,.4)"/>'
        f"{''.join(paths)}</svg>"
    )


def grid_html(attention: Attention, layer: int, head: int | None) -> str:
    """Every layer (rows) and head (columns) as a small heatmap; the chosen ones outlined."""
    parts = [f'<div class="grid" style="grid-template-columns:auto repeat({attention.heads},{_SMALL}px)">']
    parts.append('<div class="lab"></div>')
    parts += [f'<div class="lab">h{h}</div>' for h in range(attention.heads)]
    for lay in range(attention.layers):
        parts.append(f'<div class="lab">layer {lay}</div>')
        for h in range(attention.heads):
            chosen = lay == layer and (head is None or head == h)
            parts.append(_small_svg(attention.weights[lay, h], f"layer {lay} · head {h}", chosen))
    parts.append("</div>")
    return "".join(parts)


def heatmap_svg(attention: Attention, layer: int, head: int | None) -> str:
    """The chosen head (or the mean over heads) as a large heatmap: queries down, keys across."""
    matrix = attention.matrix(layer, head)
    labels = [html.escape(_label(token)) for token in attention.tokens]
    raw = attention.tokens
    n = len(labels)
    size = _LABEL + n * _CELL
    parts = [
        f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}" font-family="monospace" font-size="10">'
    ]
    for i, label in enumerate(labels):
        y = _LABEL + i * _CELL + _CELL * 0.7
        parts.append(f'<text x="{_LABEL - 4}" y="{y:.1f}" text-anchor="end">{label}</text>')
        x = _LABEL + i * _CELL + _CELL * 0.7
        parts.append(
            f'<text x="{x:.1f}" y="{_LABEL - 4}" text-anchor="start" transform="rotate(-90 {x:.1f} {_LABEL - 4})">{label}</text>'
        )
    for q in range(n):
        for k in range(q + 1):
            weight = float(matrix[q, k])
            title = html.escape(f"{visible(raw[q])!r} ({q}) → {visible(raw[k])!r} ({k}): {weight:.4f}")
            parts.append(
                f'<rect x="{_LABEL + k * _CELL}" y="{_LABEL + q * _CELL}" width="{_CELL}" height="{_CELL}" '
                f'fill="#1c5fd6" fill-opacity="{0.04 + 0.96 * weight:.3f}"><title>{title}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _which(attention: Attention, layer: int, head: int | None) -> str:
    heads = (
        f"mean over {attention.heads} heads" if head is None else f"head {head} of 0–{attention.heads - 1}"
    )
    return f"layer {layer} of 0–{attention.layers - 1} · {heads}"


class AttentionView:
    """`%llm_attention`: the grid and the large heatmap (HTML), or a table of top keys (text)."""

    def __init__(
        self, attention: Attention, *, layer: int | None = None, head: int | None = None, grid: bool = True
    ) -> None:
        self.attention = attention
        self.layer = attention.layer_index(layer)
        self.head = attention.head_index(head)
        self.grid = grid

    def heading(self) -> str:
        a = self.attention
        return f"{a.name} · attention over {len(a.ids)} tokens · {_which(a, self.layer, self.head)}"

    def heatmap_html(self) -> str:
        return (
            f'<div class="llm-att"><style>{_CSS}</style><div class="head">{html.escape(self.heading())}</div>'
            f"{heatmap_svg(self.attention, self.layer, self.head)}"
            '<div class="note">Rows: each token (query); columns: the tokens it attends to (keys). '
            "Darker is more attention; each row sums to 1. Hover a cell for its weight.</div></div>"
        )

    def html(self) -> str:
        a = self.attention
        parts = [
            f'<div class="llm-att"><style>{_CSS}</style><div class="head">{html.escape(self.heading())}</div>',
            heatmap_svg(a, self.layer, self.head),
            '<div class="note">Rows: each token (query); columns: the tokens it attends to (keys). '
            "Darker is more attention; each row sums to 1. Hover a cell for its weight.</div>",
        ]
        if self.grid:
            pooled = "" if len(a.ids) <= GRID_CELLS else f", pooled to {GRID_CELLS} cells a side"
            # A big model's grid is a tall picture: folded, so the chosen head stays in view.
            fold = "" if a.layers * a.heads > GRID_OPEN_UP_TO else " open"
            parts.append(
                f'<details{fold}><summary class="note">Every layer and head ({a.layers} layers × {a.heads} '
                f"heads{pooled}; the one drawn above is outlined)</summary>{grid_html(a, self.layer, self.head)}"
                "</details>"
            )
        parts.append("</div>")
        return "".join(parts)

    def text(self) -> str:
        lines = [self.heading(), "most attended tokens, for each token:"]
        tokens = self.attention.tokens
        for q, top in enumerate(self.attention.top(self.layer, self.head, k=3)):
            keys = " · ".join(f"{visible(tokens[k])} {w:.2f}" for k, w in top)
            lines.append(f"{q:>4} {_label(tokens[q]):<12} → {keys}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


class AttentionExplorer:
    """`%llm_attention --live`: sliders for the layer and head (and a mean-over-heads box) that
    redraw the large heatmap in place, in the widgets' own callbacks (no thread). Shown with the
    full view as text/html and text/plain too, for a saved notebook."""

    def __init__(self, attention: Attention, *, layer: int | None = None, head: int | None = None) -> None:
        import ipywidgets as widgets

        self.view = AttentionView(attention, layer=layer, head=head)
        wide = {"description_width": "initial"}
        self.layer = widgets.IntSlider(
            value=self.view.layer,
            min=0,
            max=attention.layers - 1,
            description="layer",
            style=wide,
            continuous_update=False,
        )
        self.head = widgets.IntSlider(
            value=self.view.head or 0,
            min=0,
            max=attention.heads - 1,
            description="head",
            style=wide,
            continuous_update=False,
        )
        self.mean = widgets.Checkbox(
            value=self.view.head is None, description="mean over heads", indent=False
        )
        self.output = widgets.HTML(value="")
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.head, self.mean]), self.output])
        for control in (self.layer, self.head, self.mean):
            control.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, change: Any = None) -> None:
        head = None if self.mean.value else int(self.head.value)
        self.current = AttentionView(self.view.attention, layer=int(self.layer.value), head=head, grid=False)
        self.output.value = self.current.heatmap_html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(self.widget, self.view, "attention explorer")


__all__ = ["AttentionExplorer", "AttentionView", "grid_html", "heatmap_svg"]
