"""The magics, one module per concern, combined into the single class IPython registers.

IPython's `@magic_arguments`/`@line_magic` decorators record magics in a module global until the
next `@magics_class`; the group modules are imported first and decorate nothing, so this
module's `@magics_class` collects all of them. Only `LlmMagics` is registered and configured
(`%config LlmMagics.max_new_tokens = 512`).
"""

from __future__ import annotations

from IPython.core.magic import magics_class

from .chat import ChatMagics
from .inside import InsideMagics
from .models import ModelMagics
from .next_token import NextTokenMagics
from .pipe import PipeMagics
from .tokens import TokenMagics


@magics_class
class LlmMagics(PipeMagics, ModelMagics, ChatMagics, TokenMagics, NextTokenMagics, InsideMagics):
    """Load open LLMs, chat with them and look at their tokens, inside the notebook."""


__all__ = ["LlmMagics"]
