"""The settings several groups of magics read, and the steps that read them.

Traits live on the one registered class (`%config LlmMagics.max_new_tokens = 512`); those two or
more groups need (generation defaults for `%%llm_chat` and `%llm_pipe`, loading defaults for
`%llm_load` and `%llm_pipe`, how an engine runs) are declared here, once. The groups share the
steps below as functions over these settings, not by calling each other's methods.
"""

from __future__ import annotations

import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from traitlets import Bool, Enum, Float, Int, Unicode

from ..engines.base import Engine, TakesSettings
from ..engines.transformers import decoding
from ..engines.transformers.plan import DTYPES, QUANT_MODES, LoadPlan, plan_load
from ..values import DecodingMode, EngineSettings, GenerationOptions
from ._base import SessionMagics


class SharedSettings(SessionMagics):
    """Traits read by more than one group of magics."""

    # -- generation: %%llm_chat, %%llm_complete, %llm_pipe's generating tasks ---------------------
    max_new_tokens = Int(256, help="Most tokens a reply may have (--max-new-tokens).").tag(config=True)
    temperature = Float(
        0.0,
        help="Sampling temperature (--temperature); 0 decodes greedily, so a cell gives the same reply every run.",
    ).tag(config=True)
    top_p = Float(1.0, help="Nucleus sampling mass (--top-p), used when temperature > 0.").tag(config=True)
    top_k = Int(50, help="Sample among this many most likely tokens (--top-k; 0: no limit).").tag(config=True)
    repetition_penalty = Float(1.0, help="Penalty for repeating tokens (--repetition-penalty; 1: none).").tag(
        config=True
    )
    seed = Int(
        None, allow_none=True, help="Seed for sampling (--seed); None leaves torch's generator as it is."
    ).tag(config=True)

    # -- loading: %llm_load, %llm_pipe ---------------------------------------------------------------
    default_quant = Enum(
        list(QUANT_MODES), default_value="none", help="Quantization when %llm_load gets no --quant."
    ).tag(config=True)
    default_dtype = Enum(
        list(DTYPES),
        default_value="auto",
        help="dtype when %llm_load gets no --dtype; auto picks bfloat16 or float16 for the hardware.",
    ).tag(config=True)
    default_device_map = Unicode(
        None,
        allow_none=True,
        help="device_map when %llm_load gets no --device-map (None: auto on CUDA, else cpu).",
    ).tag(config=True)
    check_memory = Bool(
        True, help="Refuse loads whose estimate exceeds free memory (override once with --force)."
    ).tag(config=True)

    # -- how an in-process engine runs, handed over by `configure_engine` ------------------------
    reuse_cache = Bool(
        True,
        help="Keep each conversation's key/value cache between turns, so only the new part of the prompt is computed.",
    ).tag(config=True)
    cpu_decoding = Enum(
        list(decoding.MODES),
        default_value=DecodingMode.EXACT.value,
        help="How models on CPU decode. 'exact': transformers' tokens, with a key/value cache that grows in "
        "place instead of being copied every token. 'fastest': also grouped-query attention without copies "
        "(decoding slows down much less late in a long conversation; in bfloat16 a greedy reply can differ from "
        "transformers' at a near tie). 'transformers': transformers' defaults.",
    ).tag(config=True)

    #: Where streaming and the footer's timings read the time; tests swap in a fake clock.
    clock: Callable[[], float] = staticmethod(time.perf_counter)


def pick(flag: Any, trait: Any) -> Any:
    """The one flag-or-trait rule: a flag left out (None) falls back to its trait."""
    return trait if flag is None else flag


def generation_options(settings: SharedSettings, args: Namespace) -> GenerationOptions:
    """The generation flags, each falling back to its trait when left out."""
    return GenerationOptions(
        max_new_tokens=pick(args.max_new_tokens, settings.max_new_tokens),
        temperature=pick(args.temperature, settings.temperature),
        top_p=pick(args.top_p, settings.top_p),
        top_k=pick(args.top_k, settings.top_k),
        repetition_penalty=pick(args.repetition_penalty, settings.repetition_penalty),
        seed=pick(args.seed, settings.seed),
    )


def plan_from_flags(
    settings: SharedSettings,
    source: Any,
    args: Namespace,
    *,
    revision: str | None,
    tokenizer_only: bool = False,
) -> LoadPlan:
    """The load plan for `source` from the loading flags, each falling back to its trait."""
    return plan_load(
        source,
        quantization=pick(args.quant, settings.default_quant),
        dtype=pick(args.dtype, settings.default_dtype),
        device_map=pick(args.device_map, settings.default_device_map),
        name=args.name,
        revision=revision,
        trust_remote_code=args.trust_remote_code,
        tokenizer_only=tokenizer_only,
    )


def configure_engine(settings: SharedSettings, engine: Engine) -> None:
    """Hand the session's settings to the engine, just before it runs (every magic that runs a
    model: chat, completion, pipelines)."""
    if isinstance(engine, TakesSettings):
        engine.configure(
            EngineSettings(DecodingMode(settings.cpu_decoding), settings.reuse_cache, settings.clock)
        )


__all__ = ["SharedSettings", "configure_engine", "generation_options", "pick", "plan_from_flags"]
