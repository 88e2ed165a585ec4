"""The bytes a vocabulary string stands for: the one byte decoder every layer uses.

Tokenizers spell raw bytes two ways: SentencePiece's byte fallback (`<0xF0>`) and byte-level BPE's
printable stand-ins (GPT-2's `Ġ` for a space, `ðŁ` for the first bytes of an emoji). The table is
GPT-2's `bytes_to_unicode`, written here rather than imported from transformers
(`transformers.convert_slow_tokenizer`) so that a server's token view needs no transformers.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: SentencePiece's byte fallback token: one byte in hex.
BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values, inverted (character → byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def token_bytes(token: str) -> bytes | None:
    """The raw bytes a vocabulary string stands for, where it spells bytes: SentencePiece's byte
    fallback (`<0xF0>`) or byte-level BPE's printable stand-ins (GPT-2's `Ġ`, `ðŁ`); else None."""
    match = BYTE_TOKEN.fullmatch(token)
    if match:
        return bytes([int(match.group(1), 16)])
    decoder = byte_decoder()
    if token and all(char in decoder for char in token):
        return bytes(decoder[char] for char in token)
    return None


__all__ = ["BYTE_TOKEN", "byte_decoder", "token_bytes"]
