"""`%llm_next` as a user drives it: options, views, the explorer, refusals, memory."""

from __future__ import annotations

import html
import re
import threading

import psutil
import pytest
import torch

from llm_magics.display.next_token import NextTokenExplorer, NextTokenView
from llm_magics.registry import release_memory
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.test_next_token import ScriptedEngine, TinyEngine, TokenizerOnly

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def tiny(shell, loaded_tiny):
    """The tiny Llama (SmolLM2's tokenizer, with a chat template) as the active engine."""
    model, tokenizer = loaded_tiny("llama")
    engine = TinyEngine("tiny-llama", model, tokenizer)
    magics(shell).registry.add(engine)
    return engine


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr[^>]*title=", page)


def test_llm_next_shows_bars_as_html_and_text_and_returns_nothing(shell, tiny):
    result, captured = run(shell, "%llm_next The capital of France is")
    assert result.success and result.result is None
    page, text = shown_html(captured), shown_text(captured)
    assert page.startswith('<div class="llm-next"><style>') and "<script" not in page
    assert len(_rows(page)) == 10
    assert "tiny-llama · next token after the text · temperature 1" in text
    assert "The·capital·of·France·is▌" in text
    assert "Outside these 10:" in text and "Entropy" in text
    assert "p at T = 1" in page and "p at T =" not in page.replace("p at T = 1", "")
    assert tiny.forward_passes == 1


def test_temperature_adds_a_column_and_cuts_are_greyed(shell, tiny):
    _, captured = run(shell, "%llm_next --temperature 0.5 --top-k 3 --show 6 Hello there")
    page, text = shown_html(captured), shown_text(captured)
    assert "p at T = 0.5" in page and "p at T = 0.5" in text
    assert page.count('<tr class="cut"') == 3 and page.count(">cut by top-k<") == 3
    assert "Sampling can pick 3 of" in text
    _, captured = run(shell, "%llm_next --top-p 0.00001 Hello there")
    assert shown_html(captured).count(">cut by top-p<") == 9


def test_the_numbers_equal_the_core_function(shell, tiny):
    from llm_magics.next_token import next_token_distribution

    _, captured = run(shell, "%llm_next -t 0.7 --top-p 0.9 --chat What is 2 + 2?")
    expected = NextTokenView(
        next_token_distribution(tiny, "What is 2 + 2?", temperature=0.7, top_p=0.9, chat=True)
    )
    assert shown_text(captured).strip() == expected.text()
    assert "after the chat template and the generation prompt" in shown_text(captured)


def test_chat_without_a_template_says_it_continues_the_plain_transcript(shell, loaded_tiny):
    model, tokenizer = loaded_tiny("gpt2")
    magics(shell).registry.add(TinyEngine("tiny-gpt2", model, tokenizer))
    _, captured = run(shell, "%llm_next --chat --show 2 Hi")
    text = shown_text(captured)
    assert "tiny-gpt2 has no chat template" in text and "User:·Hi" in text


def test_cell_form_interpolates_and_keeps_spacing(shell, tiny):
    shell.user_ns["test_city"] = "Paris"
    _, captured = run(shell, "%%llm_next --show 3\n{test_city} is the capital of")
    assert "Paris·is·the·capital·of" in shown_text(captured)
    _, captured = run(shell, '%llm_next --show 3 "  two spaces "')
    assert "··two·spaces·▌" in shown_text(captured)


def test_settings_are_traits_and_flags_override_them(shell, tiny):
    shell.run_line_magic("config", "LlmMagics.next_show = 4")
    shell.run_line_magic("config", "LlmMagics.next_temperature = 0.8")
    _, captured = run(shell, "%llm_next Hello")
    assert len(_rows(shown_html(captured))) == 4 and "temperature 0.8" in shown_text(captured)
    _, captured = run(shell, "%llm_next --show 2 -t 1 Hello")
    assert len(_rows(shown_html(captured))) == 2 and "temperature 1 " in shown_text(captured)


def test_steps_show_a_table_with_the_text_growing(shell, tiny):
    _, captured = run(shell, "%llm_next --steps 5 The cat")
    page, text = shown_html(captured), shown_text(captured)
    assert "5 steps after the text · greedy" in text
    assert page.count('<td class="grow">') == 5
    assert re.search(r"rank 1 ", text)
    _, again = run(shell, "%llm_next --steps 5 --sample --seed 4 -t 1.5 The cat")
    _, same = run(shell, "%llm_next --steps 5 --sample --seed 4 -t 1.5 The cat")
    assert shown_text(again) == shown_text(same) and "seed 4" in shown_text(again)
    assert "p sampled" in shown_html(again)


def test_model_text_and_user_text_are_escaped(shell, smollm_tokenizer):
    engine = ScriptedEngine(
        smollm_tokenizer, smollm_tokenizer("<script>alert(1)</script>\u202e")["input_ids"]
    )
    magics(shell).registry.add(engine)
    _, captured = run(shell, f"%llm_next --steps 12 {HOSTILE}")
    page = shown_html(captured)
    assert HOSTILE not in page and html.escape(HOSTILE) in page.replace('<span class="m">·</span>', " ")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "\u202e" not in page and "⟨U+202E⟩" in page
    _, captured = run(shell, f"%llm_next {HOSTILE}")
    assert "<img" not in shown_html(captured)


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%llm_next --top-p 0 Hi", "InvalidOption", "--top-p"),
        ("%llm_next --top-p 1.5 Hi", "InvalidOption", "--top-p"),
        ("%llm_next --top-k -1 Hi", "InvalidOption", "--top-k"),
        ("%llm_next --temperature -1 Hi", "InvalidOption", "--temperature"),
        ("%llm_next --temperature 1e9 Hi", "InvalidOption", "--temperature"),
        ("%llm_next --temperature nan Hi", "InvalidOption", "--temperature"),
        ("%llm_next --steps 1000 Hi", "InvalidOption", "--steps"),
        ("%llm_next --show 0 Hi", "InvalidOption", "--show"),
        ("%llm_next --sample Hi", "InvalidOption", "go with --steps"),
        ("%llm_next --live --steps 3 Hi", "InvalidOption", "--live"),
        ("%llm_next --live --sample Hi", "InvalidOption", "go with --steps"),
        ("%llm_next", "InvalidOption", "Nothing to continue"),
        ("%llm_next {test_bad}", "InvalidOption", "lone surrogate"),
        ('%llm_next "unclosed', "InvalidOption", "close the quote"),
        ("%llm_next --top-k many Hi", "UsageError", "--top-k"),
        ("%llm_next --model nope Hi", "NotLoaded", "nope"),
        ("%%llm_next Hi\nthere", "InvalidOption", "not both"),
    ],
)
def test_bad_input_is_one_line_and_runs_nothing(shell, tiny, line, error, fragment):
    shell.user_ns["test_bad"] = "a\ud800b"
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert tiny.forward_passes == 0 and captured.outputs == []


def test_engines_without_probabilities_get_one_line(shell, tiny, gpt2_tokenizer):
    magics(shell).registry.add(TokenizerOnly(gpt2_tokenizer))
    result, captured = run(shell, "%llm_next Hi")
    assert_one_line_error(result, captured, "NotSupported", "'words-only' cannot run %llm_next")
    result, captured = run(shell, "%llm_next --model tiny-llama --show 2 Hi")
    assert result.success


def test_nothing_loaded_is_one_line(shell):
    result, captured = run(shell, "%llm_next Hi")
    assert_one_line_error(result, captured, "NotLoaded", "%llm_load")


def test_live_explorer_updates_in_place_without_threads(shell, tiny, monkeypatch):
    from llm_magics.magics import next_token as magic_module

    threads = threading.active_count()
    result, captured = run(shell, "%llm_next --live --show 5 Once upon a")
    assert result.success
    (output,) = captured.outputs
    assert (
        "application/vnd.jupyter.widget-view+json" in output.data and "llm-next" in output.data["text/html"]
    )
    assert "Once·upon·a▌" in output.data["text/plain"]
    shown: list[object] = []
    monkeypatch.setattr(magic_module, "show", shown.append)
    shell.run_line_magic("llm_next", "--live --seed 1 --show 5 Once upon a")
    (explorer,) = shown
    assert isinstance(explorer, NextTokenExplorer)
    before = explorer.output.value
    passes = tiny.forward_passes
    explorer.temperature.value = 0.3
    assert explorer.output.value != before and "p at T = 0.3" in explorer.output.value
    explorer.top_k.value = 2
    assert explorer.output.value.count('<tr class="cut"') == 3
    assert tiny.forward_passes == passes, "sliders reuse the logits"
    explorer.greedy_button.click()
    assert explorer.status.value and tiny.forward_passes == passes + 1
    explorer.sample_button.click()
    explorer.undo_button.click()
    explorer.undo_button.click()
    assert explorer.status.value == ""
    explorer.textarea.value = ""
    assert "Type some text" in explorer.status.value or "Nothing to continue" in explorer.status.value
    explorer.textarea.value = "New text"
    assert explorer.view is not None and "New·text▌" in explorer.view.text() and explorer.status.value == ""
    assert threading.active_count() == threads


def test_live_without_text_says_what_to_do(shell, tiny):
    result, captured = run(shell, "%llm_next --live")
    assert result.success
    (output,) = captured.outputs
    assert "application/vnd.jupyter.widget-view+json" in output.data
    assert tiny.forward_passes == 0


def test_two_hundred_calls_leave_memory_where_it_was(shell, tiny):
    process = psutil.Process()

    def calls(n: int) -> None:
        for i in range(n):
            result, _ = run(shell, f"%llm_next --top-p 0.9 -t 0.{i % 9 + 1} The capital of France is")
            assert result.success

    calls(30)
    release_memory()
    before = process.memory_info().rss
    calls(200)
    release_memory()
    after = process.memory_info().rss
    grown = (after - before) / 2**20
    print(f"RSS before {before / 2**20:.1f} MiB, after 200 calls {after / 2**20:.1f} MiB ({grown:+.1f} MiB)")
    assert grown < 8, f"{grown:.1f} MiB more after 200 calls"


def test_one_view_is_small(shell, tiny):
    _, captured = run(shell, "%llm_next -t 0.7 --top-p 0.9 The capital of France is")
    size = len(shown_html(captured).encode())
    print(f"one %llm_next view (10 bars, two columns): {size:,} bytes of HTML")
    assert size < 20_000
    assert torch.is_tensor(tiny.next_token_logits([1]))
