"""Expected failures, each shown to the user as one actionable line.

    LlmMagicsError
    ├── TransformersUnsupported  transformers is missing or older than the oldest version we support
    ├── ModelNotFound            the MODEL argument names nothing we can load
    ├── HubUnreachable           a hub id that is not cached locally, while offline
    ├── NotLoaded                a registry name (or the active model) that is not loaded
    ├── InvalidOption            an option value out of range or meaningless here
    ├── QuantizationUnavailable  bitsandbytes missing, or it cannot serve this machine
    ├── InsufficientMemory       the estimate says the load will not fit
    ├── ModelLoadFailed          transformers refused the files (corrupt, unsupported architecture)
    ├── GenerationFailed         generation raised (out of memory, a model bug)
    ├── GenerationInterrupted    the stop button ended a reply early (the partial reply is kept)
    └── ConversationFileInvalid  `%llm_history --load` of a file that is not a conversation

Unexpected bugs are not wrapped: they keep their full traceback.
"""

from __future__ import annotations


def first_line(error: BaseException, limit: int) -> str:
    """The first line of an exception's message, cut to `limit` characters ("" when it has none)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


class LlmMagicsError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows exactly these lines instead of a traceback wall.
        return [f"{type(self).__name__}: {self}"]


class TransformersUnsupported(LlmMagicsError):
    """Raised at `%llm_load` when transformers is missing or older than `loading.MIN_TRANSFORMERS`.

    transformers 4.x loads models through other names (torch_dtype, another GGUF path); rather than
    fail somewhere deep inside it, the load stops first and says what to install.
    """


class ModelNotFound(LlmMagicsError):
    """Raised when MODEL is neither a loadable path, a built-in alias, nor a hub id."""


class HubUnreachable(LlmMagicsError):
    """Raised when a hub id is not in the local cache and the hub cannot be reached."""


class NotLoaded(LlmMagicsError):
    """Raised when a name is not in the session's registry, or nothing is loaded yet."""


class InvalidOption(LlmMagicsError):
    """Raised for option values that parse but make no sense (negative counts, unknown modes)."""


class QuantizationUnavailable(LlmMagicsError):
    """Raised when --quant is asked for and bitsandbytes is missing or cannot run here."""


class InsufficientMemory(LlmMagicsError):
    """Raised before loading when the memory estimate exceeds what is free (unless --force)."""


class ModelLoadFailed(LlmMagicsError):
    """Raised when the files exist but transformers cannot build a model from them."""


class GenerationFailed(LlmMagicsError):
    """Raised when generation itself fails; nothing is added to the conversation."""


class GenerationInterrupted(LlmMagicsError):
    """Raised after a reply was cut short by an interrupt; the partial reply is shown and kept.

    An error rather than a quiet return, so that "Run all" stops at this cell as at any interrupt.
    """


class ConversationFileInvalid(LlmMagicsError):
    """Raised when a file given to `%llm_history --load` does not hold a conversation."""
