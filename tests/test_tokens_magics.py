"""%tokens / %%tokens through the IPython shell: what the user types, sees and keeps."""

from __future__ import annotations

import math
import re

import pytest
from IPython.utils.capture import capture_output

import llm_magics
from llm_magics.conversation import Conversation
from llm_magics.engines.transformers import TokenizerEngine
from llm_magics.errors import InvalidOption, NotLoaded
from llm_magics.values import EngineInfo, EngineKind
from tests.fake_engine import fake_engine

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def configure(shell):
    """`%config LlmMagics.NAME = VALUE`, undone after the test (the shell and its config are shared)."""
    names = []

    def set_option(name: str, value: str) -> None:
        names.append(name)
        shell.run_line_magic("config", f"LlmMagics.{name} = {value}")

    yield set_option
    for name in names:
        shell.config.LlmMagics.pop(name, None)


def magics(shell):
    return shell.magics_manager.registry["LlmMagics"]


def add_entry(shell, name: str, tokenizer, **kwargs) -> TokenizerEngine:
    """A tokenizer-only engine, as `%llm_load --tokenizer-only` makes, without the files."""
    info = EngineInfo(name=name, source=name, kind=EngineKind.TRANSFORMERS, tokenizer_only=True, **kwargs)
    engine = TokenizerEngine(info, tokenizer)
    magics(shell).registry.add(engine)
    return engine


def add_chatting(shell, name: str, tokenizer, messages):
    """An engine with a tokenizer and a conversation (the fake engine: no weights needed)."""
    engine = fake_engine(name, tokenizer=tokenizer)
    engine.session.replace(Conversation(messages))
    magics(shell).registry.add(engine)
    return engine


def show(shell, line: str, cell: str | None = None):
    """Run %tokens (or %%tokens) and return its one display: (plain text without colours, html)."""
    with capture_output() as captured:
        result = (
            shell.run_line_magic("tokens", line)
            if cell is None
            else shell.run_cell_magic("tokens", line, cell)
        )
    assert result is None, "a magic that shows something returns None"
    assert len(captured.outputs) == 1
    data = captured.outputs[0].data
    return ANSI.sub("", data["text/plain"]), data["text/html"]


def shown_text(markup: str) -> list[str]:
    """The characters of every token area, markers included."""
    from html import unescape

    areas = re.findall(r'<div class="text">(.*?)</div>', markup, re.S)
    return [unescape(re.sub(r"<[^>]+>", "", area)) for area in areas]


def run_cell_output(shell, source: str) -> str:
    with capture_output() as captured:
        shell.run_cell(source)
    return captured.stdout


# --- bad input: one clear line ---------------------------------------------------------------


def test_no_tokenizer_loaded_is_one_line(shell):
    out = run_cell_output(shell, "%tokens hello")
    assert (
        out.strip()
        == "NotLoaded: No model is loaded. Run %llm_load first (with no argument for the bundled default)."
    )


def test_an_unknown_name_lists_what_is_loaded(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    with pytest.raises(NotLoaded, match=r"No model named 'nope' is loaded\. Loaded: bpe\."):
        shell.run_line_magic("tokens", "--model nope hello")
    with pytest.raises(NotLoaded, match="'other'"):
        shell.run_line_magic("tokens", "--compare other hello")


@pytest.mark.parametrize("line", ["", "--ids", '""', "''"])
def test_empty_text_is_a_clear_line(shell, gpt2_tokenizer, line):
    add_entry(shell, "bpe", gpt2_tokenizer)
    with pytest.raises(InvalidOption, match="Nothing to tokenise: give TEXT after %tokens"):
        shell.run_line_magic("tokens", line)


def test_text_on_the_line_and_in_the_cell_is_refused(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    with pytest.raises(InvalidOption, match="either after %%tokens or in the cell"):
        shell.run_cell_magic("tokens", "hello", "world")


def test_an_unclosed_quote_is_a_clear_line(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    out = run_cell_output(shell, '%tokens C:\\path\\to "file')
    assert out.strip() == (
        "InvalidOption: Could not read the line (No closing quotation): close the quote, "
        "or put the text in a %%tokens cell."
    )
    _, markup = show(shell, "", 'C:\\path\\to "file')
    assert shown_text(markup) == ['C:\\path\\to·"file']


def test_max_tokens_must_be_positive(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    with pytest.raises(InvalidOption, match="--max-tokens must be at least 1, not 0"):
        shell.run_line_magic("tokens", "--max-tokens 0 hello")


def test_chat_takes_no_text(shell, smollm_tokenizer):
    add_entry(shell, "smol", smollm_tokenizer)
    with pytest.raises(InvalidOption, match="--chat shows the model's conversation; it takes no TEXT"):
        shell.run_line_magic("tokens", "--chat hello")


@pytest.mark.slow
def test_probs_with_a_tokenizer_only_load_is_a_clear_line(shell, tiny_models):
    with capture_output():
        shell.run_line_magic("llm_load", f"{tiny_models['llama']} --tokenizer-only --as tok")
    out = run_cell_output(shell, "%tokens --probs hello")
    assert out.strip() == (
        "NotSupported: 'tok' cannot run %tokens --probs: it is loaded as a tokenizer only; "
        "load it again without --tokenizer-only (add --reload)."
    )


# --- the text, as typed ------------------------------------------------------------------------


def test_the_line_text_keeps_its_spacing(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    plain, markup = show(shell, "--ids Hello,   world  again")
    assert shown_text(show(shell, "Hello,   world  again")[1]) == ["Hello,···world··again"]
    assert "21 characters" in plain


def test_quoted_text_keeps_leading_and_trailing_spaces(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    for line, text in (
        ('"  two  spaces "', "  two  spaces "),
        ("'don\"t'", 'don"t'),
        ("don't panic", "don't panic"),
    ):
        plain, markup = show(shell, line)
        assert shown_text(markup) == [text.replace(" ", "·")]
        assert f"{len(text)} characters" in plain


def test_cell_text_is_used_exactly(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    cell = "line one\n\tline two\n"
    plain, markup = show(shell, "", cell)
    assert shown_text(markup) == ["line·one↵→line·two↵"]
    n = len(gpt2_tokenizer(cell)["input_ids"])
    assert f"{n} tokens · {len(cell)} characters" in plain


def test_braces_are_interpolated_unless_asked_not_to(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    shell.user_ns["test_topic"] = "café"
    assert shown_text(show(shell, "about {test_topic}")[1]) == ["about·café"]
    assert shown_text(show(shell, "", "about {test_topic} and {nothing}")[1]) == ["about·café·and·{nothing}"]
    assert shown_text(show(shell, "--no-interpolate about {test_topic}")[1]) == ["about·{test_topic}"]


def test_hostile_text_is_escaped_in_the_output(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    plain, markup = show(shell, "", "</div><script>alert(1)</script>\u202e")
    assert "<script" not in markup and "\u202e" not in markup
    assert shown_text(markup) == ["</div><script>alert(1)</script>⟨U+202E⟩"]


# --- views -----------------------------------------------------------------------------------


def test_ids_flag_and_setting(shell, gpt2_tokenizer, configure):
    add_entry(shell, "bpe", gpt2_tokenizer)
    ids = [str(i) for i in gpt2_tokenizer("Hi there")["input_ids"]]
    _, markup = show(shell, "--ids Hi there")
    assert re.findall(r'<span class="id">([^<]*)</span>', markup) == ids
    _, markup = show(shell, "Hi there")
    assert 'class="id"' not in markup
    configure("tokens_show_ids", "True")
    _, markup = show(shell, "Hi there")
    assert re.findall(r'<span class="id">([^<]*)</span>', markup) == ids


def test_max_tokens_flag_and_setting_cut_the_view(shell, gpt2_tokenizer, configure):
    add_entry(shell, "bpe", gpt2_tokenizer)
    text = "The quick brown fox jumps over the lazy dog. " * 20
    n = len(gpt2_tokenizer(text)["input_ids"])
    plain, _ = show(shell, "--max-tokens 10", text)
    assert f"Showing the first 10 of {n} tokens" in plain
    assert f"{n} tokens · {len(text)} characters" in plain
    configure("tokens_max_tokens", "7")
    plain, _ = show(shell, "", text)
    assert f"Showing the first 7 of {n} tokens" in plain


def test_a_hundred_thousand_characters_are_cut_with_exact_counts(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer, context_length=4096)
    text = ("Paris, 日本語 and 🙂. " * 6000)[:100_000]
    n = len(gpt2_tokenizer(text)["input_ids"])
    plain, markup = show(shell, "", text)
    assert f"Showing the first 2,000 of {n:,} tokens" in plain
    assert f"{n:,} tokens · 100,000 characters" in markup
    assert f"{n / 4096:.0%} of the 4,096-token context window: too long for the model" in plain
    assert markup.count('class="t ') <= 2000


def test_compare_shows_two_tokenizers_side_by_side(shell, gpt2_tokenizer, smollm_tokenizer):
    add_entry(shell, "smol", smollm_tokenizer)
    add_entry(shell, "bpe", gpt2_tokenizer)
    text = "Tokenizers differ: naïve café 日本語 🙂"
    plain, markup = show(shell, f"--model smol --compare bpe {text}")
    assert shown_text(markup) == [text.replace(" ", "·")] * 2
    assert plain.index("── smol ──") < plain.index("── bpe ──")
    for tokenizer in (smollm_tokenizer, gpt2_tokenizer):
        assert f"{len(tokenizer(text)['input_ids'])} tokens · {len(text)} characters" in plain


def test_chat_shows_the_conversation_through_the_template(shell, smollm_tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi <there>"},
        {"role": "assistant", "content": "Hello!"},
    ]
    add_chatting(shell, "smol", smollm_tokenizer, messages)
    plain, markup = show(shell, "--chat")
    expected = smollm_tokenizer.apply_chat_template(messages, tokenize=False)
    assert shown_text(markup) == [_marked(expected)]
    n = len(smollm_tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])
    assert f"{n} tokens · {len(expected)} characters" in plain
    assert "as the model receives it" in plain
    assert "example conversation" not in plain
    assert 'class="t user0"' in markup and 'class="t assistant0"' in markup
    assert markup.count("&lt;|im_start|&gt;</span>") == 3


def test_chat_before_any_conversation_shows_an_example(shell, smollm_tokenizer):
    add_chatting(shell, "smol", smollm_tokenizer, [{"role": "system", "content": "Answer in French."}])
    plain, markup = show(shell, "--chat")
    assert "No conversation with smol yet, so this is an example conversation" in plain
    assert "Answer·in·French." in shown_text(markup)[0]
    assert "What·is·a·token?" in shown_text(markup)[0]
    assert shown_text(markup)[0].endswith("<|im_start|>assistant↵")


def test_chat_without_a_template_shows_the_plain_transcript(shell, gpt2_tokenizer):
    from llm_magics.prompts import render_plain

    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]
    add_chatting(shell, "bpe", gpt2_tokenizer, messages)
    plain, markup = show(shell, "--chat")
    assert "bpe has no chat template, so %%llm_chat sends it this plain transcript instead." in plain
    assert shown_text(markup) == [_marked(render_plain(messages))]


def _marked(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "↵")


def test_live_explorer_is_a_widget_with_a_saved_view(shell, gpt2_tokenizer, smollm_tokenizer):
    add_entry(shell, "smol", smollm_tokenizer)
    add_entry(shell, "bpe", gpt2_tokenizer)
    with capture_output() as captured:
        shell.run_line_magic("tokens", "--live --model bpe Hello there")
    data = captured.outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" in data
    # Where widgets do not run (a saved notebook, nbconvert), the first view is ordinary output.
    assert shown_text(data["text/html"]) == ["Hello·there"]
    assert "── bpe ──" in data["text/plain"]


def test_live_explorer_updates_as_you_type_and_pick(gpt2_tokenizer, smollm_tokenizer):
    from llm_magics.display.tokens import TokenExplorer, TokenView
    from llm_magics.tokens import analyse

    tokenizers = {"smol": smollm_tokenizer, "bpe": gpt2_tokenizer}

    def render(name: str, text: str) -> TokenView:
        return TokenView([analyse(tokenizers[name], text, name=name)])

    explorer = TokenExplorer(list(tokenizers), render, text="a", name="bpe")
    explorer.textarea.value = "naïve 🙂"
    assert shown_text(explorer.output.value) == ["naïve·🙂"]
    assert f"{len(gpt2_tokenizer('naïve 🙂')['input_ids'])} tokens" in explorer.output.value
    explorer.picker.value = "smol"
    assert ">smol</div>" in explorer.output.value
    assert f"{len(smollm_tokenizer('naïve 🙂')['input_ids'])} tokens" in explorer.output.value
    assert explorer._repr_mimebundle_()["text/html"] == explorer.output.value


class FakeTimers:
    """Stands in for the kernel's IOLoop timers: records what is scheduled, fires on demand."""

    def __init__(self) -> None:
        self.pending: list[list] = []

    def __call__(self, delay, callback):
        timer = [delay, callback]
        self.pending.append(timer)
        return lambda: self.pending.remove(timer)

    def fire(self) -> None:
        for _, callback in list(self.pending):
            callback()


def test_live_explorer_redraws_once_typing_pauses(gpt2_tokenizer):
    from llm_magics.display.tokens import TokenExplorer, TokenView
    from llm_magics.tokens import analyse

    drawn: list[str] = []

    def render(name: str, text: str) -> TokenView:
        drawn.append(text)
        return TokenView([analyse(gpt2_tokenizer, text, name=name)])

    timers = FakeTimers()
    explorer = TokenExplorer(["bpe"], render, text="a", scheduler=timers, delay=0.3)
    assert explorer.textarea.continuous_update, "every keystroke reaches the kernel"
    first = explorer.output.value
    for typed in ("n", "na", "naï", "naïve"):
        explorer.textarea.value = typed
    assert explorer.output.value == first, "nothing is redrawn while typing"
    assert [delay for delay, _ in timers.pending] == [0.3], "each keystroke restarts the one timer"
    timers.fire()
    assert shown_text(explorer.output.value) == ["naïve"]
    assert drawn == ["a", "naïve"], "one redraw per pause, not one per keystroke"
    explorer.picker.value = "bpe"  # unchanged: no redraw
    assert timers.pending == []


def test_live_explorer_without_a_kernel_updates_on_enter_or_blur(gpt2_tokenizer):
    from llm_magics.display.tokens import TokenExplorer, TokenView
    from llm_magics.tokens import analyse

    explorer = TokenExplorer(
        ["bpe"], lambda name, text: TokenView([analyse(gpt2_tokenizer, text, name=name)])
    )
    assert explorer.textarea.continuous_update is False
    explorer.textarea.value = "café"  # what the front end sends on Enter or blur
    assert shown_text(explorer.output.value) == ["café"]


def _explorer_shown(captured):
    from ipywidgets.widgets import widget

    model_id = captured.outputs[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    instances = getattr(widget, "_instances", None)  # ipywidgets 8
    if instances is None:
        instances = widget.Widget.widgets  # ipywidgets 7
    box = instances[model_id]
    picker, textarea, output = box.children
    return textarea, output


# A typical paragraph pasted into the explorer: 2,000 characters.
PARAGRAPH = (
    "Tokenizers split text into pieces, and models only ever see the ids of those pieces. "
    "Spaces, accents (café, naïve) and emoji 🙂 cost tokens too; numbers like 3.14159 split oddly. "
) * 11
PARAGRAPH = PARAGRAPH[:2000]


def test_live_update_draws_at_most_300_tokens_and_stays_small(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    total = len(gpt2_tokenizer(PARAGRAPH)["input_ids"])
    assert total > 300
    with capture_output() as captured:
        shell.run_line_magic("tokens", "--live --model bpe")
    textarea, output = _explorer_shown(captured)
    textarea.value = PARAGRAPH
    live_bytes = len(output.value.encode())
    assert len(shown_text(output.value)[0].replace("·", " ")) < len(PARAGRAPH) / 2, "the view is cut"
    assert f"{total:,} tokens" in output.value, "the counts stay exact"
    full_bytes = len(_full_view_html(gpt2_tokenizer, total).encode())
    print(f"bytes per live update for 2,000 characters: {live_bytes:,} (all {total} tokens: {full_bytes:,})")
    assert live_bytes < 40_000
    assert live_bytes < full_bytes / 2


def _full_view_html(tokenizer, max_tokens):
    """What every keystroke used to send: the view of all the tokens."""
    from llm_magics.display.tokens import TokenView
    from llm_magics.tokens import analyse

    view = analyse(tokenizer, PARAGRAPH, name="bpe", max_tokens=max_tokens)
    return TokenView([view], max_tokens=max_tokens).html()


def test_live_max_tokens_is_a_setting(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    shell.run_line_magic("config", "LlmMagics.tokens_live_max_tokens = 20")
    with capture_output() as captured:
        shell.run_line_magic("tokens", "--live --model bpe")
    textarea, output = _explorer_shown(captured)
    textarea.value = PARAGRAPH
    assert len(re.findall(r'class="t ', output.value)) <= 20 < len(gpt2_tokenizer(PARAGRAPH)["input_ids"])


def test_tokenize_api_returns_the_spans(shell, gpt2_tokenizer):
    add_entry(shell, "bpe", gpt2_tokenizer)
    spans = llm_magics.tokenize("naïve 🙂")
    assert "".join(s.text for s in spans) == "naïve 🙂"
    assert [i for s in spans for i in s.ids] == gpt2_tokenizer("naïve 🙂")["input_ids"]
    assert all(hasattr(s, name) for s in spans for name in ("id", "token", "start", "end", "is_special"))


# --- through %llm_load -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tokenizer_only_load_is_enough_for_tokens_and_compare(shell, tiny_models):
    with capture_output():
        shell.run_line_magic("llm_load", f"{tiny_models['llama']} --tokenizer-only --as llama")
        shell.run_line_magic("llm_load", f"{tiny_models['gpt2']} --tokenizer-only --as gpt2")
    entry = magics(shell).registry.get("gpt2")
    assert entry.describe().tokenizer_only
    plain, markup = show(shell, "--compare llama The café 日本語")
    assert plain.index("── gpt2 ──") < plain.index("── llama ──")
    assert shown_text(markup) == ["The·café·日本語"] * 2


@pytest.mark.slow
def test_probs_match_a_direct_forward_pass(shell, tiny_models):
    import torch

    with capture_output():
        shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as llama --dtype float32")
    model, tokenizer = llm_magics.get_model("llama")
    text = "Paris is the capital of France."
    plain, markup = show(shell, f"--probs {text}")
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    # Summed in another order than the model's own loss, so the last digits may differ.
    shown = float(re.search(r"perplexity ([\d,.]+)", plain).group(1).replace(",", ""))
    assert shown == pytest.approx(math.exp(loss), rel=1e-4)
    assert "red = surprising, green = expected" in markup
    assert markup.count("background:hsla(") == len(ids) - 1


@pytest.mark.slow
def test_the_three_views_on_the_bundled_model(shell, gpt2_tokenizer):
    with capture_output():
        shell.run_line_magic("llm_load", "")
    name = magics(shell).registry.active_name
    add_entry(shell, "bpe", gpt2_tokenizer)
    magics(shell).registry.use(name)
    text = "Tokenizers differ: naïve café 日本語 🙂"
    plain, markup = show(shell, text)
    assert shown_text(markup) == [text.replace(" ", "·")]
    plain, markup = show(shell, f"--compare bpe {text}")
    assert f"── {name} ──" in plain and "── bpe ──" in plain
    plain, markup = show(shell, "--chat")
    assert "<|im_start|>" in plain and "example conversation" in plain
    plain, markup = show(shell, "--probs Paris is the capital of France.")
    assert re.search(r"perplexity [\d,]+\.\d\d", plain)


@pytest.mark.slow
def test_a_saved_notebook_keeps_the_three_views(tiny_models, tmp_path):
    """What the issue calls done: run the views in a real kernel, save, export to HTML, read them there."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    cells = [
        "%load_ext llm_magics",
        f"%llm_load {tiny_models['gpt2']} --tokenizer-only --as bpe",
        "%llm_load",
        "%tokens --compare bpe Tokenizers differ: naïve café 日本語 🙂 </div><script>alert(1)</script>",
        "%tokens --chat",
        "%tokens --probs Paris is the capital of France.",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    path = tmp_path / "tokens.ipynb"
    nbformat.write(notebook, path)

    saved = nbformat.read(path, as_version=4)
    views = [cell.outputs[-1] for cell in saved.cells[3:]]
    assert all(output.output_type == "display_data" and "text/html" in output.data for output in views)
    exported, _ = HTMLExporter().from_notebook_node(saved)
    assert exported.count('<div class="llm-tok">') == 3
    text = "Tokenizers·differ:·naïve·café·日本語·🙂·</div><script>alert(1)</script>"
    assert shown_text(exported)[:2] == [text, text]
    assert ">bpe</div>" in exported and ">smollm2-135m</div>" in exported
    assert "as the model receives it" in exported and "&lt;|im_start|&gt;" in exported
    assert re.search(r"perplexity [\d,]+\.\d\d", exported)
    assert "<script>alert(1)</script>" not in exported


def test_an_engine_with_a_tokenizer_but_no_scores_shows_tokens_but_no_probs(shell, gpt2_tokenizer):
    from tests.helpers import assert_one_line_error, run

    magics(shell).registry.add(fake_engine("fake", tokenizer=gpt2_tokenizer))
    result, captured = run(shell, "%tokens hello world")
    assert result.success and "11 characters" in captured.outputs[0].data["text/plain"]
    result, captured = run(shell, "%tokens --probs hello world")
    assert_one_line_error(result, captured, "NotSupported", "has no token probabilities")
