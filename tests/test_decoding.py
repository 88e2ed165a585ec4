"""The CPU fast paths: the growing cache keeps what transformers' cache keeps, the attention
computes what SDPA computes, and replies are the same with and without them."""

from __future__ import annotations

import pytest

from llm_magics.engines.transformers import decoding, generation
from llm_magics.engines.transformers import growing as growing_module
from llm_magics.engines.transformers.growing import GrowingLayer
from llm_magics.values import DecodingMode, GenerationOptions
from tests.factories import FAMILIES
from tests.helpers import RaiseOnForward, say


def chunks(sizes, *, batch=1, heads=2, dim=8, seed=0):
    """Random (keys, values) blocks of the given lengths, as attention layers hand them to a cache."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch, heads, size, dim, generator=generator),
            torch.randn(batch, heads, size, dim, generator=generator),
        )
        for size in sizes
    ]


def assert_same_layers(growing, plain, keys, values):
    import torch

    grown = growing.update(keys, values)
    expected = plain.update(keys, values)
    assert torch.equal(grown[0], expected[0]) and torch.equal(grown[1], expected[1])
    assert growing.get_seq_length() == plain.get_seq_length()


def test_growing_layer_keeps_what_a_dynamic_layer_keeps_through_growth_crop_and_reset():
    from transformers.cache_utils import DynamicLayer

    growing, plain = GrowingLayer(), DynamicLayer()
    # A prefill, then single tokens well past the first buffer's room, a crop (a trimmed or
    # edited conversation), a long new message, a reset, and a new conversation.
    for keys, values in chunks([7] + [1] * 300, seed=1):
        assert_same_layers(growing, plain, keys, values)
    growing.crop(-5)
    plain.crop(-5)
    assert growing.get_seq_length() == plain.get_seq_length() == 302
    for keys, values in chunks([1, 1, 40, 1], seed=2):
        assert_same_layers(growing, plain, keys, values)
    growing.reset()
    # A reset layer holds what a new one does. (Older transformers, 5.15 among them, zero a reset
    # DynamicLayer in place and keep its length, so the reference is a fresh one.)
    plain = DynamicLayer()
    assert growing.get_seq_length() == 0
    for keys, values in chunks([3, 1], seed=3):
        assert_same_layers(growing, plain, keys, values)


def test_growing_layer_copies_its_cache_only_when_it_runs_out_of_room():
    layer = GrowingLayer()
    buffers = set()
    for keys, values in chunks([1] * 1000):
        layer.update(keys, values)
        buffers.add(layer.buffers[0].data_ptr())
    # transformers' DynamicLayer makes a new tensor (a copy of the whole cache) for each of the
    # 1,000 steps; growing by a quarter or 256 tokens, this one needs 4 buffers.
    assert len(buffers) <= 4
    assert layer.get_seq_length() == 1000


def test_growing_layer_follows_a_reorder_of_the_batch():
    import torch
    from transformers.cache_utils import DynamicLayer

    growing, plain = GrowingLayer(), DynamicLayer()
    for keys, values in chunks([5], batch=2):
        assert_same_layers(growing, plain, keys, values)
    for layer in (growing, plain):
        layer.batch_select_indices(torch.tensor([1]))
    for keys, values in chunks([1, 1], batch=1, seed=4):
        assert_same_layers(growing, plain, keys, values)


def test_cache_grows_full_attention_layers_and_keeps_sliding_window_layers(loaded_tiny):
    from transformers import AutoConfig
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    model, _ = loaded_tiny("llama")
    growing = decoding.new_cache(model)
    assert growing.layers and all(type(layer).__name__ == "GrowingLayer" for layer in growing.layers)
    plain = decoding.new_cache(model, growing=False)
    assert all(type(layer) is DynamicLayer for layer in plain.layers)

    class WindowedModel:
        config = AutoConfig.for_model(
            "mistral", hidden_size=64, num_attention_heads=4, num_hidden_layers=2, sliding_window=16
        )

    windowed = decoding.new_cache(WindowedModel())
    assert all(type(layer) is DynamicSlidingWindowLayer for layer in windowed.layers)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_attention_computes_what_transformers_sdpa_computes(loaded_tiny, family):
    import torch

    model, _ = loaded_tiny(family)
    ids = torch.randint(5, model.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))

    def logits(fast: bool) -> list:
        cache = {generation.cache_keyword(): decoding.new_cache(model, growing=fast)}
        steps = [ids[:, :10], ids[:, 10:16], ids[:, 16:17], ids[:, 17:18], ids[:, 18:24]]
        outputs = []
        with torch.inference_mode():
            if fast:
                with decoding.fast_attention(model):
                    assert model.config._attn_implementation == decoding.ATTENTION
                    outputs = [model(input_ids=s, **cache).logits for s in steps]
            else:
                outputs = [model(input_ids=s, **cache).logits for s in steps]
        return outputs

    # A first pass, a new message over a cache, single decoding steps, another message.
    for fast, plain in zip(logits(True), logits(False), strict=True):
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"


def test_modes_choose_the_cache_and_the_attention_on_cpu(loaded_tiny):
    model, _ = loaded_tiny("llama")
    assert decoding.plan(model, DecodingMode.EXACT) == (True, False)
    assert decoding.plan(model, DecodingMode.FASTEST) == (True, True)
    assert decoding.plan(model, DecodingMode.TRANSFORMERS) == (False, False)
    model.set_attn_implementation("eager")
    try:
        # Without SDPA there is no attention to speed up; the cache still grows in place.
        assert decoding.plan(model, DecodingMode.FASTEST) == (True, False)
    finally:
        model.set_attn_implementation("sdpa")


def test_exact_mode_keeps_every_logit_of_transformers_cache_in_bfloat16(loaded_tiny, monkeypatch):
    import copy

    import torch

    # bfloat16 is what a CPU with AVX512-BF16 gets by default, and where kernels round differently.
    monkeypatch.setattr(growing_module, "MIN_HEADROOM", 2)
    model = copy.deepcopy(loaded_tiny("llama")[0]).to(torch.bfloat16)
    ids = torch.randint(5, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    steps = [ids[:, :9], *[ids[:, i : i + 1] for i in range(9, 30)], ids[:, 30:40]]

    def logits(growing: bool) -> list:
        cache = {generation.cache_keyword(): decoding.new_cache(model, growing=growing)}
        with torch.inference_mode():
            return [model(input_ids=step, **cache).logits for step in steps]

    for grown, plain in zip(logits(True), logits(False), strict=True):
        assert torch.equal(grown, plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_replies_are_the_same_in_every_mode(tiny_engine, family, monkeypatch):
    # Little headroom, so the cache grows several times within the conversation.
    monkeypatch.setattr(growing_module, "MIN_HEADROOM", 3)
    replies = {}
    for mode in decoding.MODES:
        engine = tiny_engine(family)
        replies[mode] = []
        for message in ("Hello there", "Tell me more.", "And then?"):
            replies[mode].append(say(engine, message, cpu_decoding=mode).token_ids)
        # Mistral's layers have a sliding window: they keep transformers' own cache layer.
        expected = (
            {"DynamicSlidingWindowLayer"}
            if family == "mistral"
            else {"DynamicLayer"}
            if mode == DecodingMode.TRANSFORMERS
            else {"GrowingLayer"}
        )
        assert {type(layer).__name__ for layer in engine.session.cache.layers} == expected
    # In float32 even the other attention kernels of "fastest" give the same greedy tokens.
    assert replies[DecodingMode.EXACT] == replies[DecodingMode.FASTEST] == replies[DecodingMode.TRANSFORMERS]
    assert all(replies[DecodingMode.EXACT])


def test_the_models_attention_is_restored_when_generation_is_interrupted(tiny_engine):
    engine = tiny_engine("llama")
    hook = engine.model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=3))
    try:
        generated = generation.generate(
            engine.model,
            engine.tokenizer,
            [1, 2, 3, 4],
            GenerationOptions(max_new_tokens=8),
            cpu_decoding=DecodingMode.FASTEST,
        )
    finally:
        hook.remove()
    assert generated.reply.interrupted
    assert engine.model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_bundled_model_in_bfloat16_gives_transformers_replies_in_exact_mode(monkeypatch):
    import torch

    from llm_magics.engines.transformers.loading import load_model
    from llm_magics.engines.transformers.plan import plan_load
    from llm_magics.engines.transformers.source import resolve_source

    monkeypatch.setattr(growing_module, "MIN_HEADROOM", 16)
    engine = load_model(plan_load(resolve_source(None), dtype="bfloat16"))
    try:
        assert engine.model.dtype == torch.bfloat16
        replies = {}
        for mode in (DecodingMode.EXACT, DecodingMode.TRANSFORMERS):
            engine.adopt(engine.new_session())
            assert engine.session.conversation.messages == [] and engine.session.cache is None
            replies[mode] = []
            for message in (
                "Write a story about a dragon who cooks.",
                "Make it longer.",
                "Now a poem about it.",
            ):
                replies[mode].append(say(engine, message, max_new_tokens=60, cpu_decoding=mode).token_ids)
        assert replies[DecodingMode.EXACT] == replies[DecodingMode.TRANSFORMERS]
        assert all(replies[DecodingMode.EXACT])
    finally:
        engine.close()
