"""The GPU check's report: its JSON as the GPU section of benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS  # noqa: E402

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)) and not value:
        return "none"
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return ".".join(map(str, value))  # a compute capability
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ": ".join(value)  # a choice and its reason
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _flat(value: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and "skipped" not in item:
            out.update(_flat(item, f"{prefix}{key} · "))
        else:
            out[f"{prefix}{key}"] = item.get("skipped", item) if isinstance(item, dict) else item
    return out


def _section_lines(name: str, value: Any) -> list[str]:
    """One section: a line when skipped or failed, a table when its rows share their columns, else
    one figure per line."""
    if isinstance(value, dict) and ("skipped" in value or "failed" in value):
        return [f"- **{name}**: {value.get('skipped') or 'failed: ' + value['failed']}"]
    rows = dict(enumerate(value, 1)) if isinstance(value, list) else value
    table = {
        k: v for k, v in rows.items() if isinstance(v, dict) and "skipped" not in v and "failed" not in v
    }
    columns = [list(v) for v in table.values()]
    if table and all(c == columns[0] for c in columns):
        lines = [
            f"**{name}**",
            "",
            "| | " + " | ".join(columns[0]) + " |",
            "|---|" + "---|" * len(columns[0]),
        ]
        lines += [f"| {k} | " + " | ".join(_cell(v) for v in row.values()) + " |" for k, row in table.items()]
        rest = [
            f"- {k}: {_cell(v.get('skipped') or v.get('failed') or v)}"
            for k, v in rows.items()
            if k not in table
        ]
        return [*lines, *([""] + rest if rest else [])]
    return [f"**{name}**", "", *[f"- {k}: {_cell(v)}" for k, v in _flat(rows).items()]]


def section_markdown(result: dict) -> str:
    """The GPU section of RESULTS.md, from a check's JSON."""
    lines = [
        "## GPU",
        "",
        f"From `benchmarks/gpu_check.py` on {result['machine']['gpu']} ({result['device']}), "
        f"{result['machine']['date']}; torch {result['machine']['torch']}, transformers "
        f"{result['machine']['transformers']}, bitsandbytes {result['machine']['bitsandbytes']}.",
        "",
    ]
    if result["device"] != "cuda":
        lines += ["No figure here comes from a GPU: this run was on a CPU.", ""]
    for name, value in result["sections"].items():
        lines += [*_section_lines(name, value), ""]
    models = ", ".join(
        f"{k}: {_cell(v['parameters'])} parameters" if "parameters" in v else f"{k}: {_cell(v)}"
        for k, v in result.get("models", {}).items()
    )
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("seconds", {}).items())
    lines += [
        f"Models (random weights): {models}.",
        f"Seconds per step (budget {result.get('budget s')} s): {spent}.",
    ]
    return "\n".join(lines) + "\n"


def write_results(section: str, path: Path = RESULTS) -> None:
    """Replace only the text between the GPU markers, atomically."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(f"{head}{START}\n{section}{END}{tail}", encoding="utf-8")
    os.replace(temporary, path)


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
