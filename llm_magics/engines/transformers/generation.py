"""Streamed generation with an in-process transformers model, reusing the key/value cache.

Generation runs in the calling (main) thread with a streamer of our own. A KeyboardInterrupt (the
notebook's stop button) therefore lands inside `model.generate` and stops it within one decoding
step; no thread is ever started, so none can be left running.

Key/value-cache reuse: a conversation keeps the cache of its last turn and the token ids it
covers. The next prompt usually starts with those ids, so only the new suffix is run through the
model. Whenever the prompt differs (trimming, an edited system message, a reply that re-tokenises
differently), the cache is cropped to the common prefix, so reuse never changes what the model
sees. Greedy replies are the same with and without it (tested in float32 on CPU); in half
precision on a GPU, the different kernel shapes of a short suffix pass can in rare near-ties pick
another token, as any change of batch shape can.

With `options.keep_scores`, `generate` also asks transformers for its raw logits
(`output_logits=True, return_dict_in_generate=True`: the same forward passes, the same tokens) and
keeps each token's probability and its top runners-up (`scoring.scores_from_logits`); without it
nothing is requested. An interrupted reply has none (`generate` returns nothing when interrupted).

On CPU, generation keeps its cache in `decoding`'s buffers that grow in place, so a long
conversation does not copy the whole cache at every token (`cpu_decoding` chooses).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from ...errors import GenerationFailed
from ...values import DecodingMode, FinishReason, GenerationOptions, Reply, Stats, TextCallback
from . import decoding
from .scoring import scores_from_logits


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """Keyword arguments for `model.generate`; sampling ones only when sampling (else transformers warns)."""
    kwargs: dict[str, Any] = {"max_new_tokens": options.max_new_tokens, "do_sample": not options.greedy}
    if not options.greedy:
        kwargs.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
    if options.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = options.repetition_penalty
    return kwargs


class Streamer:
    """Takes token ids from `generate` and passes the reply's text so far to `on_text`.

    `generate` calls `put` with the prompt first, then with each new token, and `end` when done
    (transformers' streamer protocol). Text that may still change is held back: a trailing
    partial UTF-8 character, and the start of a stop string.

    The work per token is constant, as in transformers' `TextStreamer` and vLLM's incremental
    detokenizer: only the ids since the last settled text are decoded, with the few before them
    as context (so a SentencePiece "▁word" keeps its space). The reply's final text is one decode
    of all its ids, exact whatever the tokenizer's clean-up rules.
    """

    def __init__(
        self,
        tokenizer: Any,
        on_text: TextCallback | None,
        stop_strings: Sequence[str],
        clock: Callable[[], float],
    ) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop_strings = tuple(stop_strings)
        self.clock = clock
        self.ids: list[int] = []
        self.first_token_at: float | None = None
        self._prompt_seen = False
        self._shown = ""
        self._streamed = ""  # the text of ids[:_read], grown piece by piece
        self._context = 0  # ids[_context:_read] are decoded again as context for the next piece
        self._read = 0
        self._stop_at = -1  # where the first stop string starts in _streamed, once it appears

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = self.clock()
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        self._settle()
        self._show(self._visible(self._streamed, final=False, stop_at=self._stop_at))

    def end(self) -> None:
        self._show(self.visible_text(final=True))

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def visible_text(self, *, final: bool) -> str:
        """The reply as shown: cut at a stop string; held back at a partial character or stop
        string unless `final`. Decodes every id: for the end, not for each token."""
        return self._visible(self.text(), final=final)

    def stopped_by_string(self) -> bool:
        return any(s in self.text() for s in self.stop_strings)

    def _settle(self) -> None:
        """Append the text of the ids since `_read`, unless it ends inside a character."""
        decode = self.tokenizer.decode
        before = decode(self.ids[self._context : self._read], skip_special_tokens=True)
        after = decode(self.ids[self._context :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return
        grown = len(self._streamed)
        self._streamed += after[len(before) :]
        self._context, self._read = self._read, len(self.ids)
        if self.stop_strings and self._stop_at < 0:
            # Only the new piece, and the stop string's length before it, can hold a new match.
            start = max(0, grown - max(map(len, self.stop_strings)))
            found = [i for i in (self._streamed.find(s, start) for s in self.stop_strings) if i >= 0]
            self._stop_at = min(found, default=-1)

    def _visible(self, text: str, *, final: bool, stop_at: int | None = None) -> str:
        """`text` as shown; `stop_at` is where its first stop string starts (-1: none), when known."""
        if stop_at is None:
            stop_at = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
        if stop_at >= 0:
            text = text[:stop_at]
        if self.stop_strings:
            # The plain template's reply follows "Assistant:", so it starts with a space.
            text = text.lstrip()
        if stop_at >= 0:
            return text
        if final:
            return text
        text = text.rstrip("\ufffd")
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    return text[:-size]
        return text

    def _show(self, text: str) -> None:
        if self.on_text is None or text == self._shown:
            return
        self._shown = text
        self.on_text(text)


def cache_keyword() -> str:
    """The name of `generate`'s cache argument in the installed transformers.

    transformers renamed `past_key_values` to `cache` during 5.x (the old name still works, with a
    deprecation warning); the module lists the current name first.
    """
    from transformers.generation import utils

    names = getattr(utils, "ALL_CACHE_NAMES", None)
    return "cache" if names and names[0] == "cache" else "past_key_values"


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return {i for i in ids if isinstance(i, int)}


def _reusable_prefix(cached_ids: Sequence[int], prompt_ids: Sequence[int]) -> int:
    common = 0
    for cached, new in zip(cached_ids, prompt_ids, strict=False):
        if cached != new:
            break
        common += 1
    # generate needs at least one prompt token to run through the model.
    return min(common, len(prompt_ids) - 1)


def _layer_lengths(cache: Any) -> list[int]:
    layers = getattr(cache, "layers", None) or []
    return [int(layer.get_seq_length()) for layer in layers] or [int(cache.get_seq_length())]


def _crop(cache: Any, length: int) -> bool:
    """Crop every layer of `cache` to at most `length` tokens; False when a layer cannot go back.

    Layer by layer, because an interrupt can land between two layers of a decoding step and leave
    some one token longer than the others.
    """
    layers = getattr(cache, "layers", None)
    try:
        if not layers:
            if cache.get_seq_length() > length:
                cache.crop(length - cache.get_seq_length())
            return True
        for layer in layers:
            current = int(layer.get_seq_length())
            if current > length:
                # transformers 5 crops by a negative count (tokens to remove from the end).
                layer.crop(length - current)
    except (RuntimeError, ValueError):
        # Sliding-window layers past their window cannot go back.
        return False
    return True


def _reuse(cache: Any, cached_ids: list[int], prompt_ids: list[int]) -> tuple[Any, int]:
    """The cache cropped to what it shares with `prompt_ids` and its length, or (None, 0)."""
    if cache is None:
        return None, 0
    keep = _reusable_prefix(cached_ids, prompt_ids)
    if keep <= 0 or not _crop(cache, keep):
        return None, 0
    return cache, keep


@dataclass
class Generation:
    """What `generate` returns: the reply, and the cache to pass to the next call with the ids it covers."""

    reply: Reply
    cache: Any = None
    cached_ids: list[int] = field(default_factory=list)


def _prepared_cache(
    model: Any, cache: Any, cached_ids: Sequence[int], prompt_ids: list[int], keep_cache: bool, growing: bool
) -> tuple[Any, int]:
    """The cache this call runs with (None: generate makes its own) and how many prompt tokens it reuses."""
    reused = 0
    if keep_cache:
        cache, reused = _reuse(cache, list(cached_ids), prompt_ids)
    else:
        cache = None
    if cache is None and (keep_cache or growing):
        cache = decoding.new_cache(model, growing=growing)
    return cache, reused


def _call_kwargs(
    model: Any, tokenizer: Any, options: GenerationOptions, cache: Any, stop_strings: Sequence[str]
) -> dict[str, Any]:
    """Everything `model.generate` is called with besides the prompt and the streamer."""
    kwargs = generate_kwargs(options)
    if cache is not None:
        kwargs[cache_keyword()] = cache
    if stop_strings:
        kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
    if (
        getattr(model.generation_config, "pad_token_id", None) is None
        and getattr(tokenizer, "eos_token_id", None) is not None
    ):
        # Without it transformers logs a warning on every call; with batch size 1 it changes nothing.
        kwargs["pad_token_id"] = tokenizer.eos_token_id
    if options.keep_scores:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    return kwargs


def _run(
    model: Any, prompt_ids: list[int], streamer: Streamer, kwargs: dict[str, Any], fast_attention: bool
) -> tuple[Any, bool]:
    """`model.generate`'s output (None when interrupted) and whether a KeyboardInterrupt stopped it."""
    import torch

    device = getattr(model, "device", "cpu")
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    try:
        # inference_mode, not generate's own no_grad: no autograd bookkeeping on any tensor.
        with torch.inference_mode(), decoding.fast_attention(model) if fast_attention else nullcontext():
            output = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **kwargs
            )
    except KeyboardInterrupt:
        return None, True
    except torch.OutOfMemoryError as exc:
        raise GenerationFailed(
            "Out of memory while generating; nothing was added to the conversation. "
            "Lower --max-new-tokens, start afresh with --new, or load the model with --quant 4bit."
        ) from exc
    return output, False


def _finish_reason(
    model: Any,
    tokenizer: Any,
    streamer: Streamer,
    options: GenerationOptions,
    interrupted: bool,
    eos_reason: FinishReason,
) -> FinishReason:
    new_ids = streamer.ids
    if interrupted:
        return FinishReason.INTERRUPTED
    if (new_ids and new_ids[-1] in _eos_ids(model, tokenizer)) or streamer.stopped_by_string():
        return eos_reason
    if len(new_ids) >= options.max_new_tokens:
        return FinishReason.LENGTH
    return eos_reason


def _kept(reply: Reply, cache: Any, ids: list[int], interrupted: bool) -> Generation:
    """The generation with its cache for the next call; after an interrupt only the positions every
    layer holds are usable (see `_crop`), and a cache that cannot go back is dropped."""
    covered = min(_layer_lengths(cache))
    if interrupted and not _crop(cache, covered):
        return Generation(reply)
    return Generation(reply, cache, ids[:covered])


def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    options: GenerationOptions,
    *,
    on_text: TextCallback | None = None,
    cache: Any = None,
    cached_ids: Sequence[int] = (),
    keep_cache: bool = False,
    stop_strings: Sequence[str] = (),
    eos_reason: FinishReason = FinishReason.END_OF_TURN,
    clock: Callable[[], float] = time.perf_counter,
    cpu_decoding: DecodingMode = DecodingMode.EXACT,
) -> Generation:
    """Generate from `prompt_ids` in this thread, streaming the text to `on_text`.

    With `keep_cache`, the returned generation holds a cache for the next call (the given one,
    cropped to what `prompt_ids` shares with `cached_ids`, or a fresh one). A KeyboardInterrupt
    ends generation with the partial reply (finish reason INTERRUPTED); the cache is kept up to
    what every layer had computed. Running out of memory becomes `GenerationFailed`; anything else
    keeps its traceback. `cpu_decoding` is one of `decoding.MODES`: how a model on CPU keeps its
    cache and runs attention.
    """
    import torch

    options.validate()
    streamer = Streamer(tokenizer, on_text, stop_strings, clock)
    growing, fast_attention = decoding.plan(model, cpu_decoding)
    cache, reused = _prepared_cache(model, cache, cached_ids, prompt_ids, keep_cache, growing)
    kwargs = _call_kwargs(model, tokenizer, options, cache, stop_strings)
    if options.seed is not None:
        torch.manual_seed(options.seed)

    stats = Stats(prompt_tokens=len(prompt_ids), reused_tokens=reused)
    started = clock()
    try:
        output, interrupted = _run(model, prompt_ids, streamer, kwargs, fast_attention)
    finally:
        stats.seconds = clock() - started
    new_ids = streamer.ids
    stats.new_tokens = len(new_ids)
    if streamer.first_token_at is not None:
        stats.time_to_first_token = streamer.first_token_at - started
    text = streamer.visible_text(final=True)
    reason = _finish_reason(model, tokenizer, streamer, options, interrupted, eos_reason)
    reply = Reply(
        text=text.strip() if stop_strings else text, finish_reason=reason, stats=stats, token_ids=new_ids
    )
    logits = getattr(output, "logits", None) if options.keep_scores else None
    if logits is not None:
        reply.scores = scores_from_logits(
            logits, new_ids, options.keep_scores, options.temperature, prompt_ids
        )
    if not keep_cache:
        return Generation(reply)
    return _kept(reply, cache, list(prompt_ids) + new_ids, interrupted)


__all__ = ["Generation", "cache_keyword", "generate", "generate_kwargs"]
