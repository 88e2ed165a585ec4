"""The in-process transformers engine: a model and its tokenizer in this kernel's memory.

`TokenizerEngine` is a tokenizer alone (`%llm_load --tokenizer-only`): enough for `%tokens`.
`TransformersEngine` adds the weights: it chats, completes, scores tokens and predicts the next
one. Its conversation is a `TransformersChatSession`, which keeps the key/value cache of the last
turn so that the next turn only computes what is new.

Importing this module imports neither torch nor transformers; `loading.load_model` (in this package) builds these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ... import prompts
from ...conversation import Conversation
from ...errors import InvalidOption
from ...prompts import context_length_of
from ...values import (
    DecodingMode,
    EngineInfo,
    EngineSettings,
    FinishReason,
    GenerationOptions,
    PreparedTurn,
    Reply,
    TextCallback,
    TokenScores,
)
from .generation import generate
from .scoring import token_probabilities


class TokenizerEngine:
    """A tokenizer without weights: `Engine` and `Tokenizes`, nothing that generates."""

    def __init__(self, info: EngineInfo, tokenizer: Any) -> None:
        self.name = info.name
        self.info = info
        self._tokenizer = tokenizer
        #: The `plan.LoadPlan` it was loaded with, where `load_model` built it (`--code` shows it).
        self.plan: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} from {self.info.source}>"

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def describe(self) -> EngineInfo:
        return self.info

    def context_window(self) -> int | None:
        return self.info.context_length

    def close(self) -> int:
        self._tokenizer = None
        return self.info.footprint_bytes


class TransformersEngine(TokenizerEngine):
    """A transformers causal LM in this process: chats, completes, scores and predicts tokens.

    `cpu_decoding` and `reuse_cache` are set by the magics from their traits before each call;
    `clock` is where timings are read (tests swap in a fake one).
    """

    def __init__(self, info: EngineInfo, tokenizer: Any, model: Any) -> None:
        super().__init__(info, tokenizer)
        self._model = model
        self.cpu_decoding = DecodingMode.EXACT
        self.reuse_cache = True
        self.clock: Callable[[], float] = time.perf_counter
        self._session: TransformersChatSession | None = None

    @property
    def model(self) -> Any:
        return self._model

    # -- Chats ---------------------------------------------------------------------------------

    @property
    def session(self) -> TransformersChatSession:
        if self._session is None:
            self._session = TransformersChatSession(self)
        return self._session

    def new_session(self) -> TransformersChatSession:
        return TransformersChatSession(self)

    def adopt(self, session: Any) -> None:
        assert isinstance(session, TransformersChatSession) and session.engine is self
        if self._session is not None and self._session is not session:
            self._session.drop_cache()
        self._session = session

    # -- Completes -----------------------------------------------------------------------------

    def complete(
        self, prompt: str, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Continue `prompt` as raw text (no chat template), as a base model is meant to be used."""
        prompt_ids = list(self.tokenizer(prompt)["input_ids"])
        limit = self.context_window()
        if limit is not None and len(prompt_ids) + options.max_new_tokens > limit:
            raise InvalidOption(
                f"The prompt is {len(prompt_ids)} tokens; with --max-new-tokens {options.max_new_tokens} it "
                f"exceeds the {limit}-token context: shorten it or lower --max-new-tokens."
            )
        return generate(
            self.model,
            self.tokenizer,
            prompt_ids,
            options,
            on_text=on_text,
            eos_reason=FinishReason.END_OF_TEXT,
            clock=self.clock,
            cpu_decoding=self.cpu_decoding,
        ).reply

    # -- TakesSettings ---------------------------------------------------------------------------

    def configure(self, settings: EngineSettings) -> None:
        self.cpu_decoding = settings.cpu_decoding
        self.reuse_cache = settings.reuse_cache
        self.clock = settings.clock

    # -- ScoresTokens, PredictsNext -------------------------------------------------------------

    def token_probabilities(self, ids: Sequence[int], *, top_k: int = 5) -> Any:
        return token_probabilities(self.model, self.tokenizer, ids, top_k=top_k)

    def next_token_logits(self, ids: Sequence[int]) -> Any:
        """The logits for the token after `ids`, as float32 on the CPU: one forward pass, nothing kept."""
        import torch

        device = getattr(self.model, "device", None) or next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([list(ids)], device=device)).logits
        return logits[0, -1].float().cpu()

    # -- Engine --------------------------------------------------------------------------------

    def context_window(self) -> int | None:
        return self.info.context_length or context_length_of(
            getattr(self.model, "config", None), self.tokenizer
        )

    def close(self) -> int:
        if self._session is not None:
            self._session.drop_cache()
        self._session = None
        self._model = None
        return super().close()


class TransformersChatSession:
    """One conversation with a `TransformersEngine`, and the key/value cache of its last turn.

    `cache` covers the token ids in `cached_ids`; the next turn reuses it up to the prefix its
    prompt shares with them (see `generation`).
    """

    def __init__(self, engine: TransformersEngine, conversation: Conversation | None = None) -> None:
        self.engine = engine
        self.conversation = conversation or Conversation()
        self.cache: Any = None
        self.cached_ids: list[int] = []
        #: The last reply's scores (`KeepsScores`), kept only in memory.
        self.last_scores: TokenScores | None = None

    def __repr__(self) -> str:
        return f"<TransformersChatSession {self.engine.name!r}: {len(self.conversation.messages)} messages>"

    def drop_cache(self) -> None:
        self.cache = None
        self.cached_ids = []

    def replace(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.last_scores = None
        self.drop_cache()

    def prepare(self, message: str, *, max_new_tokens: int, system: str | None = None) -> PreparedTurn:
        return prompts.prepare_turn(
            self.engine.tokenizer,
            self.conversation,
            message,
            max_new_tokens=max_new_tokens,
            context_length=self.engine.context_window(),
            system=system,
        )

    def respond(
        self, prepared: PreparedTurn, options: GenerationOptions, *, on_text: TextCallback | None = None
    ) -> Reply:
        """Generate the reply to `prepared` and commit the turn.

        An interrupted reply is kept, marked by its finish reason, unless no token had arrived yet
        (then nothing changes). When generation raises, the conversation is untouched and the cache
        dropped, since it may be half-updated.
        """
        engine = self.engine
        reuse = engine.reuse_cache
        try:
            generation = generate(
                engine.model,
                engine.tokenizer,
                prepared.prompt_ids,
                options,
                on_text=on_text,
                cache=self.cache if reuse else None,
                cached_ids=self.cached_ids,
                keep_cache=reuse,
                stop_strings=(prompts.PLAIN_STOP,) if prepared.plain_template else (),
                clock=engine.clock,
                cpu_decoding=engine.cpu_decoding,
            )
        except BaseException:
            self.drop_cache()
            raise
        reply = generation.reply
        self.cache, self.cached_ids = generation.cache, generation.cached_ids
        if reply.interrupted and not reply.token_ids:
            return reply
        self.conversation.messages = [*prepared.messages, {"role": "assistant", "content": reply.text}]
        self.last_scores = reply.scores
        return reply


__all__ = ["TokenizerEngine", "TransformersChatSession", "TransformersEngine"]
