"""The front ends in headless Chromium.

The quickstart in JupyterLab: run all cells, see the reply and the tokens. The notebook served is
a copy of examples/quickstart.ipynb with a few cells appended that show hostile text through
%tokens, a chat conversation and the reply view; a dialog opened by any of them fails the test.
The screenshot lands in build/quickstart-jupyterlab.png.

`%tokens --live` in Notebook 7 and in classic Notebook 6 (whose widget manager, widgetsnbextension
3.6.10, speaks widgets 7 as Colab's does), each with a kernel from Colab's package set (ipywidgets
7.7.1, the installed wheel): the widget renders and its view follows typing, once per pause.
`make test-frontends` builds those environments and names them in LLM_MAGICS_COLAB_PYTHON and
LLM_MAGICS_CLASSIC_PYTHON. Screenshots: build/live-notebook7.png, build/live-notebook6.png.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from tests.frontend.lab import chromium, find_chromium, jupyter_server, jupyterlab, require

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "build" / "quickstart-jupyterlab.png"
HOSTILE = "<img src=x onerror=alert(1)>"
RUN_TIMEOUT_MS = 600_000

HOSTILE_CELLS = [
    new_markdown_cell("## Hostile text (added by tests/test_browser.py)"),
    new_code_cell("%llm_load"),
    new_code_cell(f"%tokens {HOSTILE}"),
    new_code_cell(f"%%llm_chat --new --max-new-tokens 16\nRepeat exactly: {HOSTILE}"),
    new_code_cell("%llm_history"),
    # The reply view itself, given the text a model could produce: deterministic, unlike the model.
    new_code_cell(f"from llm_magics.display.chat import ReplyView\nReplyView({HOSTILE!r} + ' and **bold**')"),
    new_code_cell("%llm_unload --all\nprint('all cells ran')"),
]


def _notebook_with_hostile_cells(folder: Path) -> str:
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    nb.cells.extend(HOSTILE_CELLS)
    nbformat.validate(nb)
    nbformat.write(nb, folder / "quickstart.ipynb")
    return "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.browser
def test_quickstart_runs_in_jupyterlab_and_shows_reply_and_tokens(tmp_path: Path) -> None:
    find_chromium()  # skips (or fails under CI) before starting anything
    root = tmp_path / "notebooks"
    root.mkdir()
    name = _notebook_with_hostile_cells(root)
    dialogs: list[str] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with jupyterlab(root, tmp_path) as lab, chromium(tmp_path / "profile") as context:
        timings["lab started"] = time.perf_counter() - started
        page = context.new_page()

        def on_dialog(dialog) -> None:
            dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(lab.page_url(name))
        # Open, with its kernel started: the status bar reads "Python 3 (ipykernel) | Idle".
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=120_000)
        timings["notebook open"] = time.perf_counter() - started

        # Focus the notebook (Run All acts on the current one), then Run → Run All Cells.
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        page.locator(".jp-InputPrompt", has_text="[*]").first.wait_for(timeout=30_000)

        # The first reply streams: while its footer says "generating…" part of it is already on
        # the page, and it grows until the final footer replaces that word.
        streaming = page.locator(".jp-OutputArea-output .llm-magics-reply").first
        streaming.wait_for(timeout=RUN_TIMEOUT_MS)
        timings["first reply shown"] = time.perf_counter() - started
        seen: list[str] = []
        deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            text = streaming.inner_text()
            if not seen or text != seen[-1]:
                seen.append(text)
            if "generating…" not in text:
                break
            page.wait_for_timeout(20)
        partial = [text for text in seen if "generating…" in text and text.replace("generating…", "").strip()]
        assert partial, f"no partial reply was ever visible: {seen}"
        assert "generating…" not in seen[-1]

        # Then the rest: Run All stops at the first error, so wait for the last cell's output or
        # an error.
        done = page.locator(".jp-OutputArea-output").filter(has_text="all cells ran")
        error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        done.or_(error).first.wait_for(timeout=RUN_TIMEOUT_MS)
        timings["all cells ran"] = time.perf_counter() - started
        assert error.count() == 0, error.first.inner_text()
        replies = page.locator(".jp-OutputArea-output .llm-magics-reply")
        assert replies.count() >= 3
        first_reply = replies.first.inner_text()
        assert len(first_reply.split()) > 3, first_reply
        tokens = page.locator(".jp-OutputArea-output .llm-tok .t")
        assert tokens.count() > 5
        assert tokens.first.is_visible()
        colour = tokens.first.evaluate("span => getComputedStyle(span).backgroundColor")
        assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour

        # Hostile text is shown as text and never becomes an element; no dialog ever opened.
        outputs = page.locator(".jp-OutputArea-output")
        assert outputs.locator("img[src='x']").count() == 0
        assert page.get_by_text(HOSTILE, exact=False).count() >= 2  # the reply view and the history
        assert page.locator(".jp-OutputArea-output .llm-magics-reply strong").count() >= 1
        assert dialogs == []

        # The screenshot a teacher would show: from "3. Chat" down to the token view, below
        # JupyterLab's menu and toolbar (the file browser hidden).
        page.keyboard.press("Control+b")
        page.wait_for_timeout(300)
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.filter(has_text="3. Chat").first.evaluate("cell => cell.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        box = cells.filter(has=page.locator(".llm-tok")).first.bounding_box()
        assert box is not None
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOT),
            clip={"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"] + 16},
        )
        shutil.copy(SCREENSHOT, tmp_path / SCREENSHOT.name)
        hostile_reply = replies.nth(2).inner_text()
    timings["total"] = time.perf_counter() - started
    print("browser test timings (s):", {key: round(value, 1) for key, value in timings.items()})
    print("the model's reply to the hostile prompt:", repr(hostile_reply))
    print(f"the first reply was seen in {len(partial)} partial states before it finished")
    assert SCREENSHOT.stat().st_size > 10_000


NEXT_SCREENSHOT = ROOT / "build" / "llm-next-jupyterlab.png"
NEXT_CELLS = [
    new_code_cell("%load_ext llm_magics\n%llm_load"),
    new_code_cell("%llm_next --temperature 0.7 --top-k 5 --top-p 0.9 The capital of France is"),
    new_code_cell(f"%llm_next --show 5 {HOSTILE}"),
    new_code_cell("%llm_next --steps 4 Once upon a time"),
    new_code_cell("%llm_next --live --show 8 Once upon a time, there was a"),
    new_code_cell("print('all cells ran')"),
]


# --- %tokens --live in front ends that speak widgets 7 -------------------------------------------

LIVE_CELLS = [
    new_code_cell(
        "%load_ext llm_magics\n"
        "import ipywidgets, llm_magics\n"
        "print('ipywidgets', ipywidgets.__version__, 'llm_magics from', llm_magics.__file__)"
    ),
    new_code_cell("%llm_load --tokenizer-only"),
    new_code_cell("%tokens --live Hello there"),
]
TYPED = " naïve café"


def _python_from(variable: str) -> str:
    path = os.environ.get(variable, "")
    if not path or not Path(path).is_file():
        require(f"${variable}", "run `make test-frontends`, which builds the environment and sets it")
    return path


def _live_notebook(folder: Path) -> str:
    nb = nbformat.v4.new_notebook(cells=LIVE_CELLS)
    nb.metadata["kernelspec"] = {
        "name": "test-kernel",
        "display_name": "Python 3 (test kernel)",
        "language": "python",
    }
    nbformat.write(nb, folder / "live.ipynb")
    return "live.ipynb"


def _type_and_watch(page, app: str, widgets: str) -> None:
    """The explorer rendered without a widget error; typing redraws its view once per pause."""
    textarea = page.locator(".widget-textarea textarea").first
    error = page.get_by_text("Click to show javascript error").first
    textarea.or_(error).wait_for(timeout=120_000)
    if error.is_visible():
        error.click()
        page.wait_for_timeout(500)
        shown = page.locator(".jp-OutputArea-output, .output_subarea").last.inner_text()
        raise AssertionError(f"the widget failed to render: {shown[:1500]}")
    view = page.locator(".widget-html .llm-tok .text").first
    view.wait_for(timeout=30_000)
    assert "Hello" in view.inner_text()
    for broken in ("Click to show javascript error", "Error displaying widget", "Failed to load model class"):
        assert page.get_by_text(broken).count() == 0, broken
    # Count the redraws while typing: each one replaces the HTML widget's content.
    page.evaluate(
        """() => {
            window.redraws = 0;
            const box = document.querySelector('.widget-html');
            new MutationObserver(() => { window.redraws += 1; }).observe(box, {childList: true, subtree: true});
        }"""
    )
    textarea.click()
    page.keyboard.press("End")
    textarea.press_sequentially(TYPED, delay=40)  # 40 ms between keys: faster than the 0.3 s pause
    deadline = time.monotonic() + 30
    while "café" not in view.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    text = view.inner_text()
    assert "naïve" in text and "café" in text, text
    page.wait_for_timeout(1000)
    redraws = page.evaluate("() => window.redraws")
    assert 1 <= redraws <= 4, f"{redraws} redraws for {len(TYPED)} keystrokes"
    printed = (
        page.locator(".output_subarea, .jp-OutputArea-output")
        .filter(has_text="llm_magics from")
        .first.inner_text()
    )
    assert f"ipywidgets {widgets}" in printed, printed
    if app == "notebook6":
        assert "site-packages" in printed, "the Colab env's kernel runs the installed wheel"
    shot = ROOT / "build" / f"live-{app}.png"
    shot.parent.mkdir(exist_ok=True)
    page.locator(".widget-vbox").first.screenshot(path=str(shot))
    print(f"{app}: {redraws} redraws for {len(TYPED)} keystrokes; screenshot {shot}")


@pytest.mark.slow
@pytest.mark.browser
def test_llm_next_bars_and_live_sliders_in_jupyterlab(tmp_path: Path) -> None:
    """%llm_next's bars render (and hostile text stays text); in the --live explorer, typing a new
    temperature into the slider's readout redraws the bars in place."""
    find_chromium()
    root = tmp_path / "notebooks"
    root.mkdir()
    # The quickstart's metadata names the kernel, so JupyterLab starts it without asking.
    metadata = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4).metadata
    nb = nbformat.v4.new_notebook(cells=NEXT_CELLS, metadata=metadata)
    nbformat.write(nb, root / "next.ipynb")
    dialogs: list[str] = []

    with jupyterlab(root, tmp_path) as lab, chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(lab.page_url("next.ipynb"))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=120_000)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        done = page.locator(".jp-OutputArea-output").filter(has_text="all cells ran")
        error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        done.or_(error).first.wait_for(timeout=RUN_TIMEOUT_MS)
        assert error.count() == 0, error.first.inner_text()

        # The static views: bars with a width, cut rows greyed, the hostile prompt shown as text.
        views = page.locator(".jp-OutputArea-output .llm-next")
        assert views.count() >= 4
        first = views.first
        assert first.locator("tr.cut").count() >= 1
        bar = first.locator(".bar.raw > div").first
        assert bar.evaluate("div => div.getBoundingClientRect().width") > 10
        grey = first.locator("tr.cut td").first.evaluate("td => getComputedStyle(td).opacity")
        assert float(grey) < 1
        assert page.locator(".jp-OutputArea-output img[src='x']").count() == 0
        assert views.nth(1).get_by_text("onerror=alert(1)", exact=False).count() >= 1
        assert views.nth(2).locator("td.grow").count() == 4

        # The explorer: a new temperature typed into the slider's readout redraws the bars.
        explorer = page.locator(".jp-OutputArea-output .widget-vbox").last
        live = explorer.locator(".llm-next")
        live.wait_for(timeout=60_000)
        before = live.inner_text()
        assert "p at T = 0.3" not in before  # temperature 1: no second column yet
        slider = explorer.locator(".widget-slider", has_text="temperature")
        readout = slider.locator(".widget-readout")
        readout.click()
        page.keyboard.press("Control+a")
        page.keyboard.type("0.3")
        page.keyboard.press("Enter")
        live.filter(has_text="p at T = 0.3").wait_for(timeout=30_000)
        after = live.inner_text()
        assert after != before
        explorer.get_by_role("button", name="greedy").click()
        explorer.get_by_text("appended:", exact=False).wait_for(timeout=30_000)
        assert dialogs == []

        page.keyboard.press("Control+b")
        page.wait_for_timeout(300)
        explorer.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        NEXT_SCREENSHOT.parent.mkdir(exist_ok=True)
        first.evaluate("view => view.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(NEXT_SCREENSHOT), full_page=False)
        explorer.evaluate("view => view.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(NEXT_SCREENSHOT.with_name("llm-next-live-jupyterlab.png")), full_page=False)
    assert NEXT_SCREENSHOT.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.frontends
@pytest.mark.parametrize("app", ["notebook7", "notebook6"])
def test_live_tokens_render_and_follow_typing(app: str, tmp_path: Path) -> None:
    """Notebook 7 (its widget manager is ipywidgets 8's) with this environment's kernel; classic
    Notebook 6 (widgetsnbextension 3.6.10, Colab's widgets 7) with a kernel from Colab's set.

    An ipywidgets 7 kernel behind Notebook 7 or JupyterLab 4 cannot work: their manager registers
    only the widgets 8 modules ("@jupyter-widgets/controls ^1.5.0 is not registered").
    """
    import ipywidgets

    find_chromium()
    colab_python = _python_from("LLM_MAGICS_COLAB_PYTHON")
    if app == "notebook7":
        # The Colab env's `notebook` 7 serves; the kernel is this Python, with ipywidgets 8.
        server_python, kernel_python, widgets = colab_python, sys.executable, ipywidgets.__version__
    else:
        server_python, kernel_python, widgets = (
            _python_from("LLM_MAGICS_CLASSIC_PYTHON"),
            colab_python,
            "7.7.1",
        )
    root = tmp_path / "notebooks"
    root.mkdir()
    name = _live_notebook(root)
    started = time.perf_counter()
    with (
        jupyter_server(app, server_python, root, tmp_path, kernel_python=kernel_python) as server,
        chromium(tmp_path / "profile", viewport=(1280, 900)) as context,
    ):
        page = context.new_page()
        page.goto(server.page_url(name))
        if app == "notebook6":
            page.wait_for_function(
                "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
                " && Jupyter.notebook.kernel.is_connected()",
                timeout=120_000,
            )
            # The explorer's cell runs once the others have: in classic Notebook a widget created
            # while its manager is still asking the kernel for existing widgets may never show.
            page.evaluate("() => Jupyter.notebook.execute_cells([0, 1])")
            page.locator(".output_subarea").filter(has_text="Loaded smollm2").wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            page.evaluate("() => Jupyter.notebook.execute_cells([2])")
        else:
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            # Notebook 7 may ask which kernel to start although the notebook names one.
            dialog = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
            from playwright.sync_api import TimeoutError as PlaywrightTimeout

            with contextlib.suppress(PlaywrightTimeout):
                dialog.wait_for(timeout=5_000)
            if dialog.count():
                dialog.locator("select").select_option(label="Python 3 (test kernel)")
                dialog.get_by_role("button", name="Select", exact=True).click()
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            _type_and_watch(page, app, widgets)
        except Exception:
            (ROOT / "build").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "build" / f"live-{app}-failed.png"), full_page=True)
            raise
    print(f"{app}: {time.perf_counter() - started:.1f} s")
