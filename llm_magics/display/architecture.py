"""The architecture view (`%llm_info`): the module tree as nested `<details>` (no JavaScript),
each block with its class, `print(model)`'s arguments, parameters, dtypes and memory, repeated
layers collapsed; the config's shape above it. Plain text is the same tree, indented."""

from __future__ import annotations

import html
from typing import Any

from ..engines.transformers.plan import Quantization
from ..inside.architecture import Architecture, Block

_CSS = """
.llm-info{font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;line-height:1.4}
.llm-info .head{font-weight:600;margin-bottom:4px}
.llm-info .shape{margin-bottom:6px}
.llm-info details{margin-left:14px}
.llm-info summary{cursor:default;white-space:nowrap}
.llm-info .name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:600}
.llm-info .kind{opacity:.85}
.llm-info .arg{font-family:ui-monospace,monospace;font-size:11px;opacity:.6}
.llm-info .q{background:rgba(245,130,35,.25);border-radius:3px;padding:0 3px;font-size:11px}
.llm-info .leaf{margin-left:28px;white-space:nowrap}
""".strip()


def _size(n_bytes: int) -> str:
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.2f} GiB"
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MiB"
    return f"{n_bytes / 2**10:.1f} KiB" if n_bytes else "0 B"


def _count(n: int) -> str:
    if n >= 10**9:
        return f"{n / 10**9:.2f}B"
    if n >= 10**6:
        return f"{n / 10**6:.1f}M"
    return f"{n:,}"


def _facts(block: Block) -> str:
    facts = [f"{_count(block.parameters)} params", _size(block.bytes)]
    if block.repeat > 1:
        facts.append(f"{_count(block.parameters // block.repeat)} each")
    if block.dtypes:
        facts.append("/".join(block.dtypes))
    if block.tied:
        facts.append("weight tied to the embeddings")
    return " · ".join(facts)


def _name(block: Block) -> str:
    return (block.name or "model") + (f" × {block.repeat}" if block.repeat > 1 else "")


#: Levels of the tree shown open: the model and its body (embeddings, the layers, the norm);
#: a layer's inside is one click away.
OPEN_LEVELS = 2


def _block_html(block: Block, open_levels: int) -> str:
    """A block and its children, folded below `open_levels` levels."""
    quant = (
        f' <span class="q">{html.escape(block.quantization.value)}</span>'
        if block.quantization is not Quantization.NONE and not block.children
        else ""
    )
    arg = f' <span class="arg">({html.escape(block.detail)})</span>' if block.detail else ""
    summary = (
        f'<span class="name">{html.escape(_name(block))}</span> <span class="kind">{html.escape(block.kind)}</span>'
        f"{arg}{quant} · {html.escape(_facts(block))}"
    )
    if not block.children:
        return f'<div class="leaf">{summary}</div>'
    inner = "".join(_block_html(child, open_levels - 1) for child in block.children)
    return f"<details{' open' if open_levels > 0 else ''}><summary>{summary}</summary>{inner}</details>"


def _shape_line(arch: Architecture) -> str:
    s = arch.shape
    parts = [
        ("layers", s.layers),
        ("heads", s.heads),
        ("key/value heads", s.kv_heads),
        ("hidden size", s.hidden),
        ("MLP size", s.intermediate),
        ("vocabulary", s.vocabulary),
        ("context", s.context),
    ]
    return " · ".join(f"{label} {value:,}" for label, value in parts if value is not None)


class ArchitectureView:
    def __init__(self, arch: Architecture) -> None:
        self.arch = arch

    def heading(self) -> str:
        a = self.arch
        return f"{a.name} · {a.model_class} · {a.parameters:,} parameters · {_size(a.bytes)}"

    def html(self) -> str:
        return (
            f'<div class="llm-info"><style>{_CSS}</style><div class="head">{html.escape(self.heading())}</div>'
            f'<div class="shape">{html.escape(_shape_line(self.arch))}</div>'
            f"{_block_html(self.arch.root, OPEN_LEVELS)}</div>"
        )

    def text(self) -> str:
        lines = [self.heading(), _shape_line(self.arch)]

        def walk(block: Block, depth: int) -> None:
            quant = (
                f" [{block.quantization.value}]"
                if block.quantization is not Quantization.NONE and not block.children
                else ""
            )
            arg = f"({block.detail})" if block.detail else ""
            lines.append(f"{'  ' * depth}{_name(block)}: {block.kind}{arg}{quant} · {_facts(block)}")
            for child in block.children:
                walk(child, depth + 1)

        walk(self.arch.root, 0)
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


__all__ = ["ArchitectureView"]
