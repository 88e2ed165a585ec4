"""The remote token view: a server's `/tokenize` read as a tokenizer by `llm_magics.tokens`, and
prompt log-probabilities. The server is the fake vLLM of `tests.remote_servers` (its fields are
vLLM's, named there), playing SmolLM2 with SmolLM2's real tokenizer, so every view can be compared
with the one the local tokenizer gives."""

from __future__ import annotations

import math

import pytest

from llm_magics.engines.base import ScoresTokens, Tokenizes
from llm_magics.engines.remote import ScoringRemoteEngine, connect
from llm_magics.engines.remote.dialects import LlamaCppRoute
from llm_magics.engines.remote.pieces import offsets_from_pieces, vocabulary_bytes
from llm_magics.tokens import EXAMPLE_CONVERSATION, analyse, analyse_chat
from tests.remote_servers import FakeVllm

TEXTS = [
    "The quick brown fox",
    "  two leading spaces\tand a tab\nnew line",
    "Emoji 🙂 and accents café naïve, CJK 日本語, Arabic مرحبا.",
    "def add(a, b):\n    return a + b\n",
    "",
]


@pytest.fixture
def engine(fake: FakeVllm):
    engine = connect(fake.url)
    try:
        yield engine
    finally:
        engine.close()


def test_a_vllm_server_gives_a_token_view_and_probabilities(engine):
    assert isinstance(engine, ScoringRemoteEngine)
    assert isinstance(engine, Tokenizes) and isinstance(engine, ScoresTokens)
    details = dict(engine.describe().details)
    assert "/tokenize" in details["token view"] and "server" in details["token probabilities"]


@pytest.mark.parametrize("text", TEXTS)
def test_the_server_view_equals_the_local_one(engine, smollm_tokenizer, text):
    remote = analyse(engine.tokenizer, text, name="remote", context_length=2048)
    local = analyse(smollm_tokenizer, text, name="local", context_length=2048)
    assert remote.ids == local.ids
    assert [(s.text, s.start, s.end, s.ids, s.tokens) for s in remote.spans] == [
        (s.text, s.start, s.end, s.ids, s.tokens) for s in local.spans
    ]
    assert remote.decoded == local.decoded and remote.changes_total == local.changes_total == 0


def test_the_server_chat_view_equals_the_local_one(engine, smollm_tokenizer):
    remote = analyse_chat(engine.tokenizer, EXAMPLE_CONVERSATION, name="remote")
    local = analyse_chat(smollm_tokenizer, EXAMPLE_CONVERSATION, name="local")
    assert remote.text == local.text and remote.ids == local.ids
    assert [(s.start, s.end, s.ids) for s in remote.spans] == [(s.start, s.end, s.ids) for s in local.spans]
    assert remote.roles == local.roles
    # The template's own special tokens are badges, as with a local tokenizer.
    specials = {s.token for s in remote.spans if s.is_special}
    assert "<|im_start|>" in specials


def test_prompt_probabilities_come_from_the_server(engine, fake: FakeVllm):
    ids = engine.tokenizer("Paris is the capital of France.")["input_ids"]
    probs = engine.token_probabilities(ids, top_k=3)
    assert probs.probs[0] is None and probs.top[0] is None
    for i in range(1, len(ids)):
        assert probs.probs[i] == pytest.approx(math.exp(-0.5 * i))
        assert [round(p, 6) for _, _, p in probs.top[i]] == sorted(
            (round(p, 6) for _, _, p in probs.top[i]), reverse=True
        )
        assert len(probs.top[i]) == 3
    mean_nll = sum(0.5 * i for i in range(1, len(ids))) / (len(ids) - 1)
    assert probs.perplexity == pytest.approx(math.exp(mean_nll))
    request = [body for path, body in fake.requests if path == "/v1/completions"][-1]
    assert request["echo"] is True and request["max_tokens"] == 0 and request["logprobs"] == 3
    assert request["prompt"] == ids


def test_the_chat_prompt_is_counted_by_the_server(engine, fake: FakeVllm, smollm_tokenizer):
    count = engine.count_chat_tokens(EXAMPLE_CONVERSATION)
    expected = smollm_tokenizer.apply_chat_template(EXAMPLE_CONVERSATION, add_generation_prompt=True)
    assert count == len(expected["input_ids"])


def test_byte_level_strings_become_bytes():
    assert vocabulary_bytes(["Hello", "Ġworld", "Ċ", "ðŁĻĤ"]) == [b"Hello", b" world", b"\n", "🙂".encode()]


def test_sentencepiece_strings_become_bytes_and_skip_the_dummy_prefix():
    pieces = vocabulary_bytes(
        ["<s>", "▁Hello", "▁wor", "ld", "<0x0A>", "<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
    )
    assert pieces[1:4] == [b" Hello", b" wor", b"ld"] and pieces[4] == b"\n"
    text = "Hello world\n🙂"
    offsets = offsets_from_pieces(text, pieces)
    assert offsets[0] == (0, 0)  # <s>: added, not in the text
    assert offsets[1] == (0, 5)  # "▁Hello": the leading space is the dummy prefix
    assert offsets[2:5] == [(5, 9), (9, 11), (11, 12)]
    assert offsets[5:] == [(12, 13)] * 4  # four byte tokens share the emoji


def test_llama_cpp_pieces_are_read_as_text_or_bytes():
    answer = {
        "tokens": [{"id": 1, "piece": "Hello"}, {"id": 2, "piece": " world"}, {"id": 3, "piece": [240, 159]}]
    }
    ids, strings, pieces = LlamaCppRoute().read_tokens(answer)
    assert ids == [1, 2, 3] and pieces == [b"Hello", b" world", b"\xf0\x9f"]
    assert strings[:2] == ["Hello", " world"]
