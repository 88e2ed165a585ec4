"""Tokenisation into spans that tile the text: ids, token strings, offsets, special tokens.

No IPython here. The tokenizer is any fast (Rust-backed) transformers tokenizer; its offset mapping
tells which characters each token covers. Byte-level tokenizers split one character (an emoji, a
CJK ideograph) across several tokens whose offsets overlap: those tokens are merged into one span
carrying all their ids, so no view ever shows half a character as "�". Characters no token covers
(whitespace a normaliser dropped) become spans without ids. Either way the spans' texts,
concatenated, give back the input exactly.

Each token's probability comes from an engine that `ScoresTokens` (in process:
`engines.transformers.scoring`); this module imports no torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .conversation import check_text
from .engines.base import ScoresTokens
from .errors import InvalidOption
from .prompts import apply_chat_template, context_length_of, has_chat_template
from .values import TokenProbs

#: A conversation shown by `%tokens --chat` before the user has chatted, so the template is visible.
EXAMPLE_CONVERSATION: list[dict[str, str]] = [
    {"role": "system", "content": "You are a patient tutor."},
    {"role": "user", "content": "What is a token?"},
    {"role": "assistant", "content": "A piece of text the model reads as one unit."},
    {"role": "user", "content": "Why not whole words?"},
]

# Describing every difference of a 100,000-character text would drown the one that matters.
_MAX_CHANGES = 5
_DIFF_WINDOW = 4000


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """A run of the input text and the token ids that cover it.

    `text` is `input[start:end]`. Usually one token; several when a byte-level tokenizer split a
    character across tokens (`ids` holds them all, `tokens` their vocabulary strings); none when
    the tokenizer dropped these characters, and zero-width (`start == end`) for a special token the
    tokenizer added itself (a BOS). `index` is the position of the first id in the full id list.
    """

    text: str
    start: int
    end: int
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    is_special: bool = False
    index: int = 0

    @property
    def id(self) -> int | None:
        """The id when the span is exactly one token; None for merged or untokenised spans."""
        return self.ids[0] if len(self.ids) == 1 else None

    @property
    def token(self) -> str:
        """The vocabulary string(s) of the span, as the tokenizer spells them."""
        return "".join(self.tokens)


@dataclass(frozen=True)
class Change:
    """One place where decoding the ids does not give the text back."""

    position: int
    original: str
    decoded: str

    def describe(self) -> str:
        if not self.decoded:
            return f"{self.original!r} at {self.position} was dropped"
        if not self.original:
            return f"{self.decoded!r} was inserted at {self.position}"
        return f"{self.original!r} at {self.position} became {self.decoded!r}"


@dataclass
class Tokenization:
    """Everything a token view shows: the spans (possibly cut), and exact counts of the whole text.

    `spans` covers `text[:shown_chars]`; `truncated` says the view was cut at `max_tokens` while
    `n_tokens` still counts every token.
    """

    name: str
    text: str
    ids: list[int]
    spans: list[TokenSpan]
    context_length: int | None = None
    truncated: bool = False
    changes: list[Change] = field(default_factory=list)
    changes_total: int = 0
    decoded: str = ""
    # Per span, for chat views: (role, is_content); empty for plain text.
    roles: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probs: TokenProbs | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def shown_tokens(self) -> int:
        return sum(len(span.ids) for span in self.spans)

    @property
    def shown_chars(self) -> int:
        return self.spans[-1].end if self.spans else 0

    @property
    def chars_per_token(self) -> float | None:
        return self.n_chars / self.n_tokens if self.n_tokens else None

    @property
    def context_fraction(self) -> float | None:
        return self.n_tokens / self.context_length if self.context_length else None

    @property
    def round_trips(self) -> bool:
        return self.changes_total == 0


def special_ids(tokenizer: Any) -> set[int]:
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidOption(
            "This tokenizer has no offset mapping (it is not a fast tokenizer): %tokens needs one to "
            "show which characters each token covers."
        )
    check_text(text)
    encoding = tokenizer(
        text, add_special_tokens=add_special_tokens, return_offsets_mapping=True, verbose=False
    )
    return list(encoding["input_ids"]), [(int(s), int(e)) for s, e in encoding["offset_mapping"]]


def spans_from_offsets(
    text: str,
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    tokens: Sequence[str],
    special_ids: set[int] | frozenset[int] = frozenset(),
    *,
    stop_after: int | None = None,
) -> list[TokenSpan]:
    """Tile `text` with spans built from a tokenizer's ids and offsets.

    Tokens whose offsets overlap (pieces of one character) are merged; characters between tokens
    become id-less spans; zero-width tokens sit where the previous span ended. With `stop_after`,
    spans end with the one holding token `stop_after - 1` (they then tile a prefix of the text):
    a long text's view needs only the spans it draws.
    """
    spans: list[TokenSpan] = []
    cursor = 0
    # The group being built: start, end, first token index, ids, tokens, special.
    group: list[Any] | None = None

    def flush() -> None:
        nonlocal group, cursor
        if group is not None:
            start, end, index, gids, gtoks, special = group
            spans.append(TokenSpan(text[start:end], start, end, tuple(gids), tuple(gtoks), special, index))
            cursor = end
            group = None

    for index, (token_id, (start, end), token) in enumerate(zip(ids, offsets, tokens, strict=True)):
        special = token_id in special_ids
        merges = group is not None and end > start and start < group[1]
        if stop_after is not None and index >= stop_after and not merges:
            flush()
            return spans
        if end <= start:
            # Added by the tokenizer (BOS/EOS) or an empty piece: it covers no character.
            flush()
            spans.append(TokenSpan("", cursor, cursor, (token_id,), (token,), special, index))
            continue
        if merges:
            assert group is not None
            group[1] = max(group[1], end)
            group[3].append(token_id)
            group[4].append(token)
            group[5] = group[5] or special
            continue
        flush()
        start = max(start, cursor)
        if start > cursor:
            spans.append(TokenSpan(text[cursor:start], cursor, start, (), (), False, index))
            cursor = start
        group = [start, max(end, start), index, [token_id], [token], special]
    flush()
    if cursor < len(text):
        spans.append(TokenSpan(text[cursor:], cursor, len(text), (), (), False, len(ids)))
    return spans


def tokenize_text(tokenizer: Any, text: str, *, add_special_tokens: bool = True) -> list[TokenSpan]:
    """Spans (ids, token strings, start, end, is_special) that tile `text` under `tokenizer`.

    The ids, in order, are exactly `tokenizer(text)["input_ids"]`; `"".join(s.text for s in spans)`
    is exactly `text`.
    """
    ids, offsets = _encode(tokenizer, text, add_special_tokens)
    return spans_from_offsets(
        text, ids, offsets, tokenizer.convert_ids_to_tokens(ids), special_ids(tokenizer)
    )


def normalisation_changes(text: str, decoded: str) -> tuple[list[Change], int]:
    """Where `decoded` differs from `text`: the first few changes and how many there are."""
    if decoded == text:
        return [], 0
    prefix = 0
    limit = min(len(text), len(decoded))
    while prefix < limit and text[prefix] == decoded[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and text[-1 - suffix] == decoded[-1 - suffix]:
        suffix += 1
    a = text[prefix : len(text) - suffix]
    b = decoded[prefix : len(decoded) - suffix]
    if len(a) > _DIFF_WINDOW or len(b) > _DIFF_WINDOW:
        # A full diff of huge texts is quadratic; the first change is what the user needs.
        return [Change(prefix, a[:20], b[:20])], 1
    changes = [
        Change(prefix + i1, a[i1:i2], b[j1:j2])
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
        if tag != "equal"
    ]
    return changes[:_MAX_CHANGES], len(changes)


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _cut(spans: list[TokenSpan], max_tokens: int | None) -> tuple[list[TokenSpan], bool]:
    if max_tokens is None:
        return spans, False
    for position, span in enumerate(spans):
        if span.ids and span.index + len(span.ids) > max_tokens:
            return spans[:position], True
    return spans, False


def analyse(
    tokenizer: Any,
    text: str,
    *,
    name: str = "",
    context_length: int | None = None,
    max_tokens: int | None = None,
    add_special_tokens: bool = True,
) -> Tokenization:
    """Tokenise `text` for a view: spans (cut after `max_tokens`), exact counts, round-trip check."""
    ids, offsets = _encode(tokenizer, text, add_special_tokens)
    specials = special_ids(tokenizer)
    # Spans are built only as far as the view goes: the counts come from the ids themselves.
    spans = spans_from_offsets(
        text, ids, offsets, tokenizer.convert_ids_to_tokens(ids), specials, stop_after=max_tokens
    )
    shown, truncated = _cut(spans, max_tokens)
    truncated = truncated or (max_tokens is not None and len(ids) > max_tokens)
    # Tokens the tokenizer added itself (zero width) are not in the text, so not in the round trip.
    text_ids = [i for i, (start, end) in zip(ids, offsets, strict=True) if end > start or i not in specials]
    decoded = _decode(tokenizer, text_ids)
    changes, total = normalisation_changes(text, decoded)
    return Tokenization(
        name=name,
        text=text,
        ids=ids,
        spans=shown,
        context_length=context_length or context_length_of(None, tokenizer),
        truncated=truncated,
        changes=changes,
        changes_total=total,
        decoded=decoded,
    )


def _content_regions(rendered: str, messages: Sequence[dict[str, str]]) -> list[tuple[int, int, str]]:
    """Where each message's content sits in the rendered template, in order (when it can be found)."""
    regions = []
    cursor = 0
    for message in messages:
        content = str(message.get("content", ""))
        role = str(message.get("role", ""))
        # Templates commonly strip the content; look for the stripped form if the exact one is absent.
        for candidate in (content, content.strip()):
            if not candidate:
                continue
            found = rendered.find(candidate, cursor)
            if found >= 0:
                regions.append((found, found + len(candidate), role))
                cursor = found + len(candidate)
                break
    return regions


def analyse_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    *,
    name: str = "",
    context_length: int | None = None,
    max_tokens: int | None = None,
    plain: Callable[[Sequence[dict[str, str]]], str] | None = None,
) -> Tokenization:
    """The conversation exactly as the model receives it: the chat template's text, tokenised.

    `apply_chat_template(tokenize=False)` gives the text; it is tokenised without adding special
    tokens again (the template writes its own), as `apply_chat_template(tokenize=True)` does. Each
    span is labelled with the role of the message it belongs to, and whether it is that message's
    content or the template's framing around it (role headers, special tokens, a default system
    prompt). When the last message is not the assistant's, the generation prompt is included: it
    is what the model continues from.

    A tokenizer without a template gets `plain(messages)`, the transcript the chat sends instead,
    tokenised as ordinary text; without `plain` that is an `InvalidOption`.
    """
    if has_chat_template(tokenizer):
        generation_prompt = not messages or messages[-1].get("role") != "assistant"
        rendered = str(
            apply_chat_template(tokenizer, messages, tokenize=False, add_generation_prompt=generation_prompt)
        )
        add_special_tokens = False
    elif plain is not None:
        generation_prompt = True
        rendered = plain(messages)
        add_special_tokens = True
    else:
        raise InvalidOption(
            f"{name or 'This tokenizer'} has no chat template, so there is nothing to show with --chat; "
            "load an instruct/chat model."
        )
    view = analyse(
        tokenizer,
        rendered,
        name=name,
        context_length=context_length,
        max_tokens=max_tokens,
        add_special_tokens=add_special_tokens,
    )
    regions = _content_regions(rendered, messages)
    roles: list[tuple[str, bool]] = []
    region = 0
    for span in view.spans:
        while region < len(regions) and span.start >= regions[region][1]:
            region += 1
        if region < len(regions):
            start, end, role = regions[region]
            roles.append((role, span.start < end and span.end > start))
        else:
            # After the last message: the generation prompt, which opens the assistant's turn.
            roles.append(("assistant" if generation_prompt else "", False))
    view.roles = roles
    return view


def with_probabilities(view: Tokenization, scorer: ScoresTokens, *, top_k: int = 5) -> Tokenization:
    """Attach the scorer's `token_probabilities` of the whole text to the view (it must fit the context)."""
    if view.context_length and view.n_tokens > view.context_length:
        raise InvalidOption(
            f"--probs needs the text to fit the model's context: {view.n_tokens:,} tokens > {view.context_length:,}."
        )
    view.probs = scorer.token_probabilities(view.ids, top_k=top_k)
    return view


__all__ = [
    "EXAMPLE_CONVERSATION",
    "Change",
    "TokenProbs",
    "TokenSpan",
    "Tokenization",
    "analyse",
    "analyse_chat",
    "normalisation_changes",
    "spans_from_offsets",
    "tokenize_text",
    "with_probabilities",
]
