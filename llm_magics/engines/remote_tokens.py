"""A server's `/tokenize` as a tokenizer-like object, so `%tokens` shows a remote model's tokens.

`llm_magics.tokens.analyse` (and `analyse_chat`) read a tokenizer through a few members: calling
it with `return_offsets_mapping=True`, `convert_ids_to_tokens`, `decode`, `all_special_ids`,
`model_max_length`, `chat_template` and `apply_chat_template`. `ServerTokenizer` offers exactly
those over HTTP, so the token view needs no change for remote models.

Servers give ids and token pieces but no character offsets; they are found here by laying each
piece's bytes along the text's UTF-8 bytes:

- vLLM (`POST /tokenize` with `return_token_strs`) returns vocabulary strings: byte-level BPE
  (GPT-2's "Ġ"/"Ċ" alphabet, mapped back to bytes), SentencePiece ("▁" for a space, "<0x0A>"
  for a byte), or plain text. `messages` instead of `prompt` gives the chat template's view.
- llama.cpp (`POST /tokenize` with `with_pieces`) returns each token's text (or its bytes, when
  they are not valid UTF-8 alone).

A piece that is not in the text (a BOS the tokenizer added) is zero-width, as fast tokenizers
give it; pieces splitting one character share that character's offsets, as byte-level tokens do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..conversation import Message
from ..errors import RemoteError

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPECIAL_LOOKING = re.compile(r"<\|[^\s<>]*\|>|</?s>|<(?:unk|pad|bos|eos)>")
_SERVER_TEMPLATE = "(applied by the server)"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
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


def vocabulary_bytes(tokens: Sequence[str]) -> list[bytes]:
    """The bytes each vocabulary string stands for, the scheme told from the strings themselves."""
    if any("▁" in t or _BYTE_TOKEN.fullmatch(t) for t in tokens):
        out = []
        for token in tokens:
            match = _BYTE_TOKEN.fullmatch(token)
            out.append(bytes([int(match.group(1), 16)]) if match else token.replace("▁", " ").encode())
        return out
    decoder = _byte_decoder()
    ordinary = [t for t in tokens if not _SPECIAL_LOOKING.fullmatch(t)]
    if (
        ordinary
        and any(ch in t for t in ordinary for ch in "ĠĊĉ")
        and all(ch in decoder for t in ordinary for ch in t)
    ):
        return [
            t.encode() if _SPECIAL_LOOKING.fullmatch(t) else bytes(decoder[ch] for ch in t) for t in tokens
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


@dataclass(frozen=True)
class _Route:
    """How one kind of server spells its tokenizer routes."""

    kind: str  # "vllm" | "llama.cpp"

    def tokenize_body(self, model: str, text: str, add_special_tokens: bool) -> dict[str, Any]:
        if self.kind == "vllm":
            return {
                "model": model,
                "prompt": text,
                "add_special_tokens": add_special_tokens,
                "return_token_strs": True,
            }
        return {"content": text, "add_special": add_special_tokens, "with_pieces": True}

    def read_tokens(self, answer: Any) -> tuple[list[int], list[str], list[bytes]]:
        """(ids, token strings for display, bytes of each piece)."""
        if self.kind == "vllm":
            ids = [int(i) for i in answer["tokens"]]
            strings = [str(s) for s in answer.get("token_strs") or []]
            if len(strings) != len(ids):
                raise KeyError("token_strs")
            return ids, strings, vocabulary_bytes(strings)
        ids, strings, pieces = [], [], []
        for item in answer["tokens"]:
            ids.append(int(item["id"]))
            piece = item["piece"]
            raw = bytes(piece) if isinstance(piece, list) else str(piece).encode()
            pieces.append(raw)
            strings.append(raw.decode(errors="replace"))
        return ids, strings, pieces

    def detokenize(self, server: Any, model: str, ids: Sequence[int]) -> str:
        if self.kind == "vllm":
            return str(server.post_json("/detokenize", {"model": model, "tokens": list(ids)})["prompt"])
        return str(server.post_json("/detokenize", {"tokens": list(ids)})["content"])


class ServerTokenizer:
    """The members of a fast tokenizer that `%tokens` reads, answered by a server's `/tokenize`."""

    is_fast = True

    def __init__(self, server: Any, model: str, route: _Route, context_length: int | None) -> None:
        self._server, self._model, self._route = server, model, route
        self.model_max_length = context_length or int(1e30)
        self._names: dict[int, str] = {}
        self._special: set[int] = set()
        self._texts: dict[int, str] = {}
        self.name_or_path = f"{model} (server)"

    def __repr__(self) -> str:
        return f"<ServerTokenizer {self._model} via {self._route.kind} /tokenize>"

    @property
    def chat_template(self) -> str | None:
        # vLLM renders a conversation through its template in /tokenize; llama.cpp's does not.
        return _SERVER_TEMPLATE if self._route.kind == "vllm" else None

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(self._special)

    added_tokens_decoder: dict[int, Any] = {}

    def __call__(
        self,
        text: str,
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        verbose: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        answer = self._post(self._route.tokenize_body(self._model, text, add_special_tokens))
        ids, strings, pieces = self._read(answer)
        result: dict[str, Any] = {"input_ids": ids}
        if return_offsets_mapping:
            offsets = offsets_from_pieces(text, pieces)
            for token_id, string, (start, end) in zip(ids, strings, offsets, strict=True):
                if start == end or _SPECIAL_LOOKING.fullmatch(string):
                    self._special.add(token_id)
            result["offset_mapping"] = offsets
        return result

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._names.get(int(i), f"<id {int(i)}>") for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special]
        if not ids:
            return ""
        if len(ids) == 1:
            # One token at a time is how the next-token views label their rows: ask once per id.
            token_id = int(ids[0])
            if token_id not in self._texts:
                self._texts[token_id] = self._route.detokenize(self._server, self._model, [token_id])
            return self._texts[token_id]
        return self._route.detokenize(self._server, self._model, ids)

    def apply_chat_template(
        self,
        messages: Sequence[Message],
        tokenize: bool = True,
        add_generation_prompt: bool = False,
        return_dict: bool = False,
        **_: Any,
    ) -> Any:
        ids = self._chat_ids(messages, add_generation_prompt)
        if not tokenize:
            return self.decode(ids)
        return {"input_ids": ids} if return_dict else ids

    def count_chat(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of `messages` with the generation prompt, as the server counts them."""
        return len(self._chat_ids(messages, True))

    def _chat_ids(self, messages: Sequence[Message], add_generation_prompt: bool) -> list[int]:
        if self._route.kind != "vllm":
            raise NotImplementedError("this server renders no chat template in /tokenize")
        body = {
            "model": self._model,
            "messages": [dict(m) for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "return_token_strs": True,
        }
        ids, _, _ = self._read(self._post(body))
        return ids

    def _post(self, body: dict[str, Any]) -> Any:
        return self._server.post_json("/tokenize", body)

    def _read(self, answer: Any) -> tuple[list[int], list[str], list[bytes]]:
        from ..errors import NotOpenAICompatible

        try:
            ids, strings, pieces = self._route.read_tokens(answer)
        except (KeyError, TypeError, ValueError) as exc:
            raise NotOpenAICompatible(
                f"{self._server.endpoint.url}/tokenize answered in a shape llm_magics does not know."
            ) from exc
        self._names.update(zip(ids, strings, strict=True))
        return ids, strings, pieces


def server_tokenizer(
    server: Any, model: str, kind: Any, context_length: int | None
) -> ServerTokenizer | None:
    """A `ServerTokenizer` when the server has a `/tokenize` that gives token pieces, else None.

    vLLM and llama.cpp are known to; another server is asked once with vLLM's request (many copy
    it); transformers serve has none.
    """
    from .remote import ServerKind

    if kind is ServerKind.TRANSFORMERS:
        return None
    route = _Route("llama.cpp" if kind is ServerKind.LLAMA_CPP else "vllm")
    view = ServerTokenizer(server, model, route, context_length)
    if kind in (ServerKind.VLLM, ServerKind.LLAMA_CPP):
        return view
    try:
        view("a", add_special_tokens=False)
    except RemoteError:
        return None
    return view


__all__ = ["ServerTokenizer", "offsets_from_pieces", "server_tokenizer", "vocabulary_bytes"]
