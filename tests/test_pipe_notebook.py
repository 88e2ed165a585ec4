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
    # The question a removed pipeline answered, answered by the chat model after the hub cells.
    chat = next(cell for cell in notebooks.code_cells(nb) if cell.source.startswith("%%llm_chat"))
    assert "new tokens" in notebooks.text_of(chat)
