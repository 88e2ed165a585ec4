"""The example notebooks: committed clean, executed in a real kernel, exported to HTML.

Execution goes through `examples/demo.py` (what `make demo` runs), in a fresh ipykernel of this
Python; the session's LLM_MAGICS_CACHE_DIR reaches the kernel, so the bundled model is converted
once per test run.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import io
import re
from pathlib import Path

import nbformat
import pytest

from examples import _build_notebooks, demo
from tests import notebooks
from tests.frontend.lab import require

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_the_notebooks_are_there() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "open_llms_lesson.ipynb",
        "pipelines.ipynb",
        "quantization.ipynb",
        "quickstart.ipynb",
        "tokenization_lesson.ipynb",
    ]


def test_committed_notebooks_match_their_generator() -> None:
    assert _build_notebooks.main(["--check"]) == 0, "run: python examples/_build_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_are_valid_and_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    # Every notebook opens with its title and the guarded install cell.
    assert nb.cells[0].source.startswith("# ")
    assert "google.colab" in code[0].source and "%pip install" in code[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_install_cell_installs_only_what_colab_lacks_from_the_uploaded_wheel(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cell = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    installs = [line.strip() for line in cell.splitlines() if "%pip install" in line]
    assert installs[0] == "%pip install -q {wheels[-1]}"
    assert "/content/ipython_llm_magics-*.whl" in cell and "pip wheel . --no-deps -w dist" in cell
    # Nothing Colab ships is named, so nothing of Colab's is upgraded and no restart is needed.
    named = " ".join(installs)
    for shipped in ("torch", "transformers", "accelerate", "ipython ", "ipywidgets", "-U", "--upgrade"):
        assert shipped not in named, shipped
    assert ("bitsandbytes" in named) == ("--quant" in _all_source(nb)), "bitsandbytes only where it quantizes"
    # No address while the repository has none: no badge, no URL.
    assert "://" not in cell and "colab-badge" not in nb.cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_only_cells_whose_model_needs_the_hub_are_tagged_to_run_on(path: Path) -> None:
    """`raises-exception` lets Run All go past a cell that fails offline; it must hide nothing else."""
    nb = nbformat.read(path, as_version=4)
    for cell in notebooks.code_cells(nb):
        assert notebooks.is_tagged(cell) == _build_notebooks.needs_hub(cell.source), cell.source
    for cell in nb.cells:
        if cell.cell_type == "code" and notebooks.is_tagged(cell):
            above = nb.cells[nb.cells.index(cell) - 1]
            assert above.cell_type == "markdown" and "hub" in above.source, above.source


def test_the_hub_rule_knows_local_models_from_hub_ids() -> None:
    from llm_magics.engines.transformers.source import ALIASES

    assert set(_build_notebooks.LOCAL_MODELS) == set(ALIASES)
    needs = _build_notebooks.needs_hub
    assert needs("%llm_pipe sentiment-analysis I love it") and needs("%llm_pipe fill-mask --model gpt2 a")
    assert needs("%llm_load HuggingFaceTB/SmolLM2-360M-Instruct --quant 4bit")
    assert not needs("%llm_pipe text-generation --max-new-tokens 20 Once upon a time")
    assert not needs("%llm_load --quant 4bit --as smol") and not needs(
        "%llm_load $tiny_folder --tokenizer-only"
    )
    assert not needs("%llm_pipe fill-mask --model smollm2-135m a") and not needs("%tokens --model gpt2 a")


def _all_source(nb: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in nb.cells)


def test_with_a_repository_address_the_notebooks_get_a_badge_and_install_from_it(monkeypatch) -> None:
    monkeypatch.setattr(_build_notebooks, "REPOSITORY", "someone/llm_magics")
    nb = _build_notebooks.quickstart()
    assert "colab.research.google.com/github/someone/llm_magics/blob/main/examples/" in nb.cells[0].source
    assert (
        '%pip install -q "ipython-llm-magics @ git+https://github.com/someone/llm_magics"'
        in nb.cells[1].source
    )


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`examples/demo.py --out TMP`, as `make demo` runs it: the executed notebook and what it printed."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert demo.main(["--out", str(out)]) == 0
    return out, printed.getvalue()


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{output.ename}: {output.evalue}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def _replies(nb: nbformat.NotebookNode) -> list[str]:
    """The chat replies' text as the notebook keeps it (the footer line dropped)."""
    return [
        demo.plain(output).strip().rsplit("\n", 1)[0].strip() for output in demo.outputs_of(nb, "%%llm_chat")
    ]


@pytest.mark.slow
def test_make_demo_executes_the_quickstart_and_prints_replies_and_counts(
    quickstart_run: tuple[Path, str],
) -> None:
    out, printed = quickstart_run
    nb = nbformat.read(out / "quickstart.ipynb", as_version=4)
    nbformat.validate(nb)
    assert _errors(nb) == []
    assert all(cell.execution_count for cell in nb.cells if cell.cell_type == "code")
    replies = _replies(nb)
    assert len(replies) == 2 and all(replies), replies
    for reply in replies:
        assert reply in printed
    assert re.search(r"\d+ tokens · \d+ characters", printed), printed
    assert (out / "quickstart.html").is_file()


@pytest.mark.slow
def test_html_export_keeps_the_reply_and_the_token_view(quickstart_run: tuple[Path, str]) -> None:
    out, _ = quickstart_run
    nb = nbformat.read(out / "quickstart.ipynb", as_version=4)
    page = (out / "quickstart.html").read_text(encoding="utf-8")
    for reply in _replies(nb):
        # The reply is rendered Markdown: compare its first words, which no markup interrupts.
        first_words = " ".join(reply.split()[:4])
        assert html.escape(first_words, quote=False) in page, first_words
    assert "llm-magics-reply" in page
    # The token view: its scoped style, coloured token spans and the footer counts.
    assert 'class="llm-tok"' in page
    assert re.search(r'class="t a[01]', page)
    assert re.search(r"\d+ tokens · \d+ characters", page)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tokenization_lesson", "quantization"])
def test_lessons_execute_without_errors(name: str, tmp_path: Path) -> None:
    if name == "quantization" and importlib.util.find_spec("bitsandbytes") is None:
        require("bitsandbytes", "the quantization lesson needs the [quant] extra (`make test` installs it)")
    nb = demo.execute_notebook(EXAMPLES / f"{name}.ipynb", timeout=900)
    nbformat.validate(nb)
    assert _errors(nb) == []
    text = "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/html", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    if name == "quantization":
        # One measured row per mode, all in the final table, and sentences that follow from it.
        rows = notebooks.assert_claims_agree_with_the_table(nb)
        assert [row["mode"] for row in rows] == ["float32", "bfloat16", "8bit", "4bit"]
        assert "usually *slower*" not in _all_source(nb)
    else:
        assert "tiny-bpe" in text and 'class="llm-tok"' in text


@pytest.fixture(scope="module")
def open_llms_lesson() -> nbformat.NotebookNode:
    """examples/open_llms_lesson.ipynb run offline as Run All runs it: tagged hub cells fail, the rest goes on."""
    nb = demo.execute_notebook(EXAMPLES / "open_llms_lesson.ipynb", timeout=900)
    nbformat.validate(nb)
    return nb


def _cell(nb: nbformat.NotebookNode, start: str) -> nbformat.NotebookNode:
    return next(cell for cell in notebooks.code_cells(nb) if cell.source.startswith(start))


@pytest.mark.slow
def test_open_llms_lesson_runs_past_its_hub_cells_offline(open_llms_lesson: nbformat.NotebookNode) -> None:
    nb = open_llms_lesson
    notebooks.assert_hub_cells_fail_in_one_line(nb)
    # The cells after the hub cells ran: the bundled model continued the story, with its code.
    story = notebooks.text_of(_cell(nb, "%llm_pipe text-generation --max-new-tokens 20 --code"))
    assert (
        "Once upon a time" in story
        and "pipeline('text-generation', model=model, tokenizer=tokenizer)" in story
    )
    assert len(story.split("Once upon a time")[-1].split()) > 3
    tokens = notebooks.text_of(_cell(nb, "%tokens --code --ids Hello world"))
    assert "AutoTokenizer" in tokens and "tokenizer.decode(ids)" in tokens
    assert "2 tokens · 11 characters" in tokens


@pytest.mark.slow
def test_open_llms_lesson_checks_its_claims_against_its_own_numbers(
    open_llms_lesson: nbformat.NotebookNode,
) -> None:
    rows = notebooks.assert_claims_agree_with_the_table(open_llms_lesson)
    expected = ["float32", "bfloat16"] + (
        ["8bit", "4bit"] if importlib.util.find_spec("bitsandbytes") else []
    )
    assert [row["mode"] for row in rows] == expected
    # The 4-bit load shows the recipe with the compute dtype chosen here, and why.
    load = notebooks.text_of(_cell(open_llms_lesson, "%llm_load --quant 4bit"))
    assert 'bnb_4bit_quant_type="nf4"' in load and "bnb_4bit_use_double_quant=True" in load
    assert re.search(r"note +compute dtype \w+: ", load), load
    # And what a T4 would choose, which a CPU cannot show on a card.
    assert "on Colab's T4:       float16 (CUDA compute capability 7.5 (< 8.0) has no bfloat16 units)" in (
        notebooks.text_of(_cell(open_llms_lesson, "import torch"))
    )


@pytest.mark.slow
def test_open_llms_lesson_chats_and_samples_with_llm_next(open_llms_lesson: nbformat.NotebookNode) -> None:
    chat = notebooks.text_of(_cell(open_llms_lesson, "%%llm_chat smol-4bit --code"))
    assert "apply_chat_template" in chat and "TextStreamer" in chat and "new tokens" in chat
    steps = notebooks.text_of(_cell(open_llms_lesson, "%llm_next --model smollm2-135m --steps 6 --sample"))
    assert "seed 0" in steps and len(re.findall(r"rank \d+", steps)) == 6
    top_p = notebooks.text_of(_cell(open_llms_lesson, "%llm_next --model smollm2-135m --temperature 1.5"))
    assert "top-p 0.9" in top_p
