"""The cache of converted GGUFs: a GGUF is dequantized once into a folder that loads in a second."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from . import versions
from .progress import Progress, bars_to, no_progress

#: Bumped when what `convert_gguf` writes changes, so old cache folders are not reused.
CONVERSION_FORMAT = 1


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
        f":transformers={versions.installed_transformers()}:format={CONVERSION_FORMAT}"
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


def convert_gguf(gguf: Path, progress: Progress = no_progress) -> Path:
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
        with bars_to(progress, "converting"):
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
