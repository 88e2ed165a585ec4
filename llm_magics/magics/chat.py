"""%%llm_chat, %%llm_complete, %llm_history, %llm_reset (being written)."""

from __future__ import annotations

from ._base import SessionMagics


class ChatMagics(SessionMagics):
    pass
