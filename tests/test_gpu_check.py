"""benchmarks/gpu_check.py end to end on CPU with tiny sizes, so it cannot rot before a GPU run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_check_runs_on_cpu_and_says_what_it_skipped(tmp_path, smollm_tokenizer):
    tokenizer = tmp_path / "tokenizer"
    smollm_tokenizer.save_pretrained(tokenizer)
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--tiny",
            "--tokenizer",
            str(tokenizer),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    result = json.loads((out / "gpu_check.json").read_text())
    sections = result["sections"]
    assert [turn["same reply"] for turn in sections["chat equals generate"]] == [True, True]
    assert sections["compute dtype"]["T4 rule"]["chosen"][0] == "float16"
    sizes = sections["footprint vs estimate"]
    # Tiny and vocabulary-bound, the quantized modes are not smaller here: only the estimate is judged.
    assert sorted(sizes) == ["--dtype bfloat16", "--quant 4bit", "--quant 8bit", "cuda memory"]
    assert all(abs(row["estimate error %"]) < 15 for key, row in sizes.items() if key.startswith("--"))
    assert sections["unload gives memory back"] == {"skipped": gpu_check.NEEDS_CUDA}
    for value in sections.values():
        assert value, "every section has figures or a reason it was skipped"
    assert "No figure here comes from a GPU" in (out / "gpu_section.md").read_text()


def test_the_results_writer_replaces_only_the_gpu_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(
        f"# Results\n\n## CPU\nkept\n{gpu_check.START}\n## GPU\nold\n{gpu_check.END}\n## After\nkept too\n"
    )
    gpu_check.write_results("## GPU\nnew figures\n", path)
    text = path.read_text()
    assert "old" not in text and "new figures" in text
    assert text.startswith("# Results\n\n## CPU\nkept\n") and text.endswith("## After\nkept too\n")
    assert list(tmp_path.iterdir()) == [path]
