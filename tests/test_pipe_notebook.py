"""examples/pipelines.ipynb runs offline: hub-only cells fail in one line, the rest runs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from examples import demo

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "pipelines.ipynb"


@pytest.mark.slow
def test_pipelines_notebook_runs_offline() -> None:
    # The kernel starts in examples/: PYTHONPATH makes it import this checkout's llm_magics.
    path = os.pathsep.join(filter(None, [str(NOTEBOOK.parent.parent), os.environ.get("PYTHONPATH")]))
    nb = demo.execute_notebook(NOTEBOOK, timeout=600, env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": path})
    nbformat.validate(nb)
    errors = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                errors[cell.source.splitlines()[0]] = output.ename
                if output.ename == "HubUnreachable" and "--model" not in cell.source:
                    assert "needs the hub once" in output.evalue, output.evalue
    # Only the cells that need the hub (or a task transformers 5 removed) fail, each in one line.
    tagged = {
        cell.source.splitlines()[0]
        for cell in nb.cells
        if "raises-exception" in cell.metadata.get("tags", [])
    }
    assert set(errors) <= tagged, errors
    assert set(errors.values()) <= {"HubUnreachable", "InvalidOption"}, errors
    text = "\n".join(
        output.get("data", {}).get("text/plain", "") + output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert (
        "Once upon a time" in text and "pipeline('text-generation', model=model, tokenizer=tokenizer)" in text
    )
    assert "'generated_text'" in text  # _llm_pipe: the list of dicts the lesson prints
