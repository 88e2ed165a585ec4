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

EXACT, FASTEST, TRANSFORMERS = "exact", "fastest", "transformers"
MODES = (EXACT, FASTEST, TRANSFORMERS)

ATTENTION = "llm_magics_sdpa"

# Room added when a layer's buffer is full: a quarter more, at least this many tokens, so growing
# costs one copy every few hundred steps instead of one every step.
_MIN_HEADROOM = 256

_registered = False


def plan(model: Any, mode: str) -> tuple[bool, bool]:
    """(grow the cache in place, use `fast_attention`) for `model` in `mode`."""
    import torch

    device = getattr(model, "device", None)
    on_cpu = (
        isinstance(device, torch.device)
        and device.type == "cpu"
        and getattr(getattr(model, "generation_config", None), "cache_implementation", None) is None
    )
    growing = on_cpu and mode in (EXACT, FASTEST)
    return growing, growing and mode == FASTEST and _can_switch_attention(model)


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


_GrowingLayer: Any = None


def _growing_layer() -> Any:
    # The class derives from a transformers class, so it is built on first use (imports stay lazy).
    global _GrowingLayer
    if _GrowingLayer is None:
        _GrowingLayer = _define_growing_layer()
    return _GrowingLayer()


def _define_growing_layer() -> Any:
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A full-attention cache layer that writes new keys and values into a buffer with headroom.

        `keys` and `values` are views of the first `length` positions of the buffers, so everything
        `DynamicLayer` does with them (length, crop, reorder) still works; `update` notices when
        they no longer live in the buffers (after a reorder) and starts new ones.
        """

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None
            self.capacity = 0
            self.handed_out: torch.Tensor | None = None

        def reset(self) -> None:
            # Dropped, not zeroed: DynamicLayer.reset in older transformers (5.15 among them)
            # zeroes the keys in place and keeps their length, so a new conversation would
            # attend to that many zero positions.
            self.buffers, self.capacity, self.handed_out = None, 0, None
            self.keys = self.values = None
            self.is_initialized = False
            super().reset()

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.get_seq_length()
            added = key_states.shape[-2]
            needed = length + added
            # Every decoding step takes the first branch (the keys are still the view handed out
            # last time); the full check runs after a crop or a reorder.
            if not (self.keys is self.handed_out and needed <= self.capacity) and not self._fits(
                key_states, value_states, length, needed
            ):
                self._grow(key_states, value_states, length, needed)
            assert self.buffers is not None
            key_buffer, value_buffer = self.buffers
            key_buffer.narrow(-2, length, added).copy_(key_states)
            value_buffer.narrow(-2, length, added).copy_(value_states)
            self.keys, self.values = key_buffer.narrow(-2, 0, needed), value_buffer.narrow(-2, 0, needed)
            self.handed_out = self.keys
            return self.keys, self.values

        def _fits(self, keys: torch.Tensor, values: torch.Tensor, length: int, needed: int) -> bool:
            if self.buffers is None:
                return False
            key_buffer, value_buffer = self.buffers
            in_buffers = length == 0 or (
                self.keys is not None
                and self.values is not None
                and self.keys.data_ptr() == key_buffer.data_ptr()
                and self.values.data_ptr() == value_buffer.data_ptr()
            )
            same_shape = (
                key_buffer.shape[:2] == keys.shape[:2]
                and key_buffer.shape[-1] == keys.shape[-1]
                and value_buffer.shape[-1] == values.shape[-1]
                and key_buffer.dtype == keys.dtype
            )
            return in_buffers and same_shape and needed <= key_buffer.shape[-2]

        def _grow(self, keys: torch.Tensor, values: torch.Tensor, length: int, needed: int) -> None:
            capacity = needed + max(_MIN_HEADROOM, needed // 4)

            def buffer(new: torch.Tensor, current: torch.Tensor | None) -> torch.Tensor:
                batch, heads, _, dim = new.shape
                fresh = new.new_empty((batch, heads, capacity, dim))
                if length and current is not None:
                    fresh[..., :length, :].copy_(current[..., :length, :])
                return fresh

            self.buffers = (buffer(keys, self.keys), buffer(values, self.values))
            self.capacity = capacity

    return GrowingLayer


__all__ = ["ATTENTION", "EXACT", "FASTEST", "MODES", "TRANSFORMERS", "fast_attention", "new_cache", "plan"]
