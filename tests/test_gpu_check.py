"""benchmarks/gpu_check.py end to end on CPU with tiny sizes, so it cannot rot before a GPU run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, gpu_measures, gpu_report
from tests.helpers import FakeClock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check(tmp_path_factory, smollm_tokenizer):
    """One tiny run of the whole check on CPU: its JSON and its Markdown section."""
    tmp_path = tmp_path_factory.mktemp("gpu_check")
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
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_section.md").read_text()


@pytest.mark.slow
def test_the_check_runs_on_cpu_and_says_what_it_skipped(check):
    result, markdown = check
    sections = result["sections"]
    assert result["failed"] == []
    assert [turn["same reply"] for turn in sections["chat equals generate"]] == [True, True]
    assert sections["compute dtype"]["T4 rule"]["chosen"][0] == "float16"
    sizes = sections["footprint vs estimate"]
    # Tiny and vocabulary-bound, the quantized modes are not smaller here: only the estimate is judged.
    assert sorted(sizes) == ["--dtype bfloat16", "--quant 4bit", "--quant 8bit", "cuda memory"]
    assert all(abs(row["estimate error %"]) < 15 for key, row in sizes.items() if key.startswith("--"))
    assert sections["unload gives memory back"] == {"skipped": gpu_measures.NEEDS_CUDA}
    for value in sections.values():
        assert value, "every section has figures or a reason it was skipped"
    assert set(result["seconds"]) >= {"1B-shaped", "8B-shaped", "interrupt", "next and probs"}
    assert "No figure here comes from a GPU" in markdown


@pytest.mark.slow
def test_decode_speed_and_first_token_are_measured_beside_bare_generate(check):
    result, markdown = check
    speed = result["sections"]["decode speed"]
    assert list(speed) == ["1B-shaped, --dtype float32", "8B-shaped, --quant 4bit"]
    for row in speed.values():
        # A tiny model on two shared cores: the ratio is no figure to judge, only to exist.
        assert row["bare generate tok/s"] > 0 and row["%%llm_chat tok/s"] > 0 and row["ratio"] > 0
        assert row["same reply"] and row["new tokens"] == 64, "greedy replies run to the token count"
    first = result["sections"]["time to first token"]
    assert all(first[f"turn {n} ms"] > 0 for n in (1, 5, 10, 20)) and first["turn 20 / turn 1"] > 0
    # The cache was reused: at turn 20 nearly all of a ~2,000-token prompt was already computed.
    assert first["turn 20 prompt tokens"] > 1500
    assert first["of them reused"] > 0.9 * first["turn 20 prompt tokens"]
    assert "| bare generate tok/s | %%llm_chat tok/s | ratio |" in markdown


@pytest.mark.slow
def test_an_interrupt_stops_within_a_step_and_the_conversation_goes_on(check):
    stop = check[0]["sections"]["interrupt"]
    assert stop["forward passes before it"] >= 8 and stop["passes after it"] <= 1 and stop["within one step"]
    assert 0 < stop["seconds until the cell returned"] < 5
    assert stop["error shown"] == "GenerationInterrupted"
    assert stop["partial reply kept"] and stop["next turn worked"] and stop["next turn equals generate"]
    assert stop["threads left"] == []


@pytest.mark.slow
def test_next_and_probs_equal_the_numbers_computed_by_hand(check):
    shown = check[0]["sections"]["next and probs"]
    following = shown["%llm_next"]
    assert following["same tokens"] and following["bars as shown"]
    assert following["largest difference"] < 1e-6 and following["entropy difference (bits)"] < 1e-4
    assert following["likeliest p"] > 0.01, "the spread logits give the bars digits to compare"
    probs = shown["%tokens --probs"]
    assert probs["same ids"] and probs["same alternatives"]
    assert probs["each token's p as shown"] and probs["alternatives' p as shown"]
    assert probs["perplexity relative difference"] < 1e-4


def test_the_budget_skips_what_would_not_fit_and_records_failures():
    clock = FakeClock(step=10)
    saved: list[dict] = []
    figures: dict = {}
    budget = gpu_check.Budget(100, lambda: saved.append(dict(figures)), clock=clock)

    def broken() -> dict:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    budget.run(figures, "fits", 30, lambda: {"value": 1})
    budget.run(figures, "breaks", 10, broken)
    budget.run(figures, "too long", 90, lambda: {"value": 2})
    budget.run(figures, "still fits", 5, lambda: {"value": 3})
    assert figures["fits"] == {"value": 1} and figures["still fits"] == {"value": 3}
    assert figures["too long"] == {"skipped": gpu_check.OVER_BUDGET}
    assert figures["breaks"]["failed"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert budget.failed == ["breaks"] and "too long" not in budget.spent
    # Saved after every step, the skipped one too: a run cut short keeps what it measured.
    assert [list(state) for state in saved] == [list(figures)[:n] for n in (1, 2, 3, 4)]


def test_the_section_renders_tables_and_skipped_lines():
    result = {
        "machine": {
            "gpu": "NVIDIA H100",
            "date": "today",
            "torch": "2",
            "transformers": "5",
            "bitsandbytes": "0",
        },
        "device": "cuda",
        "budget s": 330,
        "models": {"1B-shaped": {"parameters": 1_100_000_000}},
        "seconds": {"1B-shaped": 9.6},
        "sections": {
            "decode speed": {
                "1B": {"tok/s": 80.123, "≥ 0.97": True},
                "8B": {"skipped": gpu_check.OVER_BUDGET},
            },
            "interrupt": {"passes after it": 0, "within one step": True},
            "next and probs": {"failed": "RuntimeError: no"},
        },
    }
    text = gpu_report.section_markdown(result)
    assert "| | tok/s | ≥ 0.97 |\n|---|---|---|\n| 1B | 80.1 | yes |" in text
    assert f"- 8B: {gpu_check.OVER_BUDGET}" in text
    assert "- passes after it: 0\n- within one step: yes" in text
    assert "- **next and probs**: failed: RuntimeError: no" in text
    assert "1B-shaped: 1,100,000,000 parameters" in text and "No figure here" not in text


def test_the_results_writer_replaces_only_the_gpu_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(
        f"# Results\n\n## CPU\nkept\n{gpu_report.START}\n## GPU\nold\n{gpu_report.END}\n## After\nkept too\n"
    )
    gpu_report.write_results("## GPU\nnew figures\n", path)
    text = path.read_text()
    assert "old" not in text and "new figures" in text
    assert text.startswith("# Results\n\n## CPU\nkept\n") and text.endswith("## After\nkept too\n")
    assert list(tmp_path.iterdir()) == [path]
