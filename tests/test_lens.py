"""`%llm_next --lens` and `llm_magics.inside.lens`: each row is the final norm and head applied by
hand, the last row is the model's own distribution, refusals are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm_magics.display.lens import LensView
from llm_magics.inside.lens import final_norm, logit_lens, settling_layer
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.test_code import execute, printed_code
from tests.test_next_token import TinyEngine, TokenizerOnly


@pytest.fixture
def tiny(shell, loaded_tiny):
    model, tokenizer = loaded_tiny("llama")
    engine = TinyEngine("tiny-llama", model, tokenizer)
    magics(shell).registry.add(engine)
    return engine


@pytest.mark.parametrize("which", ["tiny", "bundled", "gpt2"])
def test_rows_are_norm_and_head_by_hand_and_the_last_is_the_model(which, loaded_tiny, request):
    if which == "bundled":
        model, tokenizer = request.getfixturevalue("smollm")
    else:
        model, tokenizer = loaded_tiny("gpt2" if which == "gpt2" else "llama")
    engine = TinyEngine(which, model, tokenizer)
    lens = logit_lens(engine, "The capital of France is", show=3)
    ids = list(tokenizer("The capital of France is")["input_ids"])
    own = torch.softmax(engine_logits(model, ids), -1).numpy()
    np.testing.assert_allclose(lens.probabilities[-1], own, atol=1e-5)
    with torch.no_grad():
        states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        norm, head = final_norm(model), model.get_output_embeddings()
        # transformers 5 already normed the last hidden state: head alone gives the logits.
        np.testing.assert_allclose(torch.softmax(head(states[-1][0, -1]), -1).numpy(), own, atol=1e-5)
        for layer in (0, 1):
            by_hand = torch.softmax(head(norm(states[layer][0, -1])), -1).numpy()
            np.testing.assert_allclose(lens.probabilities[layer], by_hand, atol=1e-5)
    assert len(lens.rows) == model.config.num_hidden_layers + 1
    assert lens.answer.id == int(np.argmax(own)) and lens.rows[-1][0] == lens.answer
    assert all(row[0].id == lens.answer.id for row in lens.rows[lens.settles :])


def engine_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def test_settling_layer():
    assert settling_layer(np.array([1, 2, 3, 3])) == 2
    assert settling_layer(np.array([3, 2, 3, 3])) == 2
    assert settling_layer(np.array([3, 3, 3])) == 0
    assert settling_layer(np.array([1, 2])) == 1


def test_magic_shows_a_table_of_layers(shell, tiny):
    result, captured = run(shell, "%llm_next --lens --show 2 The capital of France is")
    assert result.success and result.result is None
    page, text = shown_html(captured), shown_text(captured)
    assert "<script" not in page and page.count("<tr") == 1 + 3 and 'class="settle"' in page
    assert "embeddings" in text and "2 (output)" in text and "▶" in text
    assert text.strip() == LensView(logit_lens(tiny, "The capital of France is", show=2)).text()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("%llm_next --lens --steps 3 Hi", "drop --steps"),
        ("%llm_next --lens --live Hi", "drop --live"),
        ("%llm_next --code Hi", "--code goes with --lens"),
    ],
)
def test_options_that_do_not_go_with_lens_are_one_line(shell, tiny, line, fragment):
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, "InvalidOption", fragment)


def test_engine_without_a_model_gets_one_line(shell, gpt2_tokenizer):
    magics(shell).registry.add(TokenizerOnly(gpt2_tokenizer))
    result, captured = run(shell, "%llm_next --lens Hello")
    assert_one_line_error(result, captured, "NotSupported", "has no model object")


def test_a_model_without_a_final_norm_gets_one_line():
    from llm_magics.errors import NotSupported

    with pytest.raises(NotSupported, match="final norm"):
        final_norm(torch.nn.Linear(2, 2))


def test_code_gives_the_same_probabilities(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as mine")
    result, captured = run(shell, "%llm_next --lens --code The capital of France is")
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert "model.model.norm" in code
    namespace = execute(code)
    ours = logit_lens(magics(shell).registry.get("mine"), "The capital of France is")
    np.testing.assert_allclose(namespace["probabilities"].numpy(), ours.probabilities, atol=1e-6)
