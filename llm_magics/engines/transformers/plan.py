"""The load plan: dtype, quantization and device map, decided for this machine before any weight is read."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ...errors import InvalidOption
from .hardware import Hardware, choose_compute_dtype, detect_hardware
from .source import ModelSource
from .versions import require_transformers


class Quantization(enum.Enum):
    """`--quant`: how bitsandbytes stores the linear layers' weights."""

    NONE = "none"
    FOUR_BIT = "4bit"  # nf4 with double quantization
    EIGHT_BIT = "8bit"  # LLM.int8

    def __str__(self) -> str:
        return self.value


QUANT_MODES = tuple(mode.value for mode in Quantization)


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LoadPlan:
    """Everything `load_model` passes to transformers, decided before any weight is read."""

    source: ModelSource
    name: str
    quantization: Quantization
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
    quantization: str | Quantization = Quantization.NONE,
    dtype: str = "auto",
    device_map: str | None = None,
    name: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    tokenizer_only: bool = False,
    hardware: Hardware | None = None,
) -> LoadPlan:
    if str(quantization) not in QUANT_MODES:
        raise InvalidOption(f"Unknown --quant {quantization!r}: choose one of {', '.join(QUANT_MODES)}.")
    if dtype not in DTYPES:
        raise InvalidOption(f"Unknown --dtype {dtype!r}: choose one of {', '.join(DTYPES)}.")
    if device_map is not None and not device_map.strip():
        raise InvalidOption(
            "--device-map needs a value, e.g. auto, cpu or cuda:0 (leave it out for the default)."
        )
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
        quantization=Quantization(str(quantization)),
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
    if plan.quantization is Quantization.NONE:
        return None
    return f"compute dtype {plan.dtype}: {plan.dtype_reason}"


def plan_mode(plan: LoadPlan) -> str:
    """The estimate column a plan falls in."""
    if plan.quantization is not Quantization.NONE:
        return plan.quantization.value
    return "float32" if plan.dtype == "float32" else "16-bit"


TRUST_REMOTE_CODE_NOTICE = (
    "--trust-remote-code runs Python code from the model's repository on this machine, "
    "with your permissions. Use it only for repositories you trust."
)
