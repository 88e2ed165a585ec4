"""The token core and its renderers, without a shell: spans, counts, chat templates, probabilities."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_magics.display.tokens import TokenView, visible
from llm_magics.engines.transformers.scoring import token_probabilities
from llm_magics.errors import InvalidOption
from llm_magics.tokens import (
    analyse,
    analyse_chat,
    normalisation_changes,
    tokenize_text,
    with_probabilities,
)
from tests import factories

HOSTILE = [
    "</div><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<style>body{display:none}</style>",
    "&lt;b&gt; & <!-- comment --> ]]>",
    "' onmouseover='alert(1)",
]

_ALLOWED_TAGS = {"div", "span", "style", "br", "wbr"}
_ALLOWED_ATTRIBUTES = {"class", "title", "style"}


class _Markup(HTMLParser):
    """Collects the tags, attributes and visible text of a rendered view."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.titles: list[str] = []
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self.titles.extend(value or "" for name, value in attrs if name == "title")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.text.append(data)


def parse(markup: str) -> _Markup:
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return parser


_OUR_TAG = re.compile(r'</?(?:div|span|br|wbr)(?: (?:class|title|style)="[^"<>]*")*>')
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


def assert_only_our_markup(markup: str) -> None:
    """Every `<`, `>`, quote and `&` outside the stylesheet belongs to a tag we write or an entity."""
    body = re.sub(r"<style>.*?</style>", "", markup, flags=re.S)
    rest = _ENTITY.sub("", _OUR_TAG.sub("", body))
    assert not set(rest) & set('<>"&'), rest


def token_text(markup: str) -> str:
    """What the reader sees in the token area of the first panel (markers included)."""
    area = re.search(r'<div class="text">(.*?)</div>', markup, re.S)
    assert area is not None
    return "".join(parse(area.group(1)).text)


def bos_tokenizer():
    """The byte-level BPE tokenizer, made to add a BOS token in front of every text (as Llama's does)."""
    from tokenizers import processors

    tokenizer = factories.byte_bpe_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)]
    )
    return tokenizer


def sentencepiece_tokenizer():
    """Llama-2 style: spaces normalised to "▁" with one prepended, byte fallback, and a BOS."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    core.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    core.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    core.train_from_iterator(factories.CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=specials))
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def lowercasing_tokenizer():
    from tokenizers import normalizers

    tokenizer = factories.byte_bpe_tokenizer()
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer


def space_dropping_tokenizer():
    """Splits on whitespace and throws it away, as word-level tokenizers do."""
    from tokenizers import pre_tokenizers

    tokenizer = factories.byte_bpe_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    return tokenizer


def assert_tiles(spans, text: str) -> None:
    assert "".join(span.text for span in spans) == text
    position = 0
    for span in spans:
        assert span.start == position
        assert span.text == text[span.start : span.end]
        position = span.end
    assert position == len(text)


# --- spans -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_spans_tile_any_text_and_ids_match_the_tokenizer(gpt2_tokenizer, smollm_tokenizer, text):
    for tokenizer in (gpt2_tokenizer, smollm_tokenizer):
        spans = tokenize_text(tokenizer, text)
        assert_tiles(spans, text)
        assert [i for span in spans for i in span.ids] == tokenizer(text)["input_ids"]
        # Every token covers characters (pieces of one character are merged, not left empty);
        # only a special token the tokenizer adds itself covers none.
        assert all(span.text or span.is_special for span in spans if span.ids)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40))
def test_spans_tile_text_when_the_tokenizer_adds_a_bos(text):
    tokenizer = _BOS
    spans = tokenize_text(tokenizer, text)
    assert_tiles(spans, text)
    assert spans[0].text == "" and spans[0].is_special and spans[0].ids == (0,)
    assert [i for span in spans for i in span.ids] == tokenizer.encode(text)


_BOS = bos_tokenizer()
_SENTENCEPIECE = sentencepiece_tokenizer()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_spans_tile_text_under_a_sentencepiece_style_tokenizer(text):
    spans = tokenize_text(_SENTENCEPIECE, text)
    assert_tiles(spans, text)
    assert [i for span in spans for i in span.ids] == _SENTENCEPIECE(text)["input_ids"]
    assert all(span.text or span.is_special for span in spans if span.ids)


@pytest.mark.parametrize("text", ["🙂", "日本語", "café naïve", "👩‍👩‍👧 family", "e\u0301 combining"])
def test_split_characters_are_shown_once_with_all_their_ids(gpt2_tokenizer, smollm_tokenizer, text):
    for tokenizer in (gpt2_tokenizer, smollm_tokenizer):
        spans = tokenize_text(tokenizer, text)
        assert_tiles(spans, text)
        # The raw vocabulary pieces of a split character decode to "�" on their own...
        for span in spans:
            assert "\ufffd" not in span.text
        # ...and the view of the whole text shows none.
        view = TokenView([analyse(tokenizer, text)])
        assert "\ufffd" not in "".join(parse(view.html()).text)
        assert "\ufffd" not in view.text()


def test_an_emoji_split_into_bytes_is_one_span_with_several_ids(gpt2_tokenizer):
    spans = tokenize_text(gpt2_tokenizer, "a 🙂")
    emoji = next(span for span in spans if "🙂" in span.text)
    assert len(emoji.ids) >= 2
    assert emoji.id is None
    assert gpt2_tokenizer.decode(list(emoji.ids)) == emoji.text
    title = next(
        t
        for t in parse(TokenView([analyse(gpt2_tokenizer, "a 🙂")]).html()).titles
        if "share these characters" in t
    )
    assert " ".join(map(str, emoji.ids)) in title


def test_special_tokens_in_the_text_are_marked(gpt2_tokenizer):
    spans = tokenize_text(gpt2_tokenizer, "end<|endoftext|>next")
    special = [span for span in spans if span.is_special]
    assert [(s.text, s.ids) for s in special] == [("<|endoftext|>", (0,))]
    assert all(not span.is_special for span in spans if span.text != "<|endoftext|>")


def test_characters_no_token_covers_become_spans_without_ids():
    tokenizer = space_dropping_tokenizer()
    view = analyse(tokenizer, "hello  world")
    assert_tiles(view.spans, "hello  world")
    gaps = [span for span in view.spans if not span.ids]
    assert [gap.text for gap in gaps] == ["  "]
    assert not view.round_trips
    assert view.changes[0].describe() == "'  ' at 5 was dropped"


# --- counts, normalisation, the cut ----------------------------------------------------------


def test_counts_and_context_share(gpt2_tokenizer):
    text = "The quick brown fox jumps over the lazy dog."
    view = analyse(gpt2_tokenizer, text, name="bpe", context_length=100)
    n = len(gpt2_tokenizer(text)["input_ids"])
    assert (view.n_tokens, view.n_chars) == (n, len(text))
    rendered = TokenView([view]).text()
    assert f"{n} tokens · {len(text)} characters · {len(text) / n:.2f} characters per token" in rendered
    assert f"{n / 100:.1%} of the 100-token context window" in rendered
    assert f"width:{n:.2f}%" in TokenView([view]).html()


def test_a_tokenizer_that_normalises_says_what_changed():
    view = analyse(lowercasing_tokenizer(), "Hello World")
    assert not view.round_trips
    assert view.decoded == "hello world"
    assert [c.describe() for c in view.changes] == ["'H' at 0 became 'h'", "'W' at 6 became 'w'"]
    assert "'H' at 0 became 'h'" in TokenView([view]).text()


def test_the_added_bos_is_not_a_normalisation_change():
    view = analyse(_BOS, "plain text")
    assert view.round_trips
    assert "Decoding the ids gives the text back exactly." in TokenView([view]).text()


def test_normalisation_changes_lists_a_few_and_counts_all():
    original = "".join(f"W{i} " for i in range(10))
    changes, total = normalisation_changes(original, original.lower())
    assert total == 10
    assert len(changes) == 5
    assert changes[0].describe() == "'W' at 0 became 'w'"


def test_a_long_text_is_cut_at_max_tokens_and_counts_stay_exact(gpt2_tokenizer):
    text = ("Tokenizers split text into pieces; 日本語 🙂 café. " * 2200)[:100_000]
    view = analyse(gpt2_tokenizer, text, max_tokens=2000)
    full = gpt2_tokenizer(text)["input_ids"]
    assert view.n_tokens == len(full) > 2000
    assert view.n_chars == 100_000
    assert view.truncated
    assert 1990 < view.shown_tokens <= 2000
    assert_tiles(view.spans, text[: view.shown_chars])
    rendered = TokenView([view], max_tokens=2000)
    assert f"Showing the first {view.shown_tokens:,} of {len(full):,} tokens" in rendered.text()
    markup = rendered.html()
    assert markup.count('class="t ') == len(view.spans)
    assert f"{len(full):,} tokens · 100,000 characters" in markup


def test_the_cut_view_is_a_prefix_of_the_full_spans(gpt2_tokenizer):
    text = "Emoji 🙂🙂 and 日本語, café\n\tnaïve " * 3
    full = tokenize_text(gpt2_tokenizer, text)
    n = len(gpt2_tokenizer(text)["input_ids"])
    for limit in range(1, n + 2):
        view = analyse(gpt2_tokenizer, text, max_tokens=limit)
        assert view.spans == full[: len(view.spans)]
        assert view.truncated == (limit < n)
        rest = [span for span in full[len(view.spans) :] if span.ids]
        # Cut exactly at the limit, or before a merged span that would cross it.
        assert view.shown_tokens == min(limit, n) or rest[0].index + len(rest[0].ids) > limit


def test_a_text_under_max_tokens_is_not_cut(gpt2_tokenizer):
    view = analyse(gpt2_tokenizer, "short", max_tokens=2000)
    assert not view.truncated
    assert "Showing the first" not in TokenView([view]).text()


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_is_escaped(gpt2_tokenizer, hostile):
    view = analyse(gpt2_tokenizer, hostile)
    markup = TokenView([view], show_ids=True).html()
    found = parse(markup)
    assert found.tags <= _ALLOWED_TAGS
    assert found.attributes <= _ALLOWED_ATTRIBUTES
    assert "<script" not in markup and "<img" not in markup and "<!--" not in markup
    assert markup.count("<style>") == 1
    assert_only_our_markup(markup)
    # What the reader sees is the text itself, spaces drawn as "·".
    assert token_text(TokenView([view]).html()) == visible(hostile)


def test_token_strings_in_tooltips_are_escaped(gpt2_tokenizer):
    view = analyse(gpt2_tokenizer, '"<b>"')
    markup = TokenView([view]).html()
    assert_only_our_markup(markup)
    assert "<b>" not in markup
    assert any("'<'" in title for title in parse(markup).titles)


def test_control_and_direction_characters_become_visible_markers(gpt2_tokenizer):
    text = "a\x00b\x1b[31mc\u202ed\u200be\r\n\tf\u00a0g"
    view = TokenView([analyse(gpt2_tokenizer, text)])
    markup = view.html()
    for raw in ("\x00", "\x1b", "\u202e", "\u200b", "\r", "\u00a0"):
        assert raw not in markup
    seen = "".join(parse(markup).text)
    for marker in ("␀", "␛[31m", "⟨U+202E⟩", "⟨U+200B⟩", "␍", "↵", "→", "⟨U+00A0⟩"):
        assert marker in seen
    plain = view.text()
    assert "\u202e" not in plain and "\x00" not in plain
    assert "␛[31m" in re.sub(r"\x1b\[[0-9;]*m", "", plain)


def test_right_to_left_and_mixed_scripts_render_in_logical_order(gpt2_tokenizer, smollm_tokenizer):
    text = "مرحبا world 日本語 Ελληνικά שלום"
    for tokenizer in (gpt2_tokenizer, smollm_tokenizer):
        view = analyse(tokenizer, text)
        assert_tiles(view.spans, text)
        markup = TokenView([view]).html()
        # Each token is isolated, so an RTL token cannot reorder its neighbours.
        assert "unicode-bidi:isolate" in markup
        assert token_text(markup).replace("·", " ") == text


def test_ids_are_shown_under_each_token(gpt2_tokenizer):
    view = analyse(gpt2_tokenizer, "Hello world")
    markup = TokenView([view], show_ids=True).html()
    shown = re.findall(r'<span class="id">([^<]*)</span>', markup)
    assert " ".join(shown).split() == [str(i) for i in gpt2_tokenizer("Hello world")["input_ids"]]
    assert 'class="id"' not in TokenView([view]).html()


def test_whitespace_markers_and_line_breaks(gpt2_tokenizer):
    view = TokenView([analyse(gpt2_tokenizer, "a b\tc\nd")])
    assert token_text(view.html()) == "a·b→c↵d"
    assert view.html().count("<br>") == 1
    assert "↵\n" in view.text() or "↵\x1b[0m\n" in view.text()


def test_the_added_bos_is_a_badge(gpt2_tokenizer):
    markup = TokenView([analyse(_BOS, "hi")]).html()
    assert re.search(r'<span class="t sp"[^>]*>&lt;\|endoftext\|&gt;</span>', markup)
    assert "added by the tokenizer" in markup


def test_html_is_self_contained(gpt2_tokenizer):
    markup = TokenView([analyse(gpt2_tokenizer, "text")]).html()
    assert "<script" not in markup and "http" not in markup and "@import" not in markup
    bundle = TokenView([analyse(gpt2_tokenizer, "text")])._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}


def test_compare_shows_both_tokenizers_with_their_counts(gpt2_tokenizer, smollm_tokenizer):
    text = "Tokenizers differ: naïve café 日本語 🙂"
    views = [analyse(smollm_tokenizer, text, name="smollm"), analyse(gpt2_tokenizer, text, name="bpe")]
    view = TokenView(views)
    markup = view.html()
    assert markup.count('<div class="panel">') == 2
    for name, tokenizer in (("smollm", smollm_tokenizer), ("bpe", gpt2_tokenizer)):
        n = len(tokenizer(text)["input_ids"])
        assert f">{name}</div>" in markup
        assert f"{n} tokens · {len(text)} characters" in view.text()
    assert views[0].n_tokens != views[1].n_tokens


def test_a_tokenizer_without_offsets_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(InvalidOption, match="offset"):
        tokenize_text(Slow(), "text")


def test_lone_surrogates_are_refused_with_a_clear_line(gpt2_tokenizer):
    with pytest.raises(InvalidOption, match=r"lone surrogate \(U\+D800 at 1\)"):
        analyse(gpt2_tokenizer, "a\ud800b")


# --- chat templates ---------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is <b>HTML</b>?"},
    {"role": "assistant", "content": "Markup for pages."},
    {"role": "user", "content": "And 日本語?"},
]


def test_chat_view_is_the_template_text_tokenised_as_the_model_sees_it(smollm_tokenizer):
    view = analyse_chat(smollm_tokenizer, CONVERSATION, name="smollm")
    expected_text = smollm_tokenizer.apply_chat_template(
        CONVERSATION, tokenize=False, add_generation_prompt=True
    )
    expected_ids = smollm_tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, add_generation_prompt=True
    )
    assert view.text == expected_text
    assert view.ids == list(expected_ids["input_ids"])
    assert_tiles(view.spans, expected_text)
    specials = [span.text for span in view.spans if span.is_special]
    assert specials.count("<|im_start|>") == 5 and specials.count("<|im_end|>") == 4
    content = {
        role: "".join(s.text for s, (r, c) in zip(view.spans, view.roles, strict=True) if c and r == role)
        for role in ("system", "user", "assistant")
    }
    assert content == {
        "system": "Be brief.",
        "user": "What is <b>HTML</b>?And 日本語?",
        "assistant": "Markup for pages.",
    }
    # The generation prompt closes the view: the assistant's turn, opened by the template.
    assert view.roles[-1] == ("assistant", False)


def test_chat_view_renders_roles_and_escapes_content(smollm_tokenizer):
    markup = TokenView([analyse_chat(smollm_tokenizer, CONVERSATION, name="smollm")]).html()
    assert "<b>" not in markup
    assert 'class="t user0"' in markup and 'class="t assistant0"' in markup and 'class="t system0"' in markup
    assert re.search(r'class="t sp"[^>]*>&lt;\|im_start\|&gt;<', markup)
    assert "what the chat template adds" in markup


def test_a_conversation_ending_with_the_assistant_has_no_generation_prompt(smollm_tokenizer):
    view = analyse_chat(smollm_tokenizer, CONVERSATION[:3])
    assert view.text == smollm_tokenizer.apply_chat_template(CONVERSATION[:3], tokenize=False)
    assert not view.text.endswith("<|im_start|>assistant\n")


def test_chat_without_a_template_is_a_clear_line(gpt2_tokenizer):
    with pytest.raises(InvalidOption, match="bpe has no chat template"):
        analyse_chat(gpt2_tokenizer, CONVERSATION, name="bpe")


# --- probabilities ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tiny_models):
    """An in-process engine over the tiny Llama (256-token context): what `%tokens --probs` scores with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_magics.engines.base import ScoresTokens
    from llm_magics.engines.transformers import TransformersEngine
    from llm_magics.values import EngineInfo, EngineKind

    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    model.eval()
    info = EngineInfo(name="tiny", source="llama", kind=EngineKind.TRANSFORMERS, context_length=256)
    engine = TransformersEngine(info, AutoTokenizer.from_pretrained(tiny_models["llama"]), model)
    assert isinstance(engine, ScoresTokens)
    return engine


@pytest.mark.slow
def test_probabilities_agree_with_a_direct_forward_pass(tiny_llama):
    import torch

    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    text = "Paris is the capital of France 🙂."
    view = with_probabilities(analyse(tokenizer, text, name="tiny", context_length=256), tiny_llama)
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]))
    expected = torch.softmax(out.logits[0].float(), dim=-1)
    assert view.probs is not None
    assert view.probs.probs[0] is None and view.probs.top[0] is None
    for i in range(1, len(ids)):
        assert view.probs.probs[i] == pytest.approx(expected[i - 1, ids[i]].item(), rel=1e-4)
        top = view.probs.top[i]
        assert top is not None and len(top) == 5
        values, indices = expected[i - 1].topk(5)
        assert [t[0] for t in top] == indices.tolist()
        assert [t[2] for t in top] == pytest.approx(values.tolist(), rel=1e-4)
    # transformers' own loss is the mean negative log-likelihood of the shifted tokens.
    assert view.probs.perplexity == pytest.approx(math.exp(out.loss.item()), rel=1e-4)


@pytest.mark.slow
def test_probabilities_show_in_the_view(tiny_llama):
    tokenizer = tiny_llama.tokenizer
    view = with_probabilities(analyse(tokenizer, "one two three", name="tiny"), tiny_llama)
    rendered = TokenView([view])
    assert view.probs is not None and view.probs.perplexity is not None
    assert f"perplexity {view.probs.perplexity:,.2f}" in rendered.html()
    assert f"perplexity {view.probs.perplexity:,.2f}" in rendered.text()
    titles = parse(rendered.html()).titles
    assert any("first token, nothing predicts it" in t for t in titles)
    second = view.spans[1]
    p = view.probs.probs[second.index]
    assert p is not None
    assert any(f"p({second.ids[0]}) = {p:.4f}" in t for t in titles)
    assert "background:hsla(" in rendered.html()


@pytest.mark.slow
def test_probabilities_need_the_text_to_fit_the_context(tiny_llama):
    tokenizer = tiny_llama.tokenizer
    text = "word " * 300
    n = len(tokenizer(text)["input_ids"])
    view = analyse(tokenizer, text, context_length=256)
    with pytest.raises(
        InvalidOption, match=rf"--probs needs the text to fit the model's context: {n} tokens > 256\."
    ):
        with_probabilities(view, tiny_llama)


@pytest.mark.slow
def test_token_probabilities_of_a_single_token_has_no_perplexity(tiny_llama):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    ids = tokenizer("hi")["input_ids"][:1]
    for probs in (token_probabilities(model, tokenizer, ids), tiny_llama.token_probabilities(ids)):
        assert probs.probs == [None] and probs.perplexity is None


@pytest.mark.slow
def test_next_token_logits_are_the_last_position_of_a_direct_forward_pass(tiny_llama):
    import torch

    ids = tiny_llama.tokenizer("Paris is the capital of")["input_ids"]
    logits = tiny_llama.next_token_logits(ids)
    with torch.no_grad():
        expected = tiny_llama.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    assert logits.shape == (tiny_llama.model.config.vocab_size,)
    torch.testing.assert_close(logits, expected)
