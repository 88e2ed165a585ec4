"""The model summary card, the registry table and the memory-estimate table."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..engines.transformers.memory import GB, MemoryEstimate
from ..values import EngineInfo, EngineKind

_TABLE = "border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px;margin:4px 0"
_CELL = "padding:2px 10px;border-bottom:1px solid #ddd;text-align:left"


def format_bytes(count: int) -> str:
    if count >= GB:
        return f"{count / GB:.2f} GB"
    return f"{count / 1e6:.1f} MB"


def format_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _html_table(
    header: Sequence[str] | None, rows: Sequence[Sequence[str]], bold_row: int | None = None
) -> str:
    parts = [f'<table style="{_TABLE}">']
    if header:
        parts.append("<tr>" + "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in header) + "</tr>")
    for index, row in enumerate(rows):
        weight = "font-weight:600;" if index == bold_row else ""
        parts.append(
            "<tr>" + "".join(f'<td style="{_CELL};{weight}">{html.escape(c)}</td>' for c in row) + "</tr>"
        )
    parts.append("</table>")
    return "".join(parts)


def _text_table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    all_rows = ([list(header)] if header else []) + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in all_rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class ModelCard:
    """What a loaded engine is and costs: shown after every %llm_load."""

    def __init__(self, info: EngineInfo) -> None:
        self.info = info

    def rows(self) -> list[tuple[str, str]]:
        info = self.info
        rows = [("name", info.name), ("source", info.source)]
        if info.kind is not EngineKind.TRANSFORMERS:
            rows.append(("engine", info.kind.value))
        if info.tokenizer_only:
            rows.append(("weights", "none (tokenizer only)"))
        elif info.kind is not EngineKind.REMOTE:
            rows += [
                ("parameters", format_count(info.parameters)),
                ("dtype", info.dtype),
                ("quantization", info.quantization),
                ("device", info.device),
                ("memory footprint", format_bytes(info.footprint_bytes)),
            ]
        rows += info.details
        rows += [
            ("load time", f"{info.load_seconds:.1f} s"),
            ("context length", f"{info.context_length:,} tokens" if info.context_length else "unknown"),
        ]
        if info.has_chat_template is not None:
            rows.append(("chat template", "yes" if info.has_chat_template else "no (plain fallback)"))
        rows += [("note", note) for note in info.notes]
        return rows

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        rows = self.rows()
        title = f"Loaded {self.info.name}"
        return {
            "text/plain": title + "\n" + _text_table(None, rows),
            "text/html": f"<div><b>{html.escape(title)}</b>{_html_table(None, rows)}</div>",
        }


class RegistryTable:
    """%llm_list: every loaded entry, the active one marked."""

    HEADER = ("", "name", "source", "quantization", "dtype", "device", "footprint")

    def __init__(self, entries: Sequence[EngineInfo], active: str | None) -> None:
        self.entries = list(entries)
        self.active = active

    def _header(self) -> tuple[str, ...]:
        # Engine-specific rows (a pipeline's task …) get a column when any entry has them.
        return self.HEADER + (("details",) if any(e.details for e in self.entries) else ())

    def rows(self) -> list[tuple[str, ...]]:
        details = len(self._header()) > len(self.HEADER)
        return [
            (
                "*" if e.name == self.active else "",
                e.name,
                e.source,
                "tokenizer only" if e.tokenizer_only else e.quantization,
                "-" if e.tokenizer_only else e.dtype,
                "-" if e.tokenizer_only else e.device,
                "-" if e.tokenizer_only else format_bytes(e.footprint_bytes),
            )
            + ((", ".join(f"{key}: {value}" for key, value in e.details),) if details else ())
            for e in self.entries
        ]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if not self.entries:
            text = "No models loaded. Run %llm_load (no argument loads the bundled default)."
            return {"text/plain": text, "text/html": f"<i>{html.escape(text)}</i>"}
        rows = self.rows()
        footer = "* active (used when no NAME is given); switch with %llm_use NAME"
        return {
            "text/plain": _text_table(self._header(), rows) + "\n" + footer,
            "text/html": _html_table(self._header(), rows) + f"<small>{html.escape(footer)}</small>",
        }


class EstimateTable:
    """%llm_load --estimate: the memory-savings table for this model, beside what is free."""

    MODES = (
        ("float32", "float32"),
        ("16-bit", "bfloat16 / float16"),
        ("8bit", "8-bit"),
        ("4bit", "4-bit nf4"),
    )

    def __init__(self, estimate: MemoryEstimate) -> None:
        self.estimate = estimate

    def rows(self) -> list[tuple[str, str, str, str]]:
        e = self.estimate
        base = e.bytes_for("float32")
        budget = e.available_bytes
        return [
            (
                label,
                format_bytes(e.bytes_for(mode)),
                f"{100 * e.bytes_for(mode) / base:.0f}%",
                "yes" if e.bytes_for(mode) <= budget * 0.9 else "no",
            )
            for mode, label in self.MODES
        ]

    def _chosen_row(self) -> int | None:
        for index, (mode, _) in enumerate(self.MODES):
            if mode == self.estimate.chosen:
                return index
        return None

    def _lines(self) -> list[str]:
        e = self.estimate
        return [
            f"{e.name}: {format_count(e.parameters)} parameters, {format_count(e.quantizable)} of them in "
            f"quantizable linear layers (the rest stays {e.rest_dtype} when quantized).",
            f"{format_bytes(e.available_bytes)} {e.available_where}. Weights only: add room for activations "
            "and the key/value cache. No weights were loaded.",
        ]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        header = ("weights in", "memory", "vs float32", "fits")
        rows = self.rows()
        lines = self._lines()
        return {
            "text/plain": "\n".join([lines[0], _text_table(header, rows), lines[1]]),
            "text/html": (
                f"<div><b>Memory estimate</b><br><small>{html.escape(lines[0])}</small>"
                f"{_html_table(header, rows, bold_row=self._chosen_row())}"
                f"<small>{html.escape(lines[1])}</small></div>"
            ),
        }
