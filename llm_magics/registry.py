"""The session's loaded models: one entry type, one registry type.

The registry holds the only strong references to models, so removing an entry and collecting
garbage really frees the memory. It imports nothing heavy: torch is only touched when already
imported, to empty the CUDA cache after an unload.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import NotLoaded


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template (instruct models do; base models usually not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def context_length_of(config: Any, tokenizer: Any) -> int | None:
    """A model's context window in tokens: from its config, else from its tokenizer, else None."""
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    # Tokenizers that do not know their limit report a huge sentinel (about 1e30).
    return limit if isinstance(limit, int) and 0 < limit < 10_000_000 else None


@dataclass
class ModelEntry:
    """One loaded model (or tokenizer alone) and what the summary card says about it.

    `backend` names how generation happens. Today it is always "transformers" (an in-process
    `model` and `tokenizer`); a server backend (an OpenAI-compatible endpoint such as vLLM) would be
    an entry with `model=None`, its client kept in `state`, and its own branch in `chat`.
    """

    name: str
    source: str
    tokenizer: Any
    model: Any = None
    backend: str = "transformers"
    quantization: str = "none"
    dtype: str = "-"
    compute_dtype: str | None = None
    device: str = "cpu"
    parameters: int = 0
    footprint_bytes: int = 0
    load_seconds: float = 0.0
    context_length: int | None = None
    has_chat_template: bool = False
    notes: list[str] = field(default_factory=list)
    # Per-model state owned by other modules (the chat conversation and its key/value cache);
    # it lives and dies with the entry, so unloading a model frees its cache too.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer_only(self) -> bool:
        return self.model is None and self.backend == "transformers"

    def context_window(self) -> int | None:
        """The context length in tokens: as loaded, else from the model's config or tokenizer."""
        return self.context_length or context_length_of(getattr(self.model, "config", None), self.tokenizer)


@dataclass(frozen=True)
class UnloadReport:
    names: tuple[str, ...]
    freed_bytes: int


class ModelRegistry:
    """Loaded entries by name, and which one is active (the last loaded, unless chosen)."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self.active_name: str | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(list(self._entries.values()))

    def names(self) -> list[str]:
        return list(self._entries)

    def add(self, entry: ModelEntry) -> None:
        """Store the entry and make it active; an entry of the same name is replaced."""
        self._entries[entry.name] = entry
        self.active_name = entry.name

    def get(self, name: str | None = None) -> ModelEntry:
        """The named entry, or the active one when name is None."""
        if name is None:
            if self.active_name is None:
                raise NotLoaded(
                    "No model is loaded. Run %llm_load first (with no argument for the bundled default)."
                )
            name = self.active_name
        try:
            return self._entries[name]
        except KeyError:
            raise NotLoaded(f"No model named {name!r} is loaded. {self._loaded_hint()}") from None

    def use(self, name: str) -> ModelEntry:
        entry = self.get(name)
        self.active_name = name
        return entry

    def unload(self, name: str | None = None, *, everything: bool = False) -> UnloadReport:
        """Drop entries, collect garbage and empty the CUDA cache; report the footprint freed."""
        names = self.names() if everything else [self.get(name).name]
        freed = 0
        for key in names:
            entry = self._entries.pop(key)
            freed += entry.footprint_bytes
            entry.state.clear()
            entry.model = None
            del entry
        if self.active_name not in self._entries:
            self.active_name = next(reversed(self._entries), None) if self._entries else None
        release_memory()
        return UnloadReport(tuple(names), freed)

    def _loaded_hint(self) -> str:
        if not self._entries:
            return "Nothing is loaded yet: run %llm_load."
        return "Loaded: " + ", ".join(self._entries) + "."


def release_memory() -> None:
    """Collect garbage, hand cached CUDA blocks back to the driver and freed heap back to the OS."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    # glibc keeps freed blocks in its arenas, so without this an unloaded model's memory stays
    # in the process (RSS) even though it is free. Elsewhere (macOS, musl) this is a no-op.
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
