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

The pieces' bytes and offsets are read in `pieces`; each server's routes are spelled in `dialects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...conversation import Message
from ...errors import NotOpenAICompatible, RemoteError
from .dialects import Dialect, TokenizeRoute
from .pieces import SPECIAL_LOOKING, offsets_from_pieces

_SERVER_TEMPLATE = "(applied by the server)"


class ServerTokenizer:
    """The members of a fast tokenizer that `%tokens` reads, answered by a server's `/tokenize`."""

    is_fast = True

    def __init__(self, server: Any, model: str, route: TokenizeRoute, context_length: int | None) -> None:
        self._server, self._model, self._route = server, model, route
        self.model_max_length = context_length or int(1e30)
        self._names: dict[int, str] = {}
        self._special: set[int] = set()
        self._texts: dict[int, str] = {}
        self.name_or_path = f"{model} (server)"

    def __repr__(self) -> str:
        return f"<ServerTokenizer {self._model} via {self._route.name} /tokenize>"

    @property
    def chat_template(self) -> str | None:
        # vLLM renders a conversation through its template in /tokenize; llama.cpp's does not.
        return _SERVER_TEMPLATE if self._route.renders_chat_template else None

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
                if start == end or SPECIAL_LOOKING.fullmatch(string):
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
        if not self._route.renders_chat_template:
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
        try:
            ids, strings, pieces = self._route.read_tokens(answer)
        except (KeyError, TypeError, ValueError) as exc:
            raise NotOpenAICompatible(
                f"{self._server.endpoint.url}/tokenize answered in a shape llm_magics does not know."
            ) from exc
        self._names.update(zip(ids, strings, strict=True))
        return ids, strings, pieces


def server_tokenizer(
    server: Any, model: str, dialect: Dialect, context_length: int | None
) -> ServerTokenizer | None:
    """A `ServerTokenizer` when the server has a `/tokenize` that gives token pieces, else None.

    vLLM and llama.cpp are known to; another server is asked once with vLLM's request (many copy
    it); transformers serve has none.
    """
    if dialect.tokenize is None:
        return None
    view = ServerTokenizer(server, model, dialect.tokenize, context_length)
    if dialect.tokenize_known:
        return view
    try:
        view("a", add_special_tokens=False)
    except RemoteError:
        return None
    return view


__all__ = ["ServerTokenizer", "server_tokenizer"]
