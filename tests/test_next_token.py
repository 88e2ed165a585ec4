"""`llm_magics.next_token`: the next-token distribution, the cuts, and steps, against plain
transformers: softmax of the model's own logits, transformers' own logits warpers, `generate`.

The engine here is a small real adapter over a transformers model (what the in-process engine
will be): one forward pass per `next_token_logits`. `ScriptedEngine` returns logits that pick a
given sequence of ids, to test how split characters are shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from llm_magics.bytelevel import token_bytes
from llm_magics.engines.base import PredictsNext, Tokenizes
from llm_magics.errors import InvalidOption, NotSupported
from llm_magics.next_token import (
    MAX_STEPS,
    Cut,
    NextTokenSession,
    Sampling,
    StepsEnd,
    distribution_from_logits,
    entropy_bits,
    next_token_distribution,
    next_token_steps,
    warp,
)
from llm_magics.values import EngineInfo, EngineKind


class TinyEngine:
    """A real engine over an in-process transformers model: what `%llm_next` needs, nothing more
    (it counts its forward passes, which the transformers engine does not)."""

    def __init__(self, name: str, model: Any, tokenizer: Any, context_length: int | None = None) -> None:
        self.name = name
        self.model = model
        self._tokenizer = tokenizer
        self.context_length = context_length or model.config.max_position_embeddings
        self.state: dict[str, Any] = {}
        self.footprint_bytes = 0
        self.forward_passes = 0

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def describe(self) -> EngineInfo:
        return EngineInfo(name=self.name, source="tests", kind=EngineKind.TRANSFORMERS)

    def context_window(self) -> int | None:
        return self.context_length

    def close(self) -> int:
        self.model = None
        return 0

    def next_token_logits(self, ids: Sequence[int]) -> Any:
        self.forward_passes += 1
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([list(ids)])).logits[0, -1].float()


class ScriptedEngine(TinyEngine):
    """Logits that make `script[i]` the likeliest token at the i-th call (then the tokenizer's EOS)."""

    def __init__(self, tokenizer: Any, script: Sequence[int], name: str = "scripted") -> None:
        super().__init__(name, None, tokenizer, context_length=4096)
        self.script = list(script)

    def next_token_logits(self, ids: Sequence[int]) -> Any:
        self.forward_passes += 1
        step = self.forward_passes - 1
        logits = torch.linspace(0, 1, len(self.tokenizer))
        target = self.script[step] if step < len(self.script) else self.tokenizer.eos_token_id
        logits[target] = 10.0
        return logits


class TokenizerOnly:
    """An engine that tokenizes but gives no probabilities (a tokenizer-only load, a server)."""

    def __init__(self, tokenizer: Any) -> None:
        self.name = "words-only"
        self._tokenizer = tokenizer
        # What today's registry touches when it unloads (the refactor's calls close()).
        self.state: dict[str, Any] = {}
        self.model = None
        self.footprint_bytes = 0

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def describe(self) -> EngineInfo:
        return EngineInfo(name=self.name, source="tests", kind=EngineKind.REMOTE)

    def context_window(self) -> int | None:
        return None

    def close(self) -> int:
        return 0


class TokenizerOnlyLoad(TokenizerOnly):
    """`%llm_load --tokenizer-only` as an engine describes it."""

    def describe(self) -> EngineInfo:
        return EngineInfo(name=self.name, source="tests", kind=EngineKind.TRANSFORMERS, tokenizer_only=True)


@pytest.fixture
def engine(loaded_tiny):
    def make(family: str = "llama") -> TinyEngine:
        model, tokenizer = loaded_tiny(family)
        return TinyEngine(f"tiny-{family}", model, tokenizer)

    return make


def _forward(model: Any, ids: Sequence[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits[0, -1].float()


def _warpers_keep(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """What generate's warpers keep, built as `_get_logits_processor` builds them."""
    scores = logits.unsqueeze(0)
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    ids = torch.zeros((1, 1), dtype=torch.long)
    if sampling.top_k != 0:
        scores = TopKLogitsWarper(top_k=sampling.top_k)(ids, scores)
    if sampling.top_p < 1.0:
        scores = TopPLogitsWarper(top_p=sampling.top_p)(ids, scores)
    return scores[0]


# --------------------------------------------------------------------------- probabilities


def test_the_engines_satisfy_the_protocols(engine, gpt2_tokenizer):
    tiny = engine("llama")
    assert isinstance(tiny, PredictsNext) and isinstance(tiny, Tokenizes)
    assert not isinstance(TokenizerOnly(gpt2_tokenizer), PredictsNext)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_probabilities_are_the_softmax_of_the_models_own_logits(engine, family, temperature):
    tiny = engine(family)
    text = "The quick brown fox"
    result = next_token_distribution(tiny, text, temperature=temperature, show=20)
    logits = _forward(tiny.model, tiny.tokenizer(text)["input_ids"])
    raw = torch.softmax(logits, dim=-1)
    tempered = torch.softmax(logits / temperature, dim=-1)
    expected_order = torch.sort(logits, descending=True, stable=True)[1][:20].tolist()
    assert [c.id for c in result.candidates] == expected_order
    assert [c.rank for c in result.candidates] == list(range(1, 21))
    for c in result.candidates:
        assert c.probability == pytest.approx(float(raw[c.id]), rel=1e-6, abs=0)
        assert c.tempered == pytest.approx(float(tempered[c.id]), rel=1e-6, abs=0)
        assert c.logit == float(logits[c.id])
        assert c.cut is None and c.sampled == pytest.approx(c.tempered, rel=1e-5)
    assert result.entropy == pytest.approx(float(-(raw * raw.log2()).sum()), rel=1e-5)
    assert result.entropy_tempered == pytest.approx(float(-(tempered * tempered.log2()).sum()), rel=1e-5)
    assert result.kept == result.vocab_size == logits.numel()
    assert result.prompt_tokens == len(tiny.tokenizer(text)["input_ids"])
    assert tiny.forward_passes == 1


def test_chat_continues_after_the_template_and_generation_prompt(engine):
    tiny = engine("llama")
    result = next_token_distribution(tiny, "What is 2 + 2?", chat=True)
    ids = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert result.prompt_tokens == len(ids)
    assert result.prompt.endswith("assistant\n")
    raw = torch.softmax(_forward(tiny.model, ids), dim=-1)
    assert result.candidates[0].probability == pytest.approx(float(raw.max()), rel=1e-6)


# --------------------------------------------------------------------------- cuts


def _assert_cuts_match(logits: torch.Tensor, sampling: Sampling) -> None:
    warped = warp(logits, sampling)
    expected = _warpers_keep(logits, sampling)
    kept = ~(warped.cut_k | warped.cut_p)
    assert torch.equal(kept, expected != -float("inf")), sampling
    assert torch.equal(warped.sampled, torch.softmax(expected, dim=-1)), sampling
    assert torch.equal(
        warped.cut_k, torch.isinf(_warpers_keep(logits, Sampling(sampling.temperature, sampling.top_k)))
    )


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(1.0, 0, 1.0),
        Sampling(1.0, 1, 1.0),
        Sampling(1.0, 5, 1.0),
        Sampling(0.7, 10, 0.9),
        Sampling(1.3, 0, 0.5),
        Sampling(1.0, 0, 0.001),
        Sampling(0.05, 0, 0.95),
        Sampling(1.0, 10**6, 1.0),
        Sampling(2.0, 3, 0.999),
    ],
    ids=str,
)
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_cuts_equal_transformers_warpers_on_real_logits(engine, family, sampling):
    tiny = engine(family)
    logits = _forward(tiny.model, tiny.tokenizer("Paris is the capital of")["input_ids"])
    _assert_cuts_match(logits, sampling)


def test_top_p_one_and_top_k_zero_cut_nothing_as_in_generate(engine):
    logits = _forward(engine("llama").model, [1, 2, 3])
    warped = warp(logits, Sampling(1.0, 0, 1.0))
    assert not warped.cut_k.any() and not warped.cut_p.any()
    # TopPLogitsWarper(1.0) itself (which generate never builds) removes only tokens of probability 0.
    direct = TopPLogitsWarper(top_p=1.0)(torch.zeros((1, 1), dtype=torch.long), logits.unsqueeze(0))[0]
    assert bool((torch.softmax(logits, -1)[torch.isinf(direct)] == 0).all())
    with pytest.raises(ValueError):
        TopKLogitsWarper(top_k=0)  # why generate skips it, and so do we


def test_ties_at_the_top_k_boundary_are_all_kept_as_transformers_keeps_them():
    logits = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.0, -1.0])
    warped = warp(logits, Sampling(1.0, 2, 1.0))
    assert (~warped.cut_k).nonzero().flatten().tolist() == [0, 1, 2, 3]
    for k in range(1, 9):
        for p in (0.1, 0.3, 0.5, 0.62, 0.9, 1.0):
            _assert_cuts_match(logits, Sampling(1.0, k, p))


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.integers(-4, 4), min_size=2, max_size=40),
    temperature=st.sampled_from([0.1, 0.5, 1.0, 1.7, 5.0]),
    top_k=st.integers(0, 45),
    top_p=st.sampled_from([0.01, 0.2, 0.5, 0.75, 0.9, 0.99, 1.0]),
)
def test_cuts_equal_transformers_warpers_with_many_ties(values, temperature, top_k, top_p):
    _assert_cuts_match(torch.tensor(values, dtype=torch.float32) / 2, Sampling(temperature, top_k, top_p))


def test_temperature_zero_is_greedy(engine):
    tiny = engine("gpt2")
    result = next_token_distribution(tiny, "Paris", temperature=0, show=5)
    first, *rest = result.candidates
    assert first.tempered == first.sampled == 1.0 and first.cut is None
    assert all(c.tempered == 0 and c.cut is Cut.GREEDY for c in rest)
    assert result.kept == 1 and result.entropy_tempered == 0
    tied = warp(torch.tensor([1.0, 5.0, 5.0]), Sampling(0.0))
    assert tied.sampled.tolist() == [0.0, 1.0, 0.0]  # torch.argmax: the first of a tie


def test_cut_labels_and_shares(engine):
    tiny = engine("llama")
    result = next_token_distribution(tiny, "Hello", top_k=3, show=6)
    assert [c.cut for c in result.candidates] == [None] * 3 + [Cut.TOP_K] * 3
    assert result.kept == 3
    assert math.fsum(c.sampled for c in result.candidates) == pytest.approx(1.0, abs=1e-6)
    assert result.kept_tempered == pytest.approx(
        math.fsum(c.tempered for c in result.candidates[:3]), rel=1e-5
    )
    assert 0 < result.shown_probability < 1


def test_entropy_of_uniform_logits_is_log2_of_the_vocabulary():
    assert entropy_bits(torch.softmax(torch.zeros(1024), -1)) == pytest.approx(10.0)
    assert entropy_bits(torch.tensor([1.0, 0.0])) == 0.0


# --------------------------------------------------------------------------- steps


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gpt2"])
def test_greedy_steps_equal_generate_without_sampling(engine, family):
    tiny = engine(family)
    text = "The cat sat on the"
    result = next_token_steps(tiny, text, steps=12)
    encoded = tiny.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = tiny.model.generate(
            **encoded,
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=tiny.tokenizer.eos_token_id,
            eos_token_id=tiny.tokenizer.eos_token_id,
        )
    expected = out[0, encoded["input_ids"].shape[1] :].tolist()
    assert [step.id for step in result.steps] == expected
    assert all(step.rank == 1 for step in result.steps)
    assert result.steps[-1].text == tiny.tokenizer.decode(expected)[: len(result.steps[-1].text)]


@pytest.mark.slow
def test_greedy_steps_equal_generate_on_the_bundled_model(smollm):
    model, tokenizer = smollm
    bundled = TinyEngine("smollm2-135m", model, tokenizer)
    for text, chat in (("The capital of France is", False), ("Name three fruits.", True)):
        result = next_token_steps(bundled, text, steps=16, chat=chat)
        if chat:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=True
            )["input_ids"]
        else:
            ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=16,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
        assert [step.id for step in result.steps] == out[0, len(ids) :].tolist(), text
        dist = next_token_distribution(bundled, text, chat=chat, temperature=0.7, top_p=0.9)
        raw = torch.softmax(_forward(model, ids), -1)
        assert dist.candidates[0].probability == pytest.approx(float(raw.max()), rel=1e-5)
        assert dist.candidates[0].id == result.steps[0].id


def test_sampled_steps_with_a_seed_are_reproducible_and_follow_the_cuts(engine):
    tiny = engine("gpt2")
    options = dict(steps=10, sample=True, temperature=1.5, top_k=20, top_p=0.9)
    first = next_token_steps(tiny, "Once upon", seed=7, **options)
    again = next_token_steps(tiny, "Once upon", seed=7, **options)
    other = next_token_steps(tiny, "Once upon", seed=8, **options)
    assert [s.id for s in first.steps] == [s.id for s in again.steps]
    assert [s.id for s in first.steps] != [s.id for s in other.steps]
    assert all(s.rank <= 20 + 5 and s.sampled > 0 for s in first.steps)  # ties at the k-th may add a few
    assert first.seed == 7 and first.notes == ()


def test_sampled_steps_equal_generate_with_the_same_seed(engine):
    """On a CPU, a generator seeded with S draws what generate draws after torch.manual_seed(S)."""
    tiny = engine("gpt2")
    text = "Once upon a time"
    result = next_token_steps(tiny, text, steps=8, sample=True, seed=3, temperature=0.8, top_k=50, top_p=0.9)
    encoded = tiny.tokenizer(text, return_tensors="pt")
    torch.manual_seed(3)
    with torch.no_grad():
        out = tiny.model.generate(
            **encoded,
            do_sample=True,
            temperature=0.8,
            top_k=50,
            top_p=0.9,
            max_new_tokens=8,
            pad_token_id=tiny.tokenizer.eos_token_id,
            eos_token_id=tiny.tokenizer.eos_token_id,
        )
    assert [s.id for s in result.steps] == out[0, encoded["input_ids"].shape[1] :].tolist()


def test_sampling_without_a_seed_says_which_seed_it_used(engine):
    tiny = engine("gpt2")
    result = next_token_steps(tiny, "Hi", steps=3, sample=True)
    assert result.seed is not None and f"--seed {result.seed}" in result.notes[0]
    again = next_token_steps(tiny, "Hi", steps=3, sample=True, seed=result.seed)
    assert [s.id for s in again.steps] == [s.id for s in result.steps]


def test_steps_stop_at_the_end_of_text(smollm_tokenizer):
    ids = smollm_tokenizer(" Paris")["input_ids"]
    scripted = ScriptedEngine(smollm_tokenizer, ids)
    result = next_token_steps(scripted, "The capital is", steps=10)
    assert [s.id for s in result.steps] == [*ids, smollm_tokenizer.eos_token_id]
    assert result.end is StepsEnd.END_OF_TEXT and result.steps[-1].special
    assert result.steps[-2].text == " Paris"


def test_a_character_split_across_steps_is_shown_once_with_all_its_ids(smollm_tokenizer):
    ids = smollm_tokenizer("🙂 ok")["input_ids"]
    assert len(ids) == 3  # 🙂 is two byte-level tokens
    result = next_token_steps(ScriptedEngine(smollm_tokenizer, ids), "Smile:", steps=3)
    first, second, third = result.steps
    assert first.piece == "" and first.piece_ids == () and first.text == ""
    assert second.piece == "🙂" and second.piece_ids == tuple(ids[:2]) and second.text == "🙂"
    assert third.piece == " ok" and third.text == "🙂 ok"


def test_a_candidate_holding_some_bytes_of_a_character_shows_its_bytes(smollm_tokenizer):
    first_half = smollm_tokenizer("🙂")["input_ids"][0]
    logits = torch.zeros(len(smollm_tokenizer))
    logits[first_half] = 5.0
    result = distribution_from_logits(logits, smollm_tokenizer, Sampling(), show=2)
    top = result.candidates[0]
    assert top.id == first_half and top.text == "" and top.partial_bytes == "🙂".encode()[:2]
    assert token_bytes("<0xF0>") == b"\xf0"
    assert token_bytes("Ġhi") == b" hi"


# --------------------------------------------------------------------------- the explorer's core


def test_session_reuses_one_forward_pass_per_text_and_appends_undoes(engine):
    tiny = engine("gpt2")
    session = NextTokenSession(tiny, seed=0)
    session.set_text("The quick")
    assert tiny.forward_passes == 1
    for t in (0.2, 0.5, 1.0, 1.9):
        session.distribution(Sampling(t, 5, 0.9))
    assert tiny.forward_passes == 1, "moving a slider must not run the model"
    greedy = session.append(Sampling(), sample=False)
    expected = next_token_steps(tiny, "The quick", steps=2)
    assert greedy == expected.steps[0].id
    assert session.distribution(Sampling()).candidates[0].id == expected.steps[1].id
    session.append(Sampling(1.0, 3, 1.0), sample=True)
    assert session.appended_text()
    session.undo()
    session.undo()
    session.undo()  # nothing left: not an error
    assert session.appended_text() == ""
    assert (
        session.distribution(Sampling()).candidates == next_token_distribution(tiny, "The quick").candidates
    )


def test_session_keeps_its_state_when_the_new_text_is_bad(engine):
    session = NextTokenSession(engine("gpt2"))
    with pytest.raises(InvalidOption, match="Type some text"):
        session.distribution(Sampling())
    session.set_text("ok")
    before = session.distribution(Sampling())
    for bad in ("", "a\ud800b"):
        with pytest.raises(InvalidOption):
            session.set_text(bad)
    assert session.text == "ok" and session.distribution(Sampling()) == before


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (dict(top_p=0.0), "--top-p"),
        (dict(top_p=1.5), "--top-p"),
        (dict(top_p=float("nan")), "--top-p"),
        (dict(top_k=-1), "--top-k"),
        (dict(temperature=-0.1), "--temperature"),
        (dict(temperature=70.0), "--temperature"),
        (dict(temperature=float("inf")), "--temperature"),
        (dict(show=0), "--show"),
    ],
)
def test_bad_options_are_refused_before_the_model_runs(engine, options, fragment):
    tiny = engine("gpt2")
    with pytest.raises(InvalidOption, match=fragment):
        next_token_distribution(tiny, "Hello", **options)
    assert tiny.forward_passes == 0


@pytest.mark.parametrize(
    ("text", "options", "fragment"),
    [
        ("", {}, "Nothing to continue"),
        ("bad \ud83d half", {}, "lone surrogate"),
        ("Hello", dict(steps=0), "--steps"),
        ("Hello", dict(steps=MAX_STEPS + 1), "--steps"),
        ("Hello", dict(steps=2, seed=1), "--seed only matters"),
        ("Hello", dict(steps=2, sample=True, seed=-1), "--seed"),
        ("Hello " * 200, dict(steps=100), "context"),
    ],
)
def test_bad_steps_are_refused_before_the_model_runs(engine, text, options, fragment):
    tiny = engine("gpt2")
    with pytest.raises(InvalidOption, match=fragment):
        next_token_steps(tiny, text, **{"steps": 2, **options})
    assert tiny.forward_passes == 0


def test_an_engine_without_probabilities_gets_one_line_saying_why(gpt2_tokenizer):
    engine = TokenizerOnly(gpt2_tokenizer)
    with pytest.raises(
        NotSupported, match="'words-only' cannot run %llm_next: the .* engine has no next-token probabilities"
    ):
        next_token_distribution(engine, "Hello")
    with pytest.raises(NotSupported, match="loaded as a tokenizer only"):
        next_token_distribution(TokenizerOnlyLoad(gpt2_tokenizer), "Hello")
