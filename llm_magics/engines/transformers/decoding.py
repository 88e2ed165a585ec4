"""Faster generation on CPU: a key/value cache that grows in place, and attention without copies.

Two of transformers' defaults make each decoding step on a CPU slower as a conversation grows
(measured on SmolLM2-135M in bfloat16, 2 cores, 1,700 tokens of context; see benchmarks/):

- `DynamicCache` appends every step's keys and values with `torch.cat`, copying the whole cache
  each token (12 ms of a 78 ms step);
- its SDPA integration runs grouped-query attention for a single query token with `enable_gqa`
  whenever there is no mask, which on CPU in bfloat16 is about 5× slower than putting the query
  heads that share a key/value head side by side (1.2 ms against 0.25 ms a layer).

The modes, chosen with `%config LlmMagics.cpu_decoding`:

- "exact" (the default): `new_cache` gives a `DynamicCache` whose full-attention layers write into
  a buffer with room to spare. Only where the numbers are kept changes, so every token is the
  same as with transformers' own cache.
- "fastest": also `fast_attention`, which switches the model to `llm_magics_sdpa` for the length
  of a call: the packed form for one query token, and `enable_gqa` instead of copying the
  key/value heads when a mask is given. Same attention, other kernels: in bfloat16 their rounding
  differs now and then, so a greedy reply can take another token at a near tie.
- "transformers": transformers' defaults.

On other devices (and models with a `cache_implementation` of their own) nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...values import DecodingMode

#: The values `%config LlmMagics.cpu_decoding` takes.
MODES = tuple(mode.value for mode in DecodingMode)

ATTENTION = "llm_magics_sdpa"


_registered = False


def plan(model: Any, mode: DecodingMode | str) -> tuple[bool, bool]:
    """(grow the cache in place, use `fast_attention`) for `model` in `mode`."""
    import torch

    mode = DecodingMode(mode)
    device = getattr(model, "device", None)
    on_cpu = (
        isinstance(device, torch.device)
        and device.type == "cpu"
        and getattr(getattr(model, "generation_config", None), "cache_implementation", None) is None
    )
    growing = on_cpu and mode in (DecodingMode.EXACT, DecodingMode.FASTEST)
    return growing, growing and mode is DecodingMode.FASTEST and _can_switch_attention(model)


def _can_switch_attention(model: Any) -> bool:
    import torch

    can_switch = getattr(model, "_can_set_attn_implementation", None)
    # `enable_gqa` came with torch 2.5; pyproject allows older ones.
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (
        getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa"
        and callable(can_switch)
        and bool(can_switch())
        and (major, minor) >= (2, 5)
    )


def new_cache(model: Any, growing: bool = True) -> Any:
    """A `DynamicCache` for `model`, with layer types as generate would build them (sliding windows
    included); with `growing`, its full-attention layers write in place instead of concatenating."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    if growing:
        # Only plain full-attention layers: sliding-window layers keep their own logic.
        cache.layers = [_growing_layer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@contextmanager
def fast_attention(model: Any) -> Iterator[None]:
    """Run `model` with `llm_magics_sdpa` inside the block, and with its own attention again after it."""
    _register()
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _sdpa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    _registered = True


def _sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' SDPA attention, with the two CPU fast paths for grouped-query attention."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    plain = (
        groups > 1
        and dropout == 0.0
        and not kwargs.get("output_attentions")
        and all(kwargs.get(name) is None for name in ("softcap", "position_bias", "s_aux"))
        and (attention_mask is None or attention_mask.dtype == torch.bool)
    )
    batch, heads, length, _ = query.shape
    if plain and length == 1 and (attention_mask is None or attention_mask.shape[1] == 1):
        # The query heads sharing a key/value head become that head's "positions": one small
        # matrix product per key/value head, no copy of the keys and values.
        packed = query.reshape(batch, heads // groups, groups, query.shape[-1])
        output = scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
        return output.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None
    if plain and length > 1 and attention_mask is not None:
        # transformers copies the key/value heads `groups` times here (`repeat_kv`).
        output = scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True
        )
        return output.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=is_causal,
        **kwargs,
    )


def _growing_layer() -> Any:
    from .growing import GrowingLayer  # torch and transformers, on first use

    return GrowingLayer()


__all__ = ["ATTENTION", "MODES", "fast_attention", "new_cache", "plan"]
