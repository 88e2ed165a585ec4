"""%tokens / %%tokens (being written)."""

from __future__ import annotations

from ._base import SessionMagics


class TokenMagics(SessionMagics):
    pass
