"""`make screenshots`: the pictures README.md and docs/ show, made from the example notebooks.

Each notebook is copied to a scratch folder, opened in JupyterLab (light theme, as installed) in
headless Chromium and run with Run All, exactly as a reader would; then each picture is one
cell's output area, found by the cell's source. The browser test's machinery
(`tests/frontend/lab.py`) starts both. Not part of `make test`: tests/test_docs.py only checks
that every picture the docs name exists and is small.

    python -m tests.frontend.screenshots [--out docs/images]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.frontend.lab import chromium, jupyterlab

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"

#: notebook -> [(picture, a pattern that the source of the cell whose output it shows starts with)]
SHOTS: dict[str, list[tuple[str, str]]] = {
    "quickstart.ipynb": [
        ("card.png", r"%llm_load$"),
        ("chat.png", r"%%llm_chat --max-new-tokens 48\nIn one sentence"),
        ("tokens.png", r'%tokens Tokenizers split "unbelievably"'),
    ],
    "tokenization_lesson.ipynb": [
        ("next.png", r"%llm_next --model smollm2-135m --top-k 3 Once upon a time"),
        ("next-steps.png", r"%llm_next --model smollm2-135m --steps 8 Once upon a time"),
        ("tokens-compare.png", r"%tokens --model smollm2-135m --compare tiny-bpe"),
        ("next-live.png", r"%llm_next --live --model smollm2-135m"),
        ("attention.png", r"%llm_attention --model smollm2-135m --layer -1"),
        ("lens.png", r"%llm_next --model smollm2-135m --lens"),
        ("info.png", r"%llm_info smollm2-135m"),
        ("alternatives.png", r"%%llm_chat smollm2-135m --alternatives"),
    ],
    "pipelines.ipynb": [
        ("pipe.png", r"%%llm_pipe question-answering"),
    ],
}
RUN_TIMEOUT_S = 900
#: Wider outputs only add white space; this keeps each picture a few tens of KB.
VIEWPORT = (1100, 1400)


def _run_all(page, lab, name: str) -> None:
    """Open `name`, Run All, and wait until every code cell has an execution count."""
    # `reset`: a fresh workspace, so the notebook opened before this one is not restored beside it.
    page.goto(lab.page_url(name) + "&reset")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=120_000)
    page.keyboard.press("Control+b")  # the file browser away: the notebook takes the width
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        texts = prompts.all_inner_texts()
        if texts and all(re.fullmatch(r"\[\d+\]:", text.strip()) for text in texts):
            return
        page.wait_for_timeout(1000)
    raise TimeoutError(f"{name}: not every cell ran within {RUN_TIMEOUT_S} s")


def _cell(page, pattern: str):
    """The first code cell whose source, as the editor shows it, matches `pattern` at its start."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    for index in range(cells.count()):
        cell = cells.nth(index)
        text = cell.locator(".jp-InputArea-editor").inner_text().replace("\u200b", "").strip()
        if re.match(pattern, text):
            return cell
    raise LookupError(f"no cell matches {pattern!r}")


def shoot(out: Path) -> list[Path]:
    made = []
    with tempfile.TemporaryDirectory(prefix="llm-magics-shots-") as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "notebooks"
        root.mkdir()
        for name in SHOTS:
            shutil.copy(EXAMPLES / name, root / name)
        with jupyterlab(root, scratch) as lab, chromium(scratch / "profile", viewport=VIEWPORT) as context:
            for name, shots in SHOTS.items():
                page = context.new_page()
                started = time.perf_counter()
                _run_all(page, lab, name)
                print(f"{name}: ran in {time.perf_counter() - started:.0f} s")
                for picture, pattern in shots:
                    output = _cell(page, pattern).locator(".jp-Cell-outputArea")
                    output.scroll_into_view_if_needed()
                    if picture == "next-live.png":  # the explorer draws its bars once the kernel answers
                        output.locator(".llm-next").first.wait_for(timeout=60_000)
                    page.wait_for_timeout(300)
                    path = out / picture
                    output.screenshot(path=str(path))
                    made.append(path)
                    print(f"  {path.relative_to(ROOT)}: {path.stat().st_size / 1000:.0f} KB")
                page.close()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shoot(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
