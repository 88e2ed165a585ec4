"""llm_magics: run open LLMs inside a notebook.

`%load_ext llm_magics` registers `%llm_load`, `%llm_list`, `%llm_use`, `%llm_unload`,
`%%llm_chat`, `%%llm_complete`, `%llm_history`, `%llm_reset`, `%tokens`, `%llm_next`,
`%llm_attention`, `%llm_info` and `%llm_pipe`. Loading the
extension imports nothing heavy: torch and transformers arrive with the first `%llm_load`.
"""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from . import next_token
from .conversation import check_text
from .engines.base import Chats, Engine, HoldsModel, Tokenizes, require
from .engines.transformers.hardware import Hardware, choose_compute_dtype, detect_hardware
from .engines.transformers.loading import load_model
from .engines.transformers.memory import estimate_memory
from .engines.transformers.plan import plan_load
from .engines.transformers.source import resolve_source
from .errors import InvalidOption, NotLoaded
from .inside import alternatives as inside_alternatives
from .inside import architecture as inside_architecture
from .tokens import tokenize_text
from .values import Reply

if TYPE_CHECKING:
    from .magics import LlmMagics


def load_ipython_extension(ipython: Any) -> None:
    from .magics import LlmMagics

    previous = _session_magics(ipython)
    if previous is not None:
        _close(ipython, previous)
    ipython.register_magics(LlmMagics(shell=ipython))


def unload_ipython_extension(ipython: Any) -> None:
    magics = _session_magics(ipython)
    if magics is not None:
        _close(ipython, magics)


def _close(ipython: Any, magics: LlmMagics) -> None:
    magics.close()
    manager = ipython.magics_manager
    manager.registry.pop("LlmMagics", None)
    # IPython has no API to unregister magics: drop the bound methods of this instance, so that
    # %llm_list after %unload_ext is "not found" rather than a call into a closed session.
    for table in manager.magics.values():
        for name in [name for name, method in table.items() if getattr(method, "__self__", None) is magics]:
            del table[name]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def _session_magics(ipython: Any) -> LlmMagics | None:
    return ipython.magics_manager.registry.get("LlmMagics")


def _current_magics() -> LlmMagics:
    from IPython import get_ipython  # the Python API imports without a shell

    shell = get_ipython()
    magics = _session_magics(shell) if shell is not None else None
    if magics is None:
        raise NotLoaded("The extension is not loaded: run %load_ext llm_magics, then %llm_load.")
    return magics


def _current_engine(name: str | None) -> Engine:
    return _current_magics().registry.get(name)


def get_model(name: str | None = None) -> tuple[Any, Any]:
    """The (model, tokenizer) of a loaded in-process model, the active one by default, for your own code.

    A tokenizer-only load gives `(None, tokenizer)`.
    """
    engine = _current_engine(name)
    if isinstance(engine, HoldsModel):
        return engine.model, engine.tokenizer
    if isinstance(engine, Tokenizes):
        return None, engine.tokenizer
    raise NotLoaded(
        f"{engine.name!r} runs on the {engine.describe().kind.value} engine: there is no model object here."
    )


def get_entry(name: str | None = None) -> Engine:
    """The loaded engine: `.describe()` is what the card shows; in-process ones have `.model`, `.tokenizer`."""
    return _current_engine(name)


def next_token_distribution(text: str, name: str | None = None, **options: Any) -> Any:
    """The numbers %llm_next draws (temperature, top_k, top_p, show, chat): see `llm_magics.next_token`."""
    return next_token.next_token_distribution(_current_engine(name), text, **options)


#: The generation options `chat` takes, as `%%llm_chat`'s flags (underscores for dashes).
CHAT_OPTIONS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")


def chat(
    message: str, name: str | None = None, *, system: str | None = None, new: bool = False, **options: Any
) -> Reply:
    """Send MESSAGE to a loaded model and return its `Reply` (`.text`, `.stats`, `.finish_reason`):
    a `%%llm_chat` cell without the view. The model's conversation goes on (`%llm_history` shows
    the turn); `new` starts a fresh one, `system` sets its system message; the options
    (`CHAT_OPTIONS`) default to the session's settings, as the flags do."""
    from .magics.chat import interrupted
    from .magics.settings import configure_engine, generation_options

    unknown = sorted(set(options) - set(CHAT_OPTIONS))
    if unknown:
        raise InvalidOption(f"chat() has no option {', '.join(unknown)}; it takes {', '.join(CHAT_OPTIONS)}.")
    magics = _current_magics()
    engine = require(magics.registry.get(name), Chats, "llm_magics.chat")
    if not isinstance(message, str) or not message.strip():
        raise InvalidOption("chat() needs a message: a non-empty str.")
    check_text(message.strip(), "The message")
    if system:
        check_text(system, "system")
    configure_engine(magics, engine)
    chosen = generation_options(magics, Namespace(**{flag: options.get(flag) for flag in CHAT_OPTIONS}))
    session, prepared = magics.prepare_turn(engine, message.strip(), chosen, system=system, new=new)
    reply = session.respond(prepared, chosen)
    if new:
        engine.adopt(session)
    if reply.interrupted:
        raise interrupted(reply)
    return reply


def estimate(model: str | None = None, **plan_options: Any) -> Any:
    """What `%llm_load MODEL --estimate` shows, as a `MemoryEstimate` (`.per_mode`: bytes per mode).

    `plan_options` are `plan_load`'s: quantization ("none", "4bit", "8bit"), dtype, revision,
    trust_remote_code. Only the config is read: no weights.
    """
    return estimate_memory(plan_load(resolve_source(model), **plan_options))


def load(model: str | None = None, *, check_memory: bool = True, **plan_options: Any) -> Engine:
    """Load MODEL (alias, .gguf, folder or hub id) into an engine of its own, outside the session's
    models (`%llm_load` registers; this does not): call `.close()` on it to free its memory.

    `plan_options` are `plan_load`'s: quantization ("none", "4bit", "8bit"), dtype, device_map,
    revision, trust_remote_code, name.
    """
    return load_model(plan_load(resolve_source(model), **plan_options), check_memory=check_memory)


def compute_dtype(
    device: str | None = None, cuda_capability: tuple[int, int] | None = None
) -> tuple[str, str]:
    """The dtype llm_magics computes in, and why: on this machine by default, or on the device
    described (`compute_dtype("cuda", (7, 5))` is Colab's T4)."""
    hardware = detect_hardware() if device is None else Hardware(device, cuda_capability=cuda_capability)
    return choose_compute_dtype(hardware)


def attention(text: str, name: str | None = None, *, max_tokens: int = 128, chat: bool = False) -> Any:
    """The attention weights %llm_attention draws: `.tokens`, `.weights[layer, head, query, key]`."""
    from .inside.attention import attention as weights

    return weights(_current_engine(name), text, max_tokens=max_tokens, chat=chat)


def logit_lens(text: str, name: str | None = None, *, show: int = 5, chat: bool = False) -> Any:
    """What each layer would predict after `text` (%llm_next --lens): see `llm_magics.inside.lens`."""
    from .inside.lens import logit_lens as lens

    return lens(_current_engine(name), text, show=show, chat=chat)


def architecture(name: str | None = None) -> Any:
    """The module tree and config shape %llm_info shows: see `llm_magics.inside.architecture`."""
    return inside_architecture.architecture(_current_engine(name))


def reply_alternatives(
    name: str | None = None, show: int = 5, expand: int = 3, branch_tokens: int = 8
) -> Any:
    """The last reply's alternatives (asked with `%%llm_chat --alternatives`): an
    `llm_magics.inside.alternatives.ReplyAlternatives` (`.positions`, `.probabilities` as an array)."""
    engine = _current_engine(name)
    return inside_alternatives.reply_alternatives(
        engine, inside_alternatives.last_scores(engine), show=show, expand=expand, branch_tokens=branch_tokens
    )


def tokenize(text: str, name: str | None = None) -> list[Any]:
    """Token spans (id, token string, start, end, is_special) of `text` under a loaded tokenizer."""
    engine = _current_engine(name)
    if not isinstance(engine, Tokenizes):
        raise NotLoaded(f"{engine.name!r} has no tokenizer here.")
    return tokenize_text(engine.tokenizer, text)


__all__ = [
    "CHAT_OPTIONS",
    "__version__",
    "architecture",
    "attention",
    "chat",
    "compute_dtype",
    "estimate",
    "get_entry",
    "get_model",
    "load",
    "load_ipython_extension",
    "logit_lens",
    "next_token_distribution",
    "reply_alternatives",
    "tokenize",
    "unload_ipython_extension",
]
