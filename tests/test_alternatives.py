"""`%%llm_chat --alternatives`, `%llm_history --alternatives` and `llm_magics.reply_alternatives`."""

from __future__ import annotations

import math

import pytest
import torch

import llm_magics
from llm_magics.display.alternatives import AlternativesView
from llm_magics.inside.alternatives import Alternative, Branch, Position, ReplyAlternatives
from tests.helpers import assert_one_line_error, magics, run

QUESTION = "What is the capital of France?"


def chat(shell, message: str, options: str = ""):
    return run(shell, f"%%llm_chat {options}\n{message}")


def session(shell, name: str | None = None):
    return magics(shell).registry.get(name).session


@pytest.fixture
def tiny(shell, tiny_models):
    result, _ = run(shell, f"%llm_load {tiny_models['llama']} --as tiny --dtype float32")
    assert result.success
    return "tiny"


def by_hand(name: str, prompt_ids, reply_ids) -> list[torch.Tensor]:
    """softmax(model(prefix).logits[-1]) for each token of the reply, one forward pass each."""
    model, _ = llm_magics.get_model(name)
    rows = []
    with torch.inference_mode():
        for index in range(len(reply_ids)):
            ids = torch.tensor([[*prompt_ids, *reply_ids[:index]]])
            rows.append(torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1))
    return rows


def check_numbers(name: str, shell) -> None:
    scores = session(shell).last_scores
    alternatives = llm_magics.reply_alternatives(show=4, expand=2, branch_tokens=3)
    rows = by_hand(name, scores.prompt_ids, scores.ids)
    assert len(alternatives.positions) == len(scores.ids) == len(rows)
    for position, row in zip(alternatives.positions, rows, strict=True):
        assert position.probability == pytest.approx(float(row[position.id]), abs=1e-5)
        assert len(position.runners_up) == 4
        probabilities = [alt.probability for alt in position.runners_up]
        assert probabilities == sorted(probabilities, reverse=True)
        for alt in position.runners_up:
            assert alt.id != position.id
            assert alt.probability == pytest.approx(float(row[alt.id]), abs=1e-5)
    assert len(alternatives.expanded) == 2
    assert all(len(p.branches) == 4 for p in alternatives.expanded)
    assert alternatives.probabilities.shape == (len(rows),)


def test_greedy_reply_is_unchanged_and_the_numbers_are_the_models(shell, tiny):
    chat(shell, QUESTION, "--new --max-new-tokens 10")
    plain, plain_ids = shell.user_ns["_llm_reply"], list(session(shell).cached_ids)
    assert session(shell).last_scores is None
    result, captured = chat(shell, QUESTION, "--new --max-new-tokens 10 --alternatives --show 3")
    assert result.success
    assert shell.user_ns["_llm_reply"] == plain
    assert list(session(shell).cached_ids) == plain_ids
    scores = session(shell).last_scores
    # The cache covers every token but the last (whose keys were never computed).
    assert [*scores.prompt_ids, *scores.ids][: len(plain_ids)] == plain_ids
    view = captured.outputs[-1].data
    assert "Alternatives of tiny" in view["text/plain"] and "<details>" in view["text/html"]
    assert "<script" not in view["text/html"].replace("<style>", "")
    check_numbers(tiny, shell)

    result, captured = run(shell, "%llm_history --alternatives --show 2")
    assert result.success and "Alternatives of tiny" in captured.outputs[-1].data["text/plain"]
    # The next turn reuses the cache as before.
    result, captured = chat(shell, "And Germany?", "--max-new-tokens 4")
    assert result.success and "reused" in captured.outputs[-1].data["text/plain"]
    assert session(shell).last_scores is None


@pytest.mark.slow
def test_bundled_model_reply_is_unchanged_and_its_numbers_match(shell):
    assert run(shell, "%llm_load --as smol --dtype float32")[0].success
    chat(shell, QUESTION, "--new --max-new-tokens 12")
    plain = shell.user_ns["_llm_reply"]
    assert chat(shell, QUESTION, "--new --max-new-tokens 12 --alternatives")[0].success
    assert shell.user_ns["_llm_reply"] == plain
    check_numbers("smol", shell)


def test_sampled_reply_probabilities_use_its_temperature(shell, tiny):
    assert chat(shell, QUESTION, "--max-new-tokens 5 --temperature 0.7 --seed 1 --alternatives")[0].success
    scores = session(shell).last_scores
    assert scores.temperature == 0.7
    model, _ = llm_magics.get_model(tiny)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[*scores.prompt_ids]])).logits[0, -1].float()
    assert scores.probabilities[0] == pytest.approx(
        float(torch.softmax(logits / 0.7, -1)[scores.ids[0]]), abs=1e-5
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("--alternatives --show 0", "--show must be between 1 and"),
        ("--alternatives --show 99", "--show must be between 1 and"),
        ("--show 3", "--show applies to --alternatives"),
        ("--alternatives --compare tiny", "leave out --compare"),
    ],
)
def test_bad_options_are_one_line_and_change_nothing(shell, tiny, options, fragment):
    chat(shell, "Hello", "--max-new-tokens 3")
    before = [dict(m) for m in session(shell).conversation.messages]
    result, captured = chat(shell, QUESTION, options)
    assert_one_line_error(result, captured, "InvalidOption", fragment)
    assert session(shell).conversation.messages == before


def test_history_without_alternatives_says_so_in_one_line(shell, tiny, tmp_path):
    chat(shell, "Hello", "--max-new-tokens 3 --alternatives")
    path = tmp_path / "chat.json"
    assert run(shell, f"%llm_history --save {path}")[0].success
    assert "alternatives" not in path.read_text()
    assert run(shell, f"%llm_history --load {path}")[0].success
    result, captured = run(shell, "%llm_history --alternatives")
    assert_one_line_error(result, captured, "NoAlternatives", "has no alternatives")


def test_views_escape_model_text_and_read_in_a_terminal():
    runner = Alternative(2, "<script>alert(1)</script>", 0.25)
    view = ReplyAlternatives(
        model="m<b>",
        positions=(
            Position(0, 1, "<img src=x>", 0.5, (runner,), "", branches=(Branch(runner, ' "&<i>'),)),
            Position(1, 3, " \u202e end", 0.9, (), "<img src=x>"),
        ),
        show=1,
        temperature=1.0,
        source="logits",
        expand=1,
        branch_tokens=3,
    )
    bundle = AlternativesView(view)._repr_mimebundle_()
    page = bundle["text/html"]
    for raw in ("<script", "<img", "<b>", "<i>", "\u202e"):
        assert raw not in page
    assert "&lt;script&gt;" in page and "<details>" in page
    text = bundle["text/plain"]
    assert "50.00%" in text and "⟨U+202E⟩" in text and "could have been" in text


def test_code_prints_lines_that_give_the_same_numbers(shell, tiny, capsys):
    result, captured = chat(shell, QUESTION, "--new --max-new-tokens 6 --alternatives --show 2 --code")
    assert result.success
    code = next(
        o.data["text/plain"] for o in captured.outputs if "output_logits=True" in o.data["text/plain"]
    )
    namespace: dict = {}
    exec(compile(code, "<--code>", "exec"), namespace)  # noqa: S102 - the code we print for users
    scores = session(shell).last_scores
    assert namespace["new_ids"].tolist() == list(scores.ids)
    assert namespace["chosen"].tolist() == pytest.approx(list(scores.probabilities), abs=1e-5)
    assert len(capsys.readouterr().out.splitlines()) >= len(scores.ids)


def test_a_server_without_logprobs_shows_the_reply_and_one_line(shell, fake):
    fake.chat_logprobs = False
    assert run(shell, f"%llm_load --endpoint {fake.url} --as remote")[0].success
    result, captured = chat(shell, "Hello", "--max-new-tokens 4 --alternatives")
    assert result.success and shell.user_ns["_llm_reply"]
    assert "returned no log-probabilities" in captured.outputs[-1].data["text/plain"]
    result, captured = run(shell, "%llm_history --alternatives")
    assert_one_line_error(result, captured, "NoAlternatives", "has no alternatives")


def test_a_vllm_servers_logprobs_are_the_alternatives(shell, fake):
    """vLLM streams each token's log-probability and its top K with the delta, when asked."""
    assert run(shell, f"%llm_load --endpoint {fake.url} --as remote")[0].success
    result, captured = chat(shell, "Hello", "--max-new-tokens 4 --alternatives --show 3")
    assert result.success
    sent = [body for path, body in fake.requests if path == "/v1/chat/completions"][-1]
    # As many as vLLM gives by default (its --max-logprobs, 20): %llm_history --show may ask for more later.
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 20)
    scores = session(shell).last_scores
    assert scores.tokens == ("t0 ", "t1 ", "t2 ", "t3 ")
    assert scores.probabilities == pytest.approx([math.exp(-0.1 * (i + 1)) for i in range(4)])
    assert scores.top_tokens[0][:3] == ("t0 ", "r1 ", "r2 ")
    text = captured.outputs[-1].data["text/plain"]
    assert "r1" in text and "returned no log-probabilities" not in text
    result, captured = run(shell, "%llm_history --alternatives --show 2")
    assert result.success and "r1" in captured.outputs[-1].data["text/plain"]


def test_an_interrupt_keeps_the_partial_reply_and_no_alternatives(shell, tiny):
    from tests.helpers import RaiseOnForward

    chat(shell, "Hello", "--max-new-tokens 3 --alternatives")
    model, _ = llm_magics.get_model(tiny)
    hook = model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=3))
    try:
        result, captured = chat(shell, "Tell me more", "--max-new-tokens 20 --alternatives")
    finally:
        hook.remove()
    assert_one_line_error(result, captured, "GenerationInterrupted", "the partial reply is kept")
    assert session(shell).conversation.messages[-1]["content"] == shell.user_ns["_llm_reply"]
    assert session(shell).last_scores is None
    assert chat(shell, "Continue", "--max-new-tokens 3 --alternatives")[0].success
    assert session(shell).last_scores is not None
