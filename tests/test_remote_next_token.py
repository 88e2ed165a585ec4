"""`%llm_next` on a remote engine: the fake vLLM of `tests.remote_servers` answers `max_tokens=1,
logprobs=K` with REAL log-probabilities from a tiny Llama run in-process (SmolLM2's tokenizer),
so each remote distribution is compared with the same model's own forward pass here."""

from __future__ import annotations

import math
import threading

import pytest

from llm_magics.display.next_token import NextTokenExplorer, NextTokenView, StepsView
from llm_magics.display.tokens import visible
from llm_magics.engines.base import PredictsTopNext, SamplesNext
from llm_magics.engines.remote import ScoringRemoteEngine, TokenizingRemoteEngine, connect
from llm_magics.errors import LogprobsRefused, NotSupported, SamplingRefused
from llm_magics.next_token import (
    PartialSampling,
    Sampling,
    ServerNextTokenSession,
    distribution_from_logits,
    distribution_from_top,
    next_token_distribution,
    next_token_session,
    next_token_steps,
    warp,
)
from llm_magics.values import TopLogprobs
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.remote_servers import FakeVllm

TEXT = "The capital of France is"


@pytest.fixture
def local(tiny_engine):
    """The tiny Llama in-process: the reference the server's answers must equal."""
    return tiny_engine("llama")


@pytest.fixture
def remote(fake: FakeVllm, local):
    fake.lm = local.model
    engine = connect(fake.url)
    try:
        yield engine
    finally:
        engine.close()


def _local_top(local, ids, k):
    import torch

    logits = local.next_token_logits(ids).float()
    probs = logits.softmax(dim=-1)
    values, indices = torch.topk(probs, k)
    return [int(i) for i in indices], [float(v) for v in values], logits


def _next_requests(fake: FakeVllm) -> list[dict]:
    return [body for path, body in fake.requests if path == "/v1/completions" and body.get("max_tokens") == 1]


# --------------------------------------------------------------------------- the distribution


def test_a_vllm_engine_predicts_the_top_k(remote):
    assert isinstance(remote, ScoringRemoteEngine) and isinstance(remote, PredictsTopNext)
    assert "log-probabilities" in dict(remote.describe().details)["next-token view"]


def test_the_server_top_k_equals_the_local_forward_pass(remote, local, fake: FakeVllm):
    dist = next_token_distribution(remote, TEXT, show=10)
    ids = local.tokenizer(TEXT)["input_ids"]
    top_ids, top_probs, _ = _local_top(local, ids, 10)
    assert [c.id for c in dist.candidates] == top_ids
    assert [c.rank for c in dist.candidates] == list(range(1, 11))
    for candidate, p in zip(dist.candidates, top_probs, strict=True):
        assert candidate.probability == pytest.approx(p, rel=1e-4, abs=1e-7)
    # The local view of the same text agrees token for token and rank for rank.
    here = next_token_distribution(local, TEXT, show=10)
    assert [(c.id, c.rank) for c in dist.candidates] == [(c.id, c.rank) for c in here.candidates]
    # Texts too, but for tokens holding some bytes of a character: the server names no vocabulary
    # string to read those bytes from, so they stay "�" where the local view shows the bytes.
    for mine, theirs in zip(dist.candidates, here.candidates, strict=True):
        assert mine.text == theirs.text or (theirs.partial_bytes is not None and mine.text == "�")
    assert dist.partial and dist.known == 10 and dist.prompt_tokens == len(ids)
    # T = 1 with no cut: sampling draws each token with its own probability, nothing renormalised.
    assert dist.exact_sampling and all(c.sampled == c.tempered == c.probability for c in dist.candidates)
    assert dist.shown_probability == pytest.approx(here.shown_probability, rel=1e-4)
    # The entropy is a true lower bound of the whole distribution's.
    assert dist.entropy <= here.entropy + 1e-6
    request = _next_requests(fake)[-1]
    assert request["prompt"] == ids and request["logprobs"] == 10 and request["temperature"] == 0
    assert request["return_tokens_as_token_ids"] is True


def test_the_chat_path_uses_the_template_through_tokenize(remote, local, fake: FakeVllm):
    dist = next_token_distribution(remote, "What is the capital of France?", chat=True, show=5)
    here = next_token_distribution(local, "What is the capital of France?", chat=True, show=5)
    assert dist.prompt_tokens == here.prompt_tokens and dist.prompt == here.prompt
    assert [c.id for c in dist.candidates] == [c.id for c in here.candidates]
    for mine, theirs in zip(dist.candidates, here.candidates, strict=True):
        assert mine.probability == pytest.approx(theirs.probability, rel=1e-4, abs=1e-7)
    assert any(path == "/tokenize" and "messages" in body for path, body in fake.requests)
    assert "<|im_start|>" in dist.prompt


def test_top_k_keeps_only_listed_tokens_so_sampling_is_exact(remote, local):
    dist = next_token_distribution(remote, TEXT, temperature=0.7, top_k=3, top_p=0.9, show=6)
    here = next_token_distribution(local, TEXT, temperature=0.7, top_k=3, top_p=0.9, show=6)
    assert dist.exact_sampling
    for mine, theirs in zip(dist.candidates, here.candidates, strict=True):
        assert mine.cut == theirs.cut
        assert mine.sampled == pytest.approx(theirs.sampled, rel=1e-4, abs=1e-7)
    assert "the sampled column is exact" in dist.notes[-1]


def test_without_top_k_the_sampling_columns_are_marked_approximate(remote):
    dist = next_token_distribution(remote, TEXT, temperature=0.7, top_p=0.9, show=5)
    assert not dist.exact_sampling and dist.entropy_tempered is None
    note = dist.notes[-1]
    assert (
        "listed only its 5 likeliest tokens" in note
        and "p at T, sampled and the cuts are ≈ approximate" in note
    )
    text = NextTokenView(dist).text()
    assert "≈ p at T = 0.7" in text and "≈ sampled" in text and "Entropy at least" in text
    assert "as if the rest of the vocabulary did not exist" in text


def test_greedy_steps_equal_the_local_greedy_steps(remote, local):
    mine = next_token_steps(remote, TEXT, steps=5)
    theirs = next_token_steps(local, TEXT, steps=5)
    assert [s.id for s in mine.steps] == [s.id for s in theirs.steps]
    assert mine.steps[-1].text == theirs.steps[-1].text
    for a, b in zip(mine.steps, theirs.steps, strict=True):
        assert a.probability == pytest.approx(b.probability, rel=1e-4, abs=1e-7)
        assert a.rank == b.rank == 1
        assert [c.id for c in a.runners_up] == [c.id for c in b.runners_up]
    assert any("top 4 log-probabilities" in note for note in mine.notes)


def _allowed(local, ids, sampling: Sampling) -> set[int]:
    """The tokens `generate(do_sample=True)` could pick after `ids`, from the whole distribution."""
    warped = warp(local.next_token_logits(ids).float(), sampling)
    return {int(i) for i in (warped.sampled > 0).nonzero().flatten()}


@pytest.mark.parametrize(
    ("options", "how"),
    [
        (dict(temperature=1.3, top_k=3), PartialSampling.TOP_K),
        # The tiny model's distribution is flat: top-p keeps far more than the 4 listed, so tokens
        # are drawn from below the list (rank unknown) and p sampled is marked ≈.
        (dict(temperature=1.0, top_p=0.6), PartialSampling.TOP_P_KEEPS_REST),
    ],
)
def test_seeded_steps_are_drawn_by_the_server_and_repeat(remote, local, fake: FakeVllm, options, how):
    first = next_token_steps(remote, TEXT, steps=6, sample=True, seed=11, **options)
    again = next_token_steps(remote, TEXT, steps=6, sample=True, seed=11, **options)
    assert [s.id for s in first.steps] == [s.id for s in again.steps], "the same seed draws the same tokens"
    assert first.seed == 11 and first.sample and len(first.steps) == 6
    sampling = Sampling(**{"temperature": 1.0, **options})
    ids = local.tokenizer(TEXT)["input_ids"]
    requests = _next_requests(fake)[: len(first.steps)]
    for index, (step, request) in enumerate(zip(first.steps, requests, strict=True)):
        # The server drew it: one request per step, with the sampling and the seed of that step.
        assert request["seed"] == 11 + index and request["temperature"] == sampling.temperature
        assert request["top_p"] == sampling.top_p and request["top_k"] == (sampling.top_k or -1)
        assert request["prompt"] == ids + [s.id for s in first.steps[:index]]
        # What the server drew is among what top-k / top-p allow over the whole vocabulary.
        assert step.id in _allowed(local, request["prompt"], sampling)
        probs = local.next_token_logits(request["prompt"]).float().softmax(dim=-1)
        assert step.probability == pytest.approx(float(probs[step.id]), rel=1e-4, abs=1e-7)
        assert step.known == 4 and (step.rank is None or step.rank <= 4)
        if step.rank is None:
            assert math.isnan(step.sampled) and not first.exact_sampling
    if how is PartialSampling.TOP_K:
        # Top-k keeps only listed tokens: p sampled is the in-process value, exactly.
        assert first.exact_sampling and all(s.rank is not None and s.rank <= 3 for s in first.steps)
        for step, request in zip(first.steps, requests, strict=True):
            whole = warp(local.next_token_logits(request["prompt"]).float(), sampling).sampled
            assert step.sampled == pytest.approx(float(whole[step.id]), rel=1e-4, abs=1e-7)
    if how is PartialSampling.TOP_P_KEEPS_REST:
        below = [s for s in first.steps if s.rank is None]
        assert not first.exact_sampling and "≈ p sampled" in StepsView(first).html()
        assert not below or "rank >4" in StepsView(first).text()
    assert any("step i with seed 11 + i" in note for note in first.notes)
    text = StepsView(first).text()
    assert "seed 11" in text and "Text: " + visible(first.steps[-1].text) in text


def test_a_seed_the_server_draws_with_changes_the_tokens(remote):
    runs = {
        tuple(
            s.id
            for s in next_token_steps(remote, TEXT, steps=6, sample=True, seed=seed, temperature=1.5).steps
        )
        for seed in range(4)
    }
    assert len(runs) > 1, "four seeds at T = 1.5 all drew the same six tokens"


def test_without_top_k_a_drawn_step_is_marked_approximate(remote, local):
    steps = next_token_steps(remote, TEXT, steps=3, sample=True, seed=2, temperature=0.8, top_p=0.9)
    assert not steps.exact_sampling
    assert any("p sampled is ≈" in note for note in steps.notes)
    assert "≈ p sampled" in StepsView(steps).html()


def test_sampled_steps_on_a_server_that_draws_nothing_are_one_line(remote, fake: FakeVllm):
    class ListsOnly:
        """A server engine that lists its top K but cannot draw (PredictsTopNext, not SamplesNext)."""

        def __init__(self, engine: ScoringRemoteEngine) -> None:
            self.name, self.tokenizer, self.engine = engine.name, engine.tokenizer, engine

        def next_token_top(self, ids, k):
            return self.engine.next_token_top(ids, k)

        def context_window(self):
            return self.engine.context_window()

    lists_only = ListsOnly(remote)
    assert isinstance(lists_only, PredictsTopNext) and not isinstance(lists_only, SamplesNext)
    with pytest.raises(NotSupported, match="drop --sample"):
        next_token_steps(lists_only, TEXT, steps=3, sample=True, seed=0)
    assert not _next_requests(fake)


def test_a_refused_sampling_request_is_one_named_error(remote, fake: FakeVllm):
    fake.max_logprobs = 2
    with pytest.raises(SamplingRefused, match="seed 5") as caught:
        next_token_steps(remote, TEXT, steps=2, sample=True, seed=5, top_k=3)
    assert "greater than max allowed: 2" in str(caught.value) and "\n" not in str(caught.value)


def test_over_the_server_cap_is_one_error(remote, fake: FakeVllm):
    with pytest.raises(LogprobsRefused, match="--max-logprobs 25") as caught:
        next_token_distribution(remote, TEXT, show=25)
    assert "greater than max allowed: 20" in str(caught.value) and "\n" not in str(caught.value)


def test_a_server_without_log_probabilities_says_why(smollm_tokenizer):
    other = FakeVllm(smollm_tokenizer, max_model_len=2048, owned_by="someone").start()
    engine = connect(other.url)
    try:
        assert isinstance(engine, TokenizingRemoteEngine) and not isinstance(engine, PredictsTopNext)
        with pytest.raises(NotSupported, match="runs on a server that gives none"):
            next_token_distribution(engine, TEXT)
    finally:
        engine.close()
        other.stop()


# --------------------------------------------------------------------------- the arithmetic of a top K


def _full_and_top(tokenizer, k: int, spread: float):
    """Logits over the whole vocabulary, and the top K a server would list of them."""
    import torch

    logits = torch.full((len(tokenizer),), -spread) + torch.linspace(0, 0.5, len(tokenizer))
    for token_id, value in zip((10, 20, 30, 40, 50, 60), (5.0, 4.2, 3.1, 2.5, 2.0, 1.5), strict=True):
        logits[token_id] = value
    logprobs = logits.log_softmax(dim=-1)
    values, indices = torch.topk(logprobs, k)
    top = TopLogprobs(tuple(int(i) for i in indices), tuple(float(v) for v in values))
    return logits, top


@pytest.mark.parametrize(
    ("spread", "options", "how"),
    [
        (4.0, dict(), PartialSampling.PLAIN),
        (4.0, dict(temperature=0.0), PartialSampling.GREEDY),
        (4.0, dict(temperature=0.7, top_k=3, top_p=0.9), PartialSampling.TOP_K),
        (4.0, dict(temperature=1.4, top_k=5), PartialSampling.TOP_K),
        (6.0, dict(top_p=0.8), PartialSampling.TOP_P_CUTS_REST),
        (6.0, dict(top_p=0.5), PartialSampling.TOP_P_CUTS_REST),
    ],
)
def test_the_exact_cases_equal_the_whole_distribution(gpt2_tokenizer, spread, options, how):
    logits, top = _full_and_top(gpt2_tokenizer, 6, spread)
    sampling = Sampling(**{"temperature": 1.0, **options})
    partial = distribution_from_top(top, gpt2_tokenizer, sampling, show=6)
    whole = distribution_from_logits(logits, gpt2_tokenizer, sampling, show=6)
    assert partial.partial_sampling is how and partial.exact_sampling
    assert [(c.id, c.rank) for c in partial.candidates] == [(c.id, c.rank) for c in whole.candidates]
    for mine, theirs in zip(partial.candidates, whole.candidates, strict=True):
        assert mine.probability == pytest.approx(theirs.probability, rel=1e-5)
        assert mine.sampled == pytest.approx(theirs.sampled, rel=1e-4, abs=1e-7)
        assert mine.cut == theirs.cut
    assert partial.entropy <= whole.entropy + 1e-6


def test_top_p_that_keeps_some_of_the_rest_gives_a_marked_lower_bound(gpt2_tokenizer):
    logits, top = _full_and_top(gpt2_tokenizer, 6, 1.0)
    assert top.remainder > 0.05
    sampling = Sampling(1.0, 0, 0.95)
    partial = distribution_from_top(top, gpt2_tokenizer, sampling, show=6)
    whole = distribution_from_logits(logits, gpt2_tokenizer, sampling, show=6)
    assert partial.partial_sampling is PartialSampling.TOP_P_KEEPS_REST and not partial.exact_sampling
    for mine, theirs in zip(partial.candidates, whole.candidates, strict=True):
        assert mine.cut is theirs.cut is None
        assert mine.sampled <= theirs.sampled + 1e-7 <= mine.sampled / 0.95 + 1e-6
    assert "a lower bound" in partial.notes[-1]
    text = NextTokenView(partial).text()
    assert "≈ sampled" in text and "a lower bound of its share" in text


def test_temperature_without_top_k_is_computed_within_the_listed_and_marked(gpt2_tokenizer):
    logits, top = _full_and_top(gpt2_tokenizer, 6, 6.0)
    partial = distribution_from_top(top, gpt2_tokenizer, Sampling(0.7, 0, 0.6), show=6)
    assert partial.partial_sampling is PartialSampling.WITHIN_LISTED
    assert math.fsum(c.sampled for c in partial.candidates) == pytest.approx(1.0)
    text = NextTokenView(partial).text()
    assert "≈ p at T = 0.7" in text and "≈ sampled" in text and "(≈ cut by top-p)" in text


# --------------------------------------------------------------------------- the magic


@pytest.fixture
def loaded(shell, fake: FakeVllm, local):
    fake.lm = local.model
    result, captured = run(shell, f"%llm_load --endpoint {fake.url} --as served")
    assert result.success, captured.stderr
    return shell


def test_llm_next_on_a_remote_entry_shows_the_partial_distribution(loaded, local):
    result, captured = run(loaded, f"%llm_next --top-k 3 --temperature 0.7 {TEXT}")
    assert result.success, captured.stderr
    text, page = shown_text(captured), shown_html(captured)
    here = next_token_distribution(local, TEXT, show=10)
    assert here.candidates[0].text.strip() in text
    for fragment in (
        "listed only its 10 likeliest tokens",
        "the sampled column is exact",
        "Entropy at least",
    ):
        assert fragment in text and fragment in page
    assert "log p" in page


@pytest.mark.parametrize("flags", ["--show 25", "--top-k 30"])
def test_llm_next_over_the_cap_is_one_line_and_changes_nothing(loaded, flags):
    before_names = list(magics(loaded).registry)
    before_ns = set(loaded.user_ns)
    result, captured = run(loaded, f"%llm_next {flags} {TEXT}")
    assert_one_line_error(result, captured, "LogprobsRefused", "--max-logprobs")
    assert list(magics(loaded).registry) == before_names and set(loaded.user_ns) == before_ns


def test_llm_next_live_on_a_remote_entry_explores_without_threads(loaded, local, fake: FakeVllm, monkeypatch):
    from llm_magics.magics import next_token as magic_module

    threads = threading.active_count()
    result, captured = run(loaded, f"%llm_next --live --show 5 {TEXT}")
    assert result.success, captured.stderr
    (output,) = captured.outputs
    assert "application/vnd.jupyter.widget-view+json" in output.data
    assert "listed only its 5 likeliest tokens" in output.data["text/plain"]

    shown: list[object] = []
    monkeypatch.setattr(magic_module, "show", shown.append)
    loaded.run_line_magic("llm_next", f"--live --seed 3 --show 5 {TEXT}")
    (explorer,) = shown
    assert isinstance(explorer, NextTokenExplorer)
    asked = len(_next_requests(fake))
    explorer.temperature.value = 0.5
    assert "≈ p at T = 0.5" in explorer.output.value and "≈ sampled" in explorer.output.value
    explorer.top_k.value = 3
    assert "the sampled column is exact" in explorer.output.value
    assert explorer.output.value.count('<tr class="cut"') == 2
    assert len(_next_requests(fake)) == asked, "sliders within the listed tokens reuse the answer"
    explorer.top_k.value = 8  # more than the 5 listed: asked again, so what top-k keeps is known
    assert len(_next_requests(fake)) == asked + 1 and "listed only its 8 likeliest" in explorer.output.value
    explorer.top_k.value = 3

    ids = local.tokenizer(TEXT)["input_ids"]
    greedy = int(local.next_token_logits(ids).argmax())
    explorer.greedy_button.click()
    assert explorer.status.value and explorer.model.appended_text() == local.tokenizer.decode([greedy])
    explorer.sample_button.click()
    drawn = _next_requests(fake)[-2]
    assert drawn["seed"] == 3 and drawn["top_k"] == 3 and drawn["temperature"] == 0.5
    assert drawn["prompt"] == [*ids, greedy]
    sampled = explorer.model.appended[-1]
    assert sampled in _allowed(local, [*ids, greedy], Sampling(0.5, 3, 1.0))
    explorer.undo_button.click()
    explorer.undo_button.click()
    assert explorer.status.value == ""
    explorer.textarea.value = ""
    assert "Nothing to continue" in explorer.status.value
    explorer.textarea.value = "New text"
    assert explorer.view is not None and "New·text▌" in explorer.view.text() and explorer.status.value == ""
    assert threading.active_count() == threads


def test_live_sampling_on_a_server_repeats_with_the_seed(remote):
    def draws(seed: int) -> list[int]:
        session = next_token_session(remote, show=5, seed=seed)
        session.set_text(TEXT)
        drawn = [session.append(Sampling(1.4), sample=True) for _ in range(4)]
        session.undo()
        # The fifth draw (seed + 4) replaces the fourth; the session's text holds the four kept.
        drawn[-1] = session.append(Sampling(1.4), sample=True)
        assert session.appended_text() == remote.tokenizer.decode(drawn)
        return drawn

    first = draws(9)
    assert first == draws(9) and len(first) == 4
    session = next_token_session(remote, show=5, seed=9)
    assert isinstance(session, ServerNextTokenSession)
    session.set_text(TEXT)
    dist = session.distribution(Sampling())
    assert dist.partial and dist.known == 5 and dist.prompt_tokens == len(remote.tokenizer(TEXT)["input_ids"])


@pytest.mark.parametrize("flags", ["--live", "--steps 2 --sample --seed 1"])
def test_a_server_without_log_probabilities_refuses_live_and_sample_in_one_line(
    shell, smollm_tokenizer, flags
):
    other = FakeVllm(smollm_tokenizer, max_model_len=2048, owned_by="someone").start()
    try:
        result, captured = run(shell, f"%llm_load --endpoint {other.url} --as plain")
        assert result.success, captured.stderr
        result, captured = run(shell, f"%llm_next {flags} {TEXT}")
        assert_one_line_error(result, captured, "NotSupported", "runs on a server that gives none")
    finally:
        other.stop()


def test_llm_next_steps_on_a_remote_entry(loaded, local):
    result, captured = run(loaded, f"%llm_next --steps 3 {TEXT}")
    assert result.success, captured.stderr
    steps = next_token_steps(local, TEXT, steps=3)
    assert "Text: " + visible(steps.steps[-1].text) in shown_text(captured)


def test_llm_next_sampled_steps_on_a_remote_entry_repeat_with_the_seed(loaded, fake: FakeVllm):
    line = f"%llm_next --steps 4 --sample --seed 21 --top-k 3 -t 1.4 {TEXT}"
    result, first = run(loaded, line)
    assert result.success, first.stderr
    _, again = run(loaded, line)
    assert shown_text(first) == shown_text(again)
    text, page = shown_text(first), shown_html(first)
    assert "seed 21" in text and "step i with seed 21 + i" in text and "p sampled is exact" in text
    assert "<th>p sampled</th>" in page
    assert [body["seed"] for body in _next_requests(fake)[-4:]] == [21, 22, 23, 24]
