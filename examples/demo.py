"""`make demo`: run examples/quickstart.ipynb in a real Jupyter kernel and show what it produced.

Writes the executed notebook and its HTML export to build/ (or --out DIR) and prints the chat
replies and the token counts. The tests import `execute_notebook` and `export_html` from here, so
the demo and CI run notebooks the same way.

    python examples/demo.py [--out DIR] [NOTEBOOK]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat

EXAMPLES = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ours (so LLM_MAGICS_CACHE_DIR reaches it), offline, quiet."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # tqdm bars in a kernel are widgets or stderr noise; the magics show their own progress.
    env.setdefault("TQDM_DISABLE", "1")
    env.update(extra or {})
    return env


def execute_notebook(
    path: Path, *, timeout: int = 600, env: dict[str, str] | None = None
) -> nbformat.NotebookNode:
    """Execute a notebook in a fresh kernel of this Python (the one running this script).

    The kernel starts in the notebook's folder. A cell that raises stops the run with
    nbclient's CellExecutionError, which names the cell and shows the traceback.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # The kernel is this interpreter, whatever kernelspecs the user has installed elsewhere.
    manager = KernelManager(kernel_name="python3")
    manager._kernel_spec = KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3 (ipykernel)",
        language="python",
    )
    client = NotebookClient(
        nb,
        km=manager,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
        # The kernel's own warnings (e.g. about TCP on loopback) would clutter the demo's output.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    client.execute(env=kernel_env(env))
    return nb


def export_html(nb: nbformat.NotebookNode) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def outputs_of(nb: nbformat.NotebookNode, magic: str) -> list[dict[str, Any]]:
    """The rich outputs (display data and results) of the code cells that start with `magic`."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(magic):
            found.extend(o for o in cell.outputs if o.output_type in ("display_data", "execute_result"))
    return found


def plain(output: dict[str, Any]) -> str:
    return ANSI.sub("", output.get("data", {}).get("text/plain", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(EXAMPLES / "quickstart.ipynb"))
    parser.add_argument("--out", default="build", help="Folder for the executed notebook and HTML.")
    args = parser.parse_args(argv)

    source = Path(args.notebook).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Executing {source.name} in a Jupyter kernel (the first run converts the bundled model once)...")
    started = time.perf_counter()
    nb = execute_notebook(source)
    seconds = time.perf_counter() - started
    executed = out / source.name
    nbformat.write(nb, executed)
    html_path = executed.with_suffix(".html")
    html_path.write_text(export_html(nb), encoding="utf-8")

    print(f"\nRan {sum(c.cell_type == 'code' for c in nb.cells)} code cells in {seconds:.0f} s.\n")
    for number, output in enumerate(outputs_of(nb, "%%llm_chat"), start=1):
        print(f"── chat reply {number} ──\n{plain(output).strip()}\n")
    for output in outputs_of(nb, "%tokens"):
        # The token view's text form: the tokens (coloured in a terminal) and the counts.
        print(f"── %tokens ──\n{output['data']['text/plain'].strip()}\n")
    print(f"Executed notebook: {executed}\nHTML export:       {html_path}")
    print("Open it interactively with `make lab`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
