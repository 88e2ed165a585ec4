"""The cache layer behind `decoding`'s "exact" mode: keys and values written into a buffer with
headroom, instead of `torch.cat` copying the whole cache at every token.

Its own module because it derives from a transformers class: `decoding` imports it on first use,
so `%load_ext` stays free of torch and transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

# Room added when a layer's buffer is full: a quarter more, at least this many tokens, so growing
# costs one copy every few hundred steps instead of one every step.
MIN_HEADROOM = 256


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
        capacity = needed + max(MIN_HEADROOM, needed // 4)

        def buffer(new: torch.Tensor, current: torch.Tensor | None) -> torch.Tensor:
            batch, heads, _, dim = new.shape
            fresh = new.new_empty((batch, heads, capacity, dim))
            if length and current is not None:
                fresh[..., :length, :].copy_(current[..., :length, :])
            return fresh

        self.buffers = (buffer(keys, self.keys), buffer(values, self.values))
        self.capacity = capacity
