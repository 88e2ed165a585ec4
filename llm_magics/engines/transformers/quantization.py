"""bitsandbytes: whether it can run here, the config `--quant` asks for, and its chatter kept out of cells."""

from __future__ import annotations

import logging
from typing import Any

from packaging.version import Version

from ...errors import QuantizationUnavailable
from .failures import reason_of
from .plan import LoadPlan, Quantization


def require_bitsandbytes(plan: LoadPlan) -> None:
    try:
        import bitsandbytes
    except ImportError:
        raise QuantizationUnavailable(
            f"--quant {plan.quantization} needs bitsandbytes: run %pip install bitsandbytes, then load again."
        ) from None
    except Exception as error:  # a broken install raises all sorts of things on import
        raise QuantizationUnavailable(f"bitsandbytes failed to import: {reason_of(error)}") from None

    if plan.hardware.device == "cpu" and Version(bitsandbytes.__version__) < Version("0.48"):
        raise QuantizationUnavailable(
            f"bitsandbytes {bitsandbytes.__version__} has no CPU backend: upgrade to 0.48 or newer "
            f"(%pip install -U bitsandbytes) or use a GPU runtime."
        )
    if plan.hardware.device == "mps":
        raise QuantizationUnavailable(
            "bitsandbytes cannot quantize on Apple GPUs: use --device-map cpu, or load without --quant."
        )


#: The keyword whose value is a torch dtype, given by name in `bitsandbytes_settings`.
COMPUTE_DTYPE_KEY = "bnb_4bit_compute_dtype"


def bitsandbytes_settings(plan: LoadPlan) -> dict[str, Any] | None:
    """The tutorial's BitsAndBytesConfig keywords: nf4 with double quantization, or LLM.int8; the
    compute dtype by name. The load builds the config from them and `--code` prints them."""
    if plan.quantization is Quantization.NONE:
        return None
    if plan.quantization is Quantization.EIGHT_BIT:
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        COMPUTE_DTYPE_KEY: plan.dtype,
    }


def quantization_config(plan: LoadPlan) -> Any:
    """The BitsAndBytesConfig `bitsandbytes_settings` describes, or None."""
    settings = bitsandbytes_settings(plan)
    if settings is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if COMPUTE_DTYPE_KEY in settings:
        settings[COMPUTE_DTYPE_KEY] = getattr(torch, settings[COMPUTE_DTYPE_KEY])
    return BitsAndBytesConfig(**settings)


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


def cpu_4bit_misfit(model: Any, plan: LoadPlan) -> str | None:
    """Why bitsandbytes' CPU 4-bit kernel cannot run this model, or None.

    On CPUs with AVX512-BF16, bitsandbytes repacks each 4-bit layer's scales in blocks of
    `blocksize` input features at its first forward pass; a layer whose input size is not a
    multiple of it fails there with a bare RuntimeError from a reshape (tiny models: 32 features,
    blocks of 64). Found here, at load, it is one line instead.
    """
    if plan.quantization is not Quantization.FOUR_BIT or plan.hardware.device != "cpu":
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


def describe_quantization(plan: LoadPlan) -> str:
    if plan.quantization is Quantization.FOUR_BIT:
        return "4bit nf4 + double quant"
    if plan.quantization is Quantization.EIGHT_BIT:
        return "8bit LLM.int8"
    return "none"
