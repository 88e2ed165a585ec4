"""examples/pipelines.ipynb runs offline as Run All runs it: each hub cell fails in one line, the rest runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from examples import demo
from tests import notebooks

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "pipelines.ipynb"


@pytest.mark.slow
def test_pipelines_notebook_runs_offline() -> None:
    # No allow_errors: an untagged cell that fails stops the run, as it would stop Run All.
    nb = demo.execute_notebook(NOTEBOOK, timeout=600, env={"HF_HUB_OFFLINE": "1"})
    nbformat.validate(nb)
    notebooks.assert_hub_cells_fail_in_one_line(nb)
    text = "\n".join(notebooks.text_of(cell) for cell in notebooks.code_cells(nb))
    assert (
        "Once upon a time" in text and "pipeline('text-generation', model=model, tokenizer=tokenizer)" in text
    )
    assert "'generated_text'" in text  # _llm_pipe: the list of dicts the lesson prints
    # The tasks transformers removed, on the bundled chat model, after the hub cells.
    for task in ("summarization", "translation_en_to_fr"):
        cell = next(c for c in notebooks.code_cells(nb) if c.source.startswith(f"%llm_pipe {task} --max"))
        shown = notebooks.text_of(cell)
        assert f"[{task} · smollm2-135m]" in shown and "\n→ " in shown
    answer = next(
        c for c in notebooks.code_cells(nb) if c.source.startswith("%%llm_pipe question-answering --max")
    )
    shown = notebooks.text_of(answer)
    assert "Q: Where did Ada Lovelace work?" in shown and "[question-answering · smollm2-135m]" in shown
