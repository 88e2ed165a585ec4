"""The load itself: tokenizer and weights into an engine, checked against the estimate first.

The steps, each in a module of its own in this package:

    source.resolve_source(text)  -> ModelSource     what MODEL names (alias, .gguf, folder, hub id)
    plan.plan_load(source, ...)  -> LoadPlan        dtype, quantization, device map, for this machine
    memory.estimate_memory(...)  -> MemoryEstimate  from the config on the meta device, no weights
    loading.load_model(plan)     -> TransformersEngine   the real load, checked against the estimate first

The in-process engines (this one, and the pipeline engine) load through here. torch, transformers,
accelerate and bitsandbytes are imported inside functions only: importing this costs nothing.
"""

from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import hub
from ...errors import QuantizationUnavailable
from ...prompts import chat_template_problem, context_length_of, has_chat_template
from ...values import EngineInfo, EngineKind
from .config import config_or_none
from .engine import TokenizerEngine, TransformersEngine
from .failures import transformers_errors
from .gguf import convert_gguf, converted_folder
from .memory import check_fits, estimate_memory
from .plan import TRUST_REMOTE_CODE_NOTICE, LoadPlan, Quantization, compute_dtype_note
from .progress import Progress, bars_to, no_progress
from .quantization import (
    cpu_4bit_misfit,
    describe_quantization,
    quantization_config,
    quiet_bitsandbytes,
    require_bitsandbytes,
)
from .source import SourceKind, alias_names
from .weights import PICKLE_WEIGHTS_NOTE, check_pickle_archive, weights_are_pickles


def _files_to_load(
    plan: LoadPlan, progress: Progress
) -> tuple[str | Path, dict[str, Any], hub.Downloaded | None]:
    """The from_pretrained location and keyword arguments for the plan's source, and what was
    downloaded to get there (a hub model: fetched here, with a status line, then read locally)."""
    source = plan.source
    if source.kind is SourceKind.GGUF:
        assert source.path is not None
        if plan.tokenizer_only and not (converted_folder(source.path) / "config.json").is_file():
            # The tokenizer alone reads straight from the file: no need to convert the weights.
            return source.path.parent, {"gguf_file": source.path.name}, None
        return convert_gguf(source.path, progress), {}, None
    if source.kind is SourceKind.FOLDER:
        assert source.path is not None
        return source.path, {}, None
    assert source.hub_id is not None
    access = hub.hub_access(source.hub_id, plan.revision, alias_names())
    if access:  # offline, or the hub out of reach: the local cache's copy
        return source.hub_id, access | {"revision": plan.revision}, None
    snapshot = hub.plan_snapshot(
        source.hub_id,
        plan.revision,
        weights=not plan.tokenizer_only,
        trust_remote_code=plan.trust_remote_code,
    )
    downloaded = hub.download(snapshot, progress)
    return downloaded.folder, {}, downloaded


@dataclass
class LoadedWeights:
    """A model and its tokenizer as `load_weights` built them, with the facts for the card."""

    model: Any
    tokenizer: Any
    info: EngineInfo


def load_model(
    plan: LoadPlan,
    *,
    check_memory: bool = True,
    progress: Progress = no_progress,
) -> TransformersEngine | TokenizerEngine:
    """Load tokenizer and (unless tokenizer-only) weights into an engine; nothing is registered here."""
    loaded = load_weights(plan, check_memory=check_memory, progress=progress)
    if loaded.model is None:
        engine: TransformersEngine | TokenizerEngine = TokenizerEngine(loaded.info, loaded.tokenizer)
    else:
        engine = TransformersEngine(loaded.info, loaded.tokenizer, loaded.model)
    engine.plan = plan
    return engine


def load_weights(
    plan: LoadPlan,
    *,
    auto_class: Any = None,
    check_memory: bool = True,
    progress: Progress = no_progress,
) -> LoadedWeights:
    """Tokenizer and (unless tokenizer-only) weights, with `auto_class`'s head (a causal LM by
    default): the load behind every in-process engine, checked against the estimate first."""
    from transformers import AutoModelForCausalLM

    head = auto_class or AutoModelForCausalLM
    started = time.perf_counter()
    notes: list[str] = [TRUST_REMOTE_CODE_NOTICE] if plan.trust_remote_code else []
    if plan.quantization is not Quantization.NONE:
        quiet_bitsandbytes()  # before the import: bitsandbytes already complains while importing
        require_bitsandbytes(plan)
    with transformers_errors(plan):
        # The estimate needs only the config: a model that cannot fit is refused before any
        # conversion, download or tokenizer read.
        if check_memory and not plan.tokenizer_only:
            progress("checking the memory estimate")
            check_fits(plan, estimate_memory(plan, head))
        location, access, downloaded = _files_to_load(plan, progress)
        tokenizer = _read_tokenizer(plan, location, access, notes, progress)
        if plan.tokenizer_only:
            info = _tokenizer_only_info(plan, tokenizer, notes, started, _download_rows(downloaded))
            return LoadedWeights(None, tokenizer, info)
        model = _read_model(plan, head, location, access, progress)
    misfit = cpu_4bit_misfit(model, plan)
    if misfit is not None:
        del model  # not kept alive by the traceback IPython holds on to
        gc.collect()
        raise QuantizationUnavailable(misfit)
    if weights_are_pickles(location, access):
        notes.append(PICKLE_WEIGHTS_NOTE)
    _pad_like_the_tokenizer(model, tokenizer)
    note = compute_dtype_note(plan)
    if note:
        notes.append(note)
    info = EngineInfo(
        name=plan.name,
        source=plan.source.label,
        kind=EngineKind.TRANSFORMERS,
        quantization=describe_quantization(plan),
        dtype=plan.dtype,
        compute_dtype=plan.dtype if plan.quantization is not Quantization.NONE else None,
        device=_describe_devices(model),
        parameters=count_parameters(model),
        footprint_bytes=int(model.get_memory_footprint()),
        load_seconds=time.perf_counter() - started,
        context_length=context_length_of(model.config, tokenizer),
        has_chat_template=has_chat_template(tokenizer),
        details=_download_rows(downloaded),
        notes=notes,
    )
    return LoadedWeights(model, tokenizer, info)


def _read_tokenizer(
    plan: LoadPlan, location: str | Path, access: dict[str, Any], notes: list[str], progress: Progress
) -> Any:
    """The tokenizer, with a pad token (its end-of-sequence one) where it has none; a chat
    template that cannot render adds its note."""
    from transformers import AutoTokenizer

    progress("reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=plan.trust_remote_code, **access)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    problem = chat_template_problem(tokenizer)
    if problem is not None:
        notes.append(problem)
    return tokenizer


def _tokenizer_only_info(
    plan: LoadPlan, tokenizer: Any, notes: list[str], started: float, details: list[tuple[str, str]]
) -> EngineInfo:
    return EngineInfo(
        name=plan.name,
        source=plan.source.label,
        kind=EngineKind.TRANSFORMERS,
        tokenizer_only=True,
        context_length=context_length_of(config_or_none(plan), tokenizer),
        has_chat_template=has_chat_template(tokenizer),
        load_seconds=time.perf_counter() - started,
        details=details,
        notes=[*notes, "tokenizer only: no weights loaded"],
    )


def _read_model(
    plan: LoadPlan, head: Any, location: str | Path, access: dict[str, Any], progress: Progress
) -> Any:
    """The weights, as the plan says, in eval mode; pickles only through torch's weights_only check."""
    import torch

    check_pickle_archive(location, access)
    with bars_to(progress), warnings.catch_warnings():
        # torch's weights_only reader warns about a pickle protocol it did not write, just
        # before it refuses the file: the refusal (UnsafeWeights) is the one line to show.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._weights_only_unpickler")
        model = head.from_pretrained(
            location,
            dtype=getattr(torch, plan.dtype),
            quantization_config=quantization_config(plan),
            device_map=plan.device_map,
            trust_remote_code=plan.trust_remote_code,
            **access,
        )
    return model.eval()


def _pad_like_the_tokenizer(model: Any, tokenizer: Any) -> None:
    """generate pads with the tokenizer's pad token where the model's config names none."""
    generation_config = getattr(model, "generation_config", None)
    if (
        generation_config is not None
        and generation_config.pad_token_id is None
        and tokenizer.pad_token_id is not None
    ):
        generation_config.pad_token_id = tokenizer.pad_token_id


def _download_rows(downloaded: hub.Downloaded | None) -> list[tuple[str, str]]:
    """The card's row on what a hub load fetched (none for local sources)."""
    if downloaded is None:
        return []
    if not downloaded.fetched_bytes:
        return [("downloaded", "nothing: every file was in the Hugging Face cache")]
    return [("downloaded", f"{hub.megabytes(downloaded.fetched_bytes)} in {downloaded.seconds:.1f} s")]


def count_parameters(model: Any) -> int:
    """Parameters as the model defines them: a packed 4-bit tensor counts its unpacked size."""
    total = 0
    for parameter in model.parameters():
        state = getattr(parameter, "quant_state", None)
        if state is not None and getattr(state, "shape", None) is not None:
            count = 1
            for size in state.shape:
                count *= int(size)
            total += count
        else:
            total += parameter.numel()
    return total


def _describe_devices(model: Any) -> str:
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        places = sorted({str(place) for place in device_map.values()})
    else:
        places = sorted({str(p.device) for p in model.parameters()})
    return ", ".join("cuda:" + p if p.isdigit() else p for p in places)
