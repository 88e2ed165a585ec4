"""The machine a model loads on, and the dtype it computes in there (the card says why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


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
