"""Connecting: the server and MODEL checked, the server's kind told, its context length and
tokenizer found, and the engine class chosen by what the server offers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import ModelNotFound
from ...prompts import context_length_of
from .client import Server
from .dialects import dialect_for
from .endpoint import DEFAULT_TIMEOUTS, Timeouts, parse_endpoint, read_api_key, transport_warning
from .engine import RemoteEngine, TokenizingRemoteEngine
from .scoring import ScoringRemoteEngine
from .served import choose_model, read_models
from .tokenizer import server_tokenizer


def connect(
    endpoint: str,
    model: str | None = None,
    *,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    name: str | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    environ: Mapping[str, str] = os.environ,
    clock: Callable[[], float] = time.perf_counter,
) -> RemoteEngine:
    """Check the server and MODEL, and return an engine for it (nothing is registered here).

    Raises the remote errors of `llm_magics.errors` in one line each; `InvalidOption` for a bad
    URL or an unset `--api-key-env` variable; `ModelNotFound` for a `--tokenizer` that cannot be read.
    """
    where = parse_endpoint(endpoint)
    key, key_variable = read_api_key(api_key_env, environ)
    server = Server(where, key, key_variable, timeouts)
    try:
        started = clock()
        served = read_models(server.get_json("/v1/models"), where.api)
        round_trip = clock() - started
        chosen = choose_model(served, model, where.api)
        dialect = dialect_for(served.kind)
        context = served.context.get(chosen) or dialect.context_length(server)
        view: Any = None
        source = None
        if tokenizer is not None:
            view, source = _local_tokenizer(tokenizer), f"local tokenizer {tokenizer}"
            # A server that does not say its context (transformers serve): the tokenizer may know.
            context = context or context_length_of(None, view)
        else:
            view = server_tokenizer(server, chosen, dialect, context)
            source = None if view is None else f"the server's /tokenize ({served.kind.value})"
        if view is None:
            engine_class: type[RemoteEngine] = RemoteEngine
        elif dialect.scores:
            engine_class = ScoringRemoteEngine
        else:
            engine_class = TokenizingRemoteEngine
        engine = engine_class(
            name=name or _default_name(chosen),
            model=chosen,
            server=server,
            dialect=dialect,
            served=served,
            round_trip=round_trip,
            context_length=context,
            tokenizer=view,
            tokenizer_source=source,
            clock=clock,
        )
    except BaseException:
        server.close()
        raise
    warning = transport_warning(where, key is not None)
    if warning:
        engine.warnings.append(warning)
    return engine


def _default_name(model: str) -> str:
    """The registry name: the last part of the served id ("Qwen/Qwen2.5-0.5B" → "Qwen2.5-0.5B")."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def _local_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer  # heavy: only with --tokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"--tokenizer {source}: no tokenizer there (a local folder, or a hub id in the local cache)."
        ) from exc


__all__ = ["connect"]
