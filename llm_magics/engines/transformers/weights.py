"""Pickle weights (`pytorch_model.bin`): told apart from safetensors, and a cut-off archive caught."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ...errors import ModelLoadFailed

PICKLE_WEIGHTS_NOTE = (
    "the weights are pickles (pytorch_model.bin): torch read them with weights_only, which refuses "
    "code, but a pickle can carry code and a safetensors file cannot; prefer safetensors "
    "(model.save_pretrained writes them)."
)


_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_pickle_archive(location: str | Path, access: dict[str, Any]) -> None:
    """A `pytorch_model.bin` that torch would read (no safetensors beside it) but that is a broken
    zip archive, a download cut short, is one line; torch itself raises a bare RuntimeError there.

    torch has written pickle weights as zip archives since 1.6; a file in the legacy format (not a
    zip at all) is left to torch.
    """

    if not isinstance(location, Path) or not weights_are_pickles(location, access):
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


def weights_are_pickles(location: str | Path, access: dict[str, Any]) -> bool:
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
