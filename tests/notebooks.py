"""Executing the example notebooks (offline, or against a hub) and reading them as a student
would: hub cells, tables and the claim sentences."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest

from examples import demo
from llm_magics.lessons import claims

HUB_TAG = "raises-exception"


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def is_tagged(cell: nbformat.NotebookNode) -> bool:
    return HUB_TAG in cell.metadata.get("tags", [])


def errors_of(cell: nbformat.NotebookNode) -> list[Any]:
    return [output for output in cell.outputs if output.output_type == "error"]


def text_of(cell: nbformat.NotebookNode) -> str:
    return "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in cell.outputs
    )


def assert_hub_cells_fail_in_one_line(nb: nbformat.NotebookNode) -> None:
    """Offline, each tagged cell failed in one line naming the model it needs; no other cell failed."""
    tagged = [cell for cell in code_cells(nb) if is_tagged(cell)]
    assert tagged, "no hub cell in this notebook"
    for cell in code_cells(nb):
        errors = errors_of(cell)
        if not is_tagged(cell):
            assert errors == [], (cell.source, [f"{e.ename}: {e.evalue}" for e in errors])
            continue
        assert len(errors) == 1, cell.source
        error = errors[0]
        assert error.ename == "HubUnreachable", (cell.source, error.ename, error.evalue)
        # One line: the exception's _render_traceback_ is all the user sees.
        assert len(error.traceback) == 1 and "\n" not in error.evalue, error.traceback
        model = re.search(r"--model (\S+)", cell.source)
        if model:
            assert error.evalue.startswith(f"{model.group(1)} is not in the local Hugging Face cache"), (
                error.evalue
            )
        else:
            assert re.search(r" uses \S+/\S+ by default .* needs the hub once", error.evalue), error.evalue
    # Every cell ran, those after the hub cells included.
    assert all(cell.execution_count for cell in code_cells(nb))


def assert_every_cell_ran(nb: nbformat.NotebookNode) -> None:
    """With a hub, every cell ran with no error, the tagged ones included, and each tagged cell
    showed something (its result, or its code and result)."""
    for cell in code_cells(nb):
        assert cell.execution_count, cell.source
        assert errors_of(cell) == [], (cell.source, [f"{e.ename}: {e.evalue}" for e in errors_of(cell)])
        stderr = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
        assert "Traceback" not in stderr, (cell.source, stderr)
        if is_tagged(cell):
            assert any(o.output_type == "display_data" for o in cell.outputs), cell.source


def execute_against_hub(
    path: Path, endpoint: str, home: Path, *, proxy: str, timeout: int = 900
) -> nbformat.NotebookNode:
    """Run a notebook as Run All would with a hub: a fresh kernel whose hub client talks to
    `endpoint` (read once, at its import: so it is in the kernel's environment) with its cache in
    `home`, no token, and every other HTTP host behind `proxy`."""
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    with pytest.MonkeyPatch.context() as patch:
        # The session's own settings (a token, a cache elsewhere) must not reach the kernel.
        for name in [n for n in os.environ if n.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))]:
            patch.delenv(name)
        patch.delenv("no_proxy", raising=False)
        return demo.execute_notebook(path, timeout=timeout, env=env)


class _Tables(HTMLParser):
    """The cells of every <table> in an HTML fragment, row by row, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


NUMBERS = ("footprint (MB)", "vs float32", "tokens/s", "perplexity")


def measured_rows(nb: nbformat.NotebookNode) -> tuple[list[dict[str, Any]], int]:
    """The rows of the DataFrame the notebook showed with a perplexity column (from its HTML, as
    Colab and JupyterLab show it), and the index of the cell that showed it."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            page = output.get("data", {}).get("text/html", "")
            if "dataframe" not in page:
                continue
            parser = _Tables()
            parser.feed(page)
            header, *body = parser.tables[0]
            if "perplexity" not in header:
                continue
            rows = []
            for line in body:
                row: dict[str, Any] = dict(zip(header[1:], line[1:], strict=True))  # [0]: the index
                rows.append({key: float(value) if key in NUMBERS else value for key, value in row.items()})
            return rows, index
    raise AssertionError("no measured table in the notebook")


def printed_claims(nb: nbformat.NotebookNode, after: int) -> list[str]:
    """The claim sentences printed by the first code cell after cell `after`."""
    cell = next(cell for cell in nb.cells[after + 1 :] if cell.cell_type == "code")
    return [line for line in text_of(cell).splitlines() if line.strip()]


def assert_claims_agree_with_the_table(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Each printed sentence follows from the table's numbers, recomputed here and checked by hand."""
    rows, at = measured_rows(nb)
    sentences = printed_claims(nb, at)
    assert sentences == claims.claim_sentences(rows)
    by_mode = {row["mode"]: row for row in rows}
    base = by_mode["float32"]
    for sentence in sentences:
        if match := re.match(r"Memory: (\S+) used (\d+)% of float32's memory", sentence):
            mode, share = match.group(1), int(match.group(2))
            assert share == by_mode[mode]["vs float32"]
            # The share was computed before the footprints were rounded to 0.1 MB.
            assert abs(share - 100 * by_mode[mode]["footprint (MB)"] / base["footprint (MB)"]) <= 0.6
            if mode == "4bit":
                met = abs(share - 25) <= 5
                assert ("holds" in sentence) == met and ("not met" in sentence) == (share > 30), sentence
        elif match := re.match(
            r"Speed: (\S+) decoded ([\d.]+) tokens/s against float32's ([\d.]+)", sentence
        ):
            mode = match.group(1)
            assert float(match.group(2)) == by_mode[mode]["tokens/s"]
            assert float(match.group(3)) == base["tokens/s"]
            fastest = max(rows, key=lambda row: row["tokens/s"])["mode"]
            assert sentence.endswith(f"the fastest mode here was {fastest}."), sentence
            assert ("does not hold" in sentence) == (by_mode[mode]["tokens/s"] < 0.9 * base["tokens/s"])
        elif match := re.match(
            r"Quality: (\S+) perplexity ([\d.]+) against float32's ([\d.]+) \(([+-]\d+)%\)", sentence
        ):
            mode = match.group(1)
            assert float(match.group(2)) == by_mode[mode]["perplexity"]
            change = by_mode[mode]["perplexity"] / base["perplexity"] - 1
            assert abs(int(match.group(4)) - 100 * change) <= 0.51
            assert ("more than the lesson's 1-3%" in sentence) == (change > 0.03), sentence
        else:
            raise AssertionError(f"a sentence no number checks: {sentence}")
    return rows
