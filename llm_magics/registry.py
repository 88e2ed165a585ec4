"""The session's engines by name, and which one is active.

The registry holds the only strong references to engines (and so to their models), so removing
one, closing it and collecting garbage really frees the memory. It imports nothing heavy: torch is
only touched when already imported, to empty the CUDA cache after an unload.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from .engines.base import Engine
from .errors import InvalidOption, NotLoaded

#: What a registry name may hold: what `%llm_use NAME` can take as typed, and what no card can
#: render as markup or terminal codes.
NAME_PATTERN = re.compile(r"[\w.-]+")


def is_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def check_name(name: str) -> None:
    """Refuse an `--as NAME` that would make a registry name no one could type or see safely."""
    if not is_name(name):
        raise InvalidOption(f"--as {name!r}: use letters, digits, '.', '_' and '-' only.")


@dataclass(frozen=True)
class UnloadReport:
    names: tuple[str, ...]
    freed_bytes: int


class ModelRegistry:
    """Loaded engines by name, and which one is active (the last loaded, unless chosen)."""

    def __init__(self) -> None:
        self._entries: dict[str, Engine] = {}
        self.active_name: str | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Engine]:
        return iter(list(self._entries.values()))

    def names(self) -> list[str]:
        return list(self._entries)

    def add(self, engine: Engine) -> None:
        """Store the engine and make it active; one of the same name must have been unloaded first."""
        assert engine.name not in self._entries, f"{engine.name} is still loaded"
        self._entries[engine.name] = engine
        self.active_name = engine.name

    def get(self, name: str | None = None) -> Engine:
        """The named engine, or the active one when name is None."""
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

    def use(self, name: str) -> Engine:
        entry = self.get(name)
        self.active_name = name
        return entry

    def unload(self, name: str | None = None, *, everything: bool = False) -> UnloadReport:
        """Close and drop engines, collect garbage, empty the CUDA cache; report the bytes freed."""
        names = self.names() if everything else [self.get(name).name]
        freed = 0
        for key in names:
            engine = self._entries.pop(key)
            freed += engine.close()
            del engine
        if self.active_name not in self._entries:
            self.active_name = next(reversed(self._entries), None) if self._entries else None
        release_memory()
        return UnloadReport(tuple(names), freed)

    def _loaded_hint(self) -> str:
        if not self._entries:
            return "Nothing is loaded yet: run %llm_load."
        return "Loaded: " + ", ".join(self._entries) + "."


def memory_in_use() -> int:
    """Bytes this process holds: resident memory, plus what torch has allocated on CUDA devices."""

    used = int(psutil.Process().memory_info().rss)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        used += sum(int(torch.cuda.memory_allocated(i)) for i in range(torch.cuda.device_count()))
    return used


def find_holders(namespace: Mapping[str, Any], targets: list[Any]) -> list[str]:
    """Names in a user namespace that keep one of `targets` alive: the object itself, or inside a
    tuple, list, dict or an object's attributes one step down (`_` after `get_model()`, `Out[3]`)."""
    ids = {id(target) for target in targets}

    def holds(value: Any) -> bool:
        if id(value) in ids:
            return True
        if isinstance(value, (tuple, list, set, frozenset)):
            inside: Any = value
        elif isinstance(value, dict):
            inside = value.values()
        else:
            inside = getattr(value, "__dict__", {}).values()
        return any(id(item) in ids for item in inside)

    found = []
    for name, value in namespace.items():
        if name == "Out" and isinstance(value, dict):
            found += [f"Out[{key}]" for key, item in value.items() if holds(item)]
        elif name not in ("In", "_oh") and holds(value):
            found.append(name)
    return found


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
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
