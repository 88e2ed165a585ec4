"""`%llm_attention` and `llm_magics.inside.attention`: the weights equal a hand computation, the
model keeps its own attention, the views are safe and small, refusals are one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_magics.display.attention import AttentionExplorer, AttentionView
from llm_magics.inside.attention import attention, eager_attention
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.test_code import execute, printed_code
from tests.test_next_token import TinyEngine, TokenizerOnly

HOSTILE = "<img src=x onerror=alert(1)>"


def hand_attention(model, ids, layer: int) -> torch.Tensor:
    """Llama attention of one layer written out: norm, q/k projections, rotary, causal softmax."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    n = len(ids)
    inputs = torch.tensor([ids])
    with torch.no_grad():
        state = model(input_ids=inputs, output_hidden_states=True).hidden_states[layer]
        block = model.model.layers[layer]
        x = block.input_layernorm(state)
        dim = block.self_attn.head_dim
        q = block.self_attn.q_proj(x).view(1, n, -1, dim).transpose(1, 2)
        k = block.self_attn.k_proj(x).view(1, n, -1, dim).transpose(1, 2)
        cos, sin = model.model.rotary_emb(state, position_ids=torch.arange(n)[None])
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim)
        scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
        return torch.softmax(scores.float(), dim=-1)[0]


@pytest.fixture
def tiny(shell, loaded_tiny):
    model, tokenizer = loaded_tiny("llama")
    engine = TinyEngine("tiny-llama", model, tokenizer)
    magics(shell).registry.add(engine)
    return engine


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_weights_equal_a_hand_computation_and_the_model_keeps_sdpa(which, loaded_tiny, request):
    model, tokenizer = loaded_tiny("llama") if which == "tiny" else request.getfixturevalue("smollm")
    before = model.config._attn_implementation
    seen = attention(TinyEngine(which, model, tokenizer), "The cat sat on the mat because it was tired")
    assert model.config._attn_implementation == before == "sdpa"
    assert seen.weights.shape == (
        model.config.num_hidden_layers,
        model.config.num_attention_heads,
        len(seen.ids),
        len(seen.ids),
    )
    for layer in (0, seen.layers - 1):
        expected = hand_attention(model, list(seen.ids), layer).numpy()
        np.testing.assert_allclose(seen.weights[layer], expected, atol=2e-5)
    np.testing.assert_allclose(seen.weights.sum(axis=-1), 1, atol=1e-4)
    # After a start-of-text token where the tokenizer adds one, the labels spell the text.
    assert "".join(seen.tokens).endswith("The cat sat on the mat because it was tired")


def test_eager_attention_is_restored_after_an_error(loaded_tiny):
    model, _ = loaded_tiny("llama")
    with pytest.raises(KeyboardInterrupt), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise KeyboardInterrupt
    assert model.config._attn_implementation == "sdpa"


def test_magic_draws_grid_and_heatmap_and_a_text_table(shell, tiny):
    result, captured = run(shell, "%llm_attention --head 1 The cat sat on the mat")
    assert result.success and result.result is None
    page, text = shown_html(captured), shown_text(captured)
    assert "<script" not in page and page.count("<svg") == 2 * 4 + 1
    assert "layer 1 of 0–1 · head 1 of 0–3" in text and "→" in text
    assert "<title>" in page and "→ &#x27;The&#x27; (0)" in page
    seen = attention(tiny, "The cat sat on the mat")
    assert AttentionView(seen, head=1).text() == text.strip()
    assert "·cat" in text  # spaces drawn as %tokens draws them


def test_cell_form_and_mean_over_heads(shell, tiny):
    result, captured = run(shell, "%%llm_attention --layer 0\nOne\ttwo")
    assert result.success
    assert "layer 0 of 0–1 · mean over 4 heads" in shown_text(captured) and "→" in shown_text(captured)


def test_hostile_text_is_escaped(shell, tiny):
    _, captured = run(shell, f"%llm_attention {HOSTILE}")
    page = shown_html(captured)
    assert "<img" not in page and "&lt;" in page and "&gt;" in page


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%llm_attention --layer 7 Hi there", "InvalidOption", "--layer must be between 0 and 1"),
        ("%llm_attention --head -9 Hi there", "InvalidOption", "--head must be between 0 and 3"),
        ("%llm_attention", "InvalidOption", "Nothing to look at"),
        ("%llm_attention " + "word " * 200, "InvalidOption", "attention_max_tokens"),
    ],
)
def test_bad_input_is_one_line(shell, tiny, line, error, fragment):
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)


def test_the_bound_is_a_trait(shell, tiny):
    shell.run_line_magic("config", "LlmMagics.attention_max_tokens = 3")
    result, captured = run(shell, "%llm_attention The cat sat on the mat")
    assert_one_line_error(result, captured, "InvalidOption", "at most 3 tokens")


def test_engine_without_a_model_gets_one_line(shell, gpt2_tokenizer):
    magics(shell).registry.add(TokenizerOnly(gpt2_tokenizer))
    result, captured = run(shell, "%llm_attention Hello")
    assert_one_line_error(result, captured, "NotSupported", "has no model object")


def test_live_sliders_redraw_the_large_heatmap(tiny):
    seen = attention(tiny, "The cat sat on the mat")
    explorer = AttentionExplorer(seen, layer=1, head=None)
    assert "mean over 4 heads" in explorer.output.value
    explorer.mean.value = False
    explorer.head.value = 2
    explorer.layer.value = 0
    assert "layer 0 of 0–1 · head 2 of 0–3" in explorer.output.value
    assert explorer.output.value.count("<svg") == 1
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "<svg" in bundle["text/html"]
    assert "mean over 4 heads" in bundle["text/plain"]


def test_a_64_token_view_stays_small(tiny):
    seen = attention(tiny, " ".join(["word"] * 64))
    assert len(seen.ids) >= 64
    assert len(AttentionView(seen).html()) < 1_000_000


def test_code_gives_the_same_weights(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as mine")
    result, captured = run(shell, "%llm_attention --code --layer 1 --head 2 The cat sat")
    assert result.success, result.error_in_exec
    namespace = execute(printed_code(captured))
    ours = attention(magics(shell).registry.get("mine"), "The cat sat")
    np.testing.assert_allclose(namespace["weights"].numpy(), ours.weights, atol=1e-6)
    np.testing.assert_allclose(namespace["chosen"].numpy(), ours.matrix(1, 2), atol=1e-6)


@pytest.mark.slow
def test_a_4bit_model_gives_its_own_weights(bundled_gguf):
    """On a bitsandbytes 4-bit load the view reads the quantized model's own attention."""
    pytest.importorskip("bitsandbytes")
    import llm_magics

    engine = llm_magics.load(None, quantization="4bit")
    try:
        assert type(engine.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
        seen = attention(engine, "The cat sat on the mat")
        # It computes in its compute dtype (bfloat16 or float16): eager attention's softmax is
        # float32, then rounded to that dtype (8 bits of mantissa), so rows sum to 1 within 1%.
        np.testing.assert_allclose(seen.weights.sum(axis=-1), 1, atol=1e-2)
        last = len(seen.weights) - 1
        n = len(seen.ids)
        assert not seen.weights[:, :, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]].any(), "causal"
        # The hand computation rounds to 16 bits at other steps than the kernels: a few hundredths.
        expected = hand_attention(engine.model, list(seen.ids), last).numpy()
        np.testing.assert_allclose(seen.weights[last], expected, atol=3e-2)
    finally:
        engine.close()
