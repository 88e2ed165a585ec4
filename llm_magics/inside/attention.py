"""Attention weights (`%llm_attention`): how much each token attends to each earlier one, per layer
and head, exactly as `model(**inputs, output_attentions=True)` gives them with eager attention.

A model loaded with sdpa (the default) computes attention in one fused kernel that never forms
the weights, so the call switches the model to eager attention and back afterwards, as
`engines.transformers.decoding.fast_attention` switches it to its own kernel. torch is imported
inside the functions only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidOption
from .common import check_length, device_of, held_model, prompt

#: The bound `LlmMagics.attention_max_tokens` starts at: a 128 × 128 heatmap is still readable.
MAX_TOKENS = 128


@dataclass(frozen=True)
class Attention:
    """The attention weights of one text: `weights[layer, head, query, key]` (float32, each row of
    a head sums to 1 over the keys up to the query), and the tokens they are between."""

    name: str
    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    weights: np.ndarray

    @property
    def layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def heads(self) -> int:
        return int(self.weights.shape[1])

    def layer_index(self, layer: int | None) -> int:
        """`layer` as an index (negative counts from the end; None is the last layer)."""
        return _index(self.layers - 1 if layer is None else layer, self.layers, "--layer")

    def head_index(self, head: int | None) -> int | None:
        return None if head is None else _index(head, self.heads, "--head")

    def matrix(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """The [query, key] weights of one head, or their mean over the heads when `head` is None."""
        weights = self.weights[self.layer_index(layer)]
        index = self.head_index(head)
        return weights.mean(axis=0) if index is None else weights[index]

    def top(
        self, layer: int | None = None, head: int | None = None, k: int = 3
    ) -> list[list[tuple[int, float]]]:
        """For each query position, its `k` most attended keys as (position, weight), largest first."""
        matrix = self.matrix(layer, head)
        out = []
        for query, row in enumerate(matrix):
            keys = row[: query + 1]
            order = np.argsort(-keys, kind="stable")[:k]
            out.append([(int(key), float(keys[key])) for key in order])
        return out


def _index(value: int, size: int, flag: str) -> int:
    if not -size <= value < size:
        raise InvalidOption(f"{flag} must be between 0 and {size - 1} (or -1 for the last); got {value}.")
    return value % size


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run `model` with eager attention inside the block (the only kind that returns its weights),
    and with its own attention again after it, whatever happens inside."""
    config = model.config
    previous = getattr(config, "_attn_implementation", None)
    if previous == "eager":
        yield
        return
    switch = getattr(model, "set_attn_implementation", None)
    if callable(switch):
        switch("eager")
    else:
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        if callable(switch) and previous is not None:
            switch(previous)
        else:
            config._attn_implementation = previous


def attention_weights(model: Any, ids: tuple[int, ...]) -> np.ndarray:
    """`model`'s attention weights for `ids` as a float32 array [layers, heads, query, key]."""
    import torch

    inputs = torch.tensor([list(ids)], device=device_of(model))
    with eager_attention(model), torch.inference_mode():
        output = model(input_ids=inputs, output_attentions=True)
    attentions = getattr(output, "attentions", None)
    if not attentions:
        raise InvalidOption(f"{type(model).__name__} returned no attention weights.")
    return torch.stack([layer[0] for layer in attentions]).float().cpu().numpy()


def attention(engine: Any, text: str, *, max_tokens: int = MAX_TOKENS, chat: bool = False) -> Attention:
    """The attention weights of every layer and head for `text` under `engine`'s model (one forward
    pass with eager attention).

    Example::

        seen = attention(engine, "The cat sat on the mat")
        seen.weights.shape          # (layers, heads, tokens, tokens)
        seen.matrix(layer=-1)       # the last layer, mean over its heads
    """
    model, tokenizer = held_model(engine, "%llm_attention")
    asked = prompt(tokenizer, text, chat=chat, magic="%llm_attention")
    check_length(len(asked.ids), max_tokens, "%llm_attention", "attention_max_tokens")
    weights = attention_weights(model, asked.ids)
    return Attention(engine.name, text, asked.ids, asked.labels, weights)


def attention_code(load: str, text: str, layer: int, head: int | None) -> str:
    """`--code`: plain transformers lines that give the same weights (`load` is `code.load_code`'s)."""
    chosen = f"weights[{layer}, {head}]" if head is not None else f"weights[{layer}].mean(dim=0)"
    return "\n".join(
        [
            load,
            "",
            "# sdpa never forms the weights: eager attention returns them.",
            "model.set_attn_implementation('eager')",
            f"text = {text!r}",
            "inputs = tokenizer(text, return_tensors='pt').to(model.device)",
            "with torch.no_grad():",
            "    output = model(**inputs, output_attentions=True)",
            "weights = torch.stack(output.attentions)[:, 0].float()  # [layers, heads, query, key]",
            f"chosen = {chosen}",
            "print(weights.shape)",
            "print(chosen)",
        ]
    )


__all__ = ["MAX_TOKENS", "Attention", "attention", "attention_code", "attention_weights", "eager_attention"]
