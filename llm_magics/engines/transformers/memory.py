"""The memory estimate, from the config on the meta device, and the check that refuses what won't fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psutil

from ...errors import InsufficientMemory, ModelLoadFailed
from .config import load_config
from .failures import reason_of
from .hardware import Hardware, choose_compute_dtype
from .plan import LoadPlan, Quantization, plan_mode

GB = 1e9


# A load is refused when the estimate exceeds this share of free memory: the process needs
# headroom for activations, the key/value cache and the load itself.
MEMORY_HEADROOM = 0.9


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

    return int(psutil.virtual_memory().available), "available system RAM"


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
            f"{plan.source.label} is not {_head_name(head)} transformers knows: {reason_of(error)}"
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
    rest_dtype = (
        plan.dtype if plan.quantization is not Quantization.NONE else choose_compute_dtype(plan.hardware)[0]
    )
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
