"""Token pieces laid along the text: the bytes each vocabulary string a server names stands for,
and the character offsets found from them (servers give ids and pieces, no offsets).

A piece that is not in the text (a BOS the tokenizer added) is zero-width, as fast tokenizers
give it; pieces splitting one character share that character's offsets, as byte-level tokens do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...bytelevel import BYTE_TOKEN, byte_decoder

#: Vocabulary strings that look like special tokens (`<|im_start|>`, `<s>`, `<eos>` …).
SPECIAL_LOOKING = re.compile(r"<\|[^\s<>]*\|>|</?s>|<(?:unk|pad|bos|eos)>")


def vocabulary_bytes(tokens: Sequence[str]) -> list[bytes]:
    """The bytes each vocabulary string stands for, the scheme told from the strings themselves."""
    if any("▁" in t or BYTE_TOKEN.fullmatch(t) for t in tokens):
        out = []
        for token in tokens:
            match = BYTE_TOKEN.fullmatch(token)
            out.append(bytes([int(match.group(1), 16)]) if match else token.replace("▁", " ").encode())
        return out
    decoder = byte_decoder()
    ordinary = [t for t in tokens if not SPECIAL_LOOKING.fullmatch(t)]
    if (
        ordinary
        and any(ch in t for t in ordinary for ch in "ĠĊĉ")
        and all(ch in decoder for t in ordinary for ch in t)
    ):
        return [
            t.encode() if SPECIAL_LOOKING.fullmatch(t) else bytes(decoder[ch] for ch in t) for t in tokens
        ]
    return [t.encode() for t in tokens]


def offsets_from_pieces(text: str, pieces: Sequence[bytes]) -> list[tuple[int, int]]:
    """Character offsets of each piece in `text`: laid along its UTF-8 bytes in order; a piece
    that does not continue the text is zero-width; a SentencePiece leading space that the text
    lacks (its "dummy prefix") is skipped."""
    data = text.encode()
    # char_at[i]: the character holding byte i; starts[i]: whether byte i begins a character.
    char_at: list[int] = []
    for index, character in enumerate(text):
        char_at.extend([index] * len(character.encode()))
    char_at.append(len(text))
    cursor = 0
    offsets = []
    for piece in pieces:
        size = 0
        if piece and data.startswith(piece, cursor):
            size = len(piece)
        elif piece.startswith(b" ") and len(piece) > 1 and data.startswith(piece[1:], cursor):
            size = len(piece) - 1
        if size == 0:
            offsets.append((char_at[cursor], char_at[cursor]))
            continue
        start, end = cursor, cursor + size
        first = char_at[start]
        # A piece ending inside a character covers all of it, like its neighbours.
        last = char_at[end - 1] + 1
        offsets.append((first, last))
        cursor = end
    return offsets


__all__ = ["SPECIAL_LOOKING", "offsets_from_pieces", "vocabulary_bytes"]
