"""The in-process transformers engine (see `engine`), its generation and its CPU decoding modes.

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from .engine import TokenizerEngine, TransformersChatSession, TransformersEngine

__all__ = ["TokenizerEngine", "TransformersChatSession", "TransformersEngine"]
