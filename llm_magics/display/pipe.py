"""`%llm_pipe` results as people read them, and `--code` as a plain code block.

Labels get score bars, named entities are highlighted in the text, fill-mask candidates show in
their sentence with their probability, answers are highlighted in their context, generated text
shows its prompt dimmed. Self-contained HTML (inline CSS, no JavaScript), everything from a user
or a model escaped; a plain-text form for terminals and saved notebooks.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..engines.pipeline.names import PipeTask, TaskName
from .tokens import visible

_BOX = "font-family:system-ui,sans-serif;font-size:13px;margin:4px 0"
_MUTED = "color:#6b7280"
# Entity colours, cycled by entity group in order of first appearance.
_ENTITY_COLOURS = ("#bfdbfe", "#bbf7d0", "#fde68a", "#fecaca", "#ddd6fe", "#fbcfe8", "#c7d2fe")
_BAR_WIDTH = 20


def _text(value: Any) -> str:
    """Escaped text, with control and direction-changing characters made visible (never emitted)."""
    out = []
    for char in str(value):
        shown = visible(char) if char not in " \n\t" else char
        out.append(html.escape(shown))
    return "".join(out)


def _plain(value: Any) -> str:
    return "".join(visible(char) if char not in " \n\t" else char for char in str(value))


def _score(value: Any) -> float:
    return float(value)  # numpy float32 in token-classification output


def _bar_html(score: float) -> str:
    percent = max(0.0, min(1.0, score)) * 100
    return (
        '<span style="display:inline-block;width:160px;height:10px;background:#e5e7eb;'
        f'border-radius:3px;vertical-align:middle"><span style="display:block;width:{percent:.1f}%;'
        'height:10px;background:#2563eb;border-radius:3px"></span></span>'
    )


def _bar_text(score: float) -> str:
    filled = round(max(0.0, min(1.0, score)) * _BAR_WIDTH)
    return "█" * filled + "░" * (_BAR_WIDTH - filled)


def _score_rows(rows: Sequence[tuple[str, float]]) -> tuple[str, str]:
    """(html, text) for labelled scores, one row each, with bars."""
    width = max((len(_plain(label)) for label, _ in rows), default=0)
    text = "\n".join(f"  {_plain(label).ljust(width)}  {_bar_text(s)}  {s:.4f}" for label, s in rows)
    cells = "".join(
        f'<tr><td style="padding:1px 10px 1px 0">{_text(label)}</td><td>{_bar_html(s)}</td>'
        f'<td style="padding-left:8px;font-variant-numeric:tabular-nums">{s:.4f}</td></tr>'
        for label, s in rows
    )
    return f'<table style="border-collapse:collapse">{cells}</table>', text


def _highlight(text: str, spans: Sequence[tuple[int, int, str]], colours: dict[str, str]) -> tuple[str, str]:
    """`text` with `(start, end, label)` spans marked: coloured in HTML, [brackets/LABEL] in text."""
    parts_html, parts_text, at = [], [], 0
    for start, end, label in sorted(spans):
        if start < at or end <= start:
            continue  # overlapping or empty: keep the first
        parts_html.append(_text(text[at:start]))
        parts_text.append(_plain(text[at:start]))
        colour = colours.get(label, "#fde68a")
        # A chat model's answer has no score: no label to write above it.
        sup = (
            f'<sup style="font-size:9px;font-weight:600;margin-left:2px">{_text(label)}</sup>'
            if label
            else ""
        )
        parts_html.append(
            f'<mark style="background:{colour};border-radius:3px;padding:0 2px">{_text(text[start:end])}{sup}</mark>'
        )
        parts_text.append(
            f"[{_plain(text[start:end])}]{_plain(label)}" if label else f"[{_plain(text[start:end])}]"
        )
        at = end
    parts_html.append(_text(text[at:]))
    parts_text.append(_plain(text[at:]))
    return "".join(parts_html), "".join(parts_text)


class PipeResult:
    """One `%llm_pipe` run: its task, the inputs, and the pipeline's raw output for each input.

    `outputs[i]` is what the pipeline gave for `inputs[i]`; `context` is the question-answering
    context.
    """

    def __init__(
        self,
        task: PipeTask,
        inputs: Sequence[str],
        outputs: Sequence[Any],
        model: str,
        context: str | None = None,
    ) -> None:
        self.task, self.inputs, self.outputs, self.model, self.context = (
            task,
            list(inputs),
            list(outputs),
            model,
            context,
        )

    def __repr__(self) -> str:
        return f"<PipeResult {self.task}: {len(self.inputs)} input(s)>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        blocks_html, blocks_text = [], []
        for text, output in zip(self.inputs, self.outputs, strict=True):
            body_html, body_text = self._one(text, output)
            blocks_html.append(
                f'<div style="border-left:3px solid #2563eb;padding:4px 10px;margin:4px 0">{body_html}</div>'
            )
            blocks_text.append(body_text)
        footer = f"{self.task} · {self.model}"
        return {
            "text/plain": "\n\n".join(blocks_text) + f"\n[{footer}]",
            "text/html": (
                f'<div style="{_BOX}">{"".join(blocks_html)}'
                f'<div style="{_MUTED};font-size:11px">{_text(footer)}</div></div>'
            ),
        }

    # -- one input, by task ---------------------------------------------------------------------

    def _one(self, text: str, output: Any) -> tuple[str, str]:
        render = {
            TaskName.TEXT_CLASSIFICATION: self._labels,
            TaskName.ZERO_SHOT_CLASSIFICATION: self._zero_shot,
            TaskName.FILL_MASK: self._fill_mask,
            TaskName.TOKEN_CLASSIFICATION: self._entities,
            TaskName.QUESTION_ANSWERING: self._answer,
            TaskName.TEXT_GENERATION: self._generated,
            TaskName.SUMMARIZATION: self._generated,
            TaskName.TRANSLATION: self._generated,
        }[self.task.name]
        return render(text, output)

    def _quote(self, text: str) -> tuple[str, str]:
        return f'<div style="margin-bottom:3px">{_text(text)}</div>', f"{_plain(text)}"

    def _labels(self, text: str, output: Any) -> tuple[str, str]:
        items = output if isinstance(output, list) else [output]
        quote_html, quote_text = self._quote(text)
        rows_html, rows_text = _score_rows([(item["label"], _score(item["score"])) for item in items])
        return quote_html + rows_html, quote_text + "\n" + rows_text

    def _zero_shot(self, text: str, output: Any) -> tuple[str, str]:
        quote_html, quote_text = self._quote(text)
        rows = list(zip(output["labels"], map(_score, output["scores"]), strict=True))
        rows_html, rows_text = _score_rows(rows)
        return quote_html + rows_html, quote_text + "\n" + rows_text

    def _fill_mask(self, text: str, output: Any) -> tuple[str, str]:
        # One list of candidates per mask; a single mask gives the list itself.
        groups = output if output and isinstance(output[0], list) else [output]
        parts_html, parts_text = [self._quote(text)[0]], [_plain(text)]
        for number, candidates in enumerate(groups, 1):
            if len(groups) > 1:
                parts_html.append(f'<div style="{_MUTED}">mask {number}</div>')
                parts_text.append(f"  mask {number}")
            rows = [(str(c["token_str"]).strip(), _score(c["score"])) for c in candidates]
            width = max((len(_plain(word)) for word, _ in rows), default=0)
            cells = []
            for candidate, (word, score) in zip(candidates, rows, strict=True):
                cells.append(
                    f'<tr><td style="padding:1px 10px 1px 0"><b>{_text(word)}</b></td><td>{_bar_html(score)}</td>'
                    f'<td style="padding:0 8px;font-variant-numeric:tabular-nums">{score:.2%}</td>'
                    f'<td style="{_MUTED}">{_text(candidate["sequence"])}</td></tr>'
                )
                parts_text.append(f"  {_plain(word).ljust(width)}  {_bar_text(score)}  {score:6.2%}")
            parts_html.append(f'<table style="border-collapse:collapse">{"".join(cells)}</table>')
        return "".join(parts_html), "\n".join(parts_text)

    def _entities(self, text: str, output: Any) -> tuple[str, str]:
        entities = list(output)
        labels = []
        for entity in entities:
            label = str(entity.get("entity_group", entity.get("entity", "")))
            if label not in labels:
                labels.append(label)
        colours = {label: _ENTITY_COLOURS[i % len(_ENTITY_COLOURS)] for i, label in enumerate(labels)}
        spans = [
            (int(e["start"]), int(e["end"]), str(e.get("entity_group", e.get("entity", ""))))
            for e in entities
            if e.get("start") is not None and e.get("end") is not None
        ]
        marked_html, marked_text = _highlight(text, spans, colours)
        table = "".join(
            f'<tr><td style="padding:1px 10px 1px 0"><mark style="background:{colours[label]}">'
            f'{_text(e["word"])}</mark></td><td style="padding-right:10px">{_text(label)}</td>'
            f'<td style="font-variant-numeric:tabular-nums">{_score(e["score"]):.4f}</td></tr>'
            for e in entities
            for label in [str(e.get("entity_group", e.get("entity", "")))]
        )
        listing = "\n".join(
            f"  {_plain(e.get('entity_group', e.get('entity', '')))}: {_plain(e['word'])} ({_score(e['score']):.4f})"
            for e in entities
        )
        none = f'<div style="{_MUTED}">no entities found</div>' if not entities else ""
        return (
            f'<div style="line-height:1.9">{marked_html}</div>{none}'
            f'<table style="border-collapse:collapse;margin-top:4px">{table}</table>',
            marked_text + ("\n" + listing if listing else "\n  no entities found"),
        )

    def _answer(self, question: str, output: Any) -> tuple[str, str]:
        answers = output if isinstance(output, list) else [output]
        context = self.context or ""
        # A chat model's answer has no score, and no place when it does not quote the context.
        spans = [
            (int(a["start"]), int(a["end"]), f"{_score(a['score']):.2f}" if a["score"] is not None else "")
            for a in answers
            if a.get("start") is not None and a.get("end") is not None
        ]
        marked_html, marked_text = _highlight(context, spans, {})
        answer_lines = "; ".join(
            _plain(a["answer"]) + (f" ({_score(a['score']):.4f})" if a["score"] is not None else "")
            for a in answers
        )
        return (
            f"<div><b>Q:</b> {_text(question)}</div>"
            f"<div><b>A:</b> {'; '.join(_text(a['answer']) for a in answers)}</div>"
            f'<div style="line-height:1.9;margin-top:3px">{marked_html}</div>',
            f"Q: {_plain(question)}\nA: {answer_lines}\n{marked_text}",
        )

    def _generated(self, prompt: str, output: Any) -> tuple[str, str]:
        items = output if isinstance(output, list) else [output]
        parts_html: list[str] = []
        parts_text: list[str] = []
        for item in items:
            key = next((k for k in ("generated_text", "summary_text", "translation_text") if k in item), None)
            produced = item[key] if key is not None else str(item)
            if not isinstance(produced, str):  # chat-style output: the messages
                produced = str(produced)
            if key == "generated_text" and produced.startswith(prompt):
                shown_prompt, new = prompt, produced[len(prompt) :]
            else:
                shown_prompt, new = "", produced
            # A summary or a translation is a new text: the input above it, then an arrow.
            rewritten = key not in (None, "generated_text") and len(parts_text) == 0
            if rewritten:
                parts_html.append(f'<div style="{_MUTED}">{_text(prompt)}</div>')
            parts_html.append(
                "<div style='white-space:pre-wrap;font-family:monospace'>"
                f"<span style='opacity:0.55'>{_text(shown_prompt)}</span>{_text(new)}</div>"
            )
            shown = _plain(shown_prompt) + _plain(new)
            parts_text.append(f"{_plain(prompt)}\n→ {shown}" if rewritten else shown)
        return "".join(parts_html), "\n---\n".join(parts_text)


#: `--code`'s title on a model a server runs: there are no weights here, so it is the `openai` call.
OPENAI_CLIENT = "The same with the openai client:"


class CodeBlock:
    """`--code`: the plain transformers code behind a magic, as text and as a plain `<pre>`."""

    def __init__(self, code: str, title: str = "The same in plain transformers:") -> None:
        self.code, self.title = code, title

    def __repr__(self) -> str:
        return self.code

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": f"# {self.title}\n{self.code}",
            "text/html": (
                f'<div style="{_BOX}"><div style="{_MUTED}">{html.escape(self.title)}</div>'
                '<pre style="background:#f6f8fa;border:1px solid #e5e7eb;border-radius:4px;padding:8px;'
                f'overflow-x:auto;margin:2px 0"><code>{html.escape(self.code)}</code></pre></div>'
            ),
        }


__all__ = ["OPENAI_CLIENT", "CodeBlock", "PipeResult"]
