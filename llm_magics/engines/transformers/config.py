"""Reading a model's config.json, wherever MODEL points (the estimate and the card need it, no weights)."""

from __future__ import annotations

import struct
from typing import Any

from ... import hub
from ...errors import HubUnreachable, ModelLoadFailed, ModelNotFound
from .failures import reason_of
from .gguf import converted_folder
from .plan import LoadPlan
from .source import ModelSource, SourceKind, alias_names


def load_config(source: ModelSource, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    try:
        if source.kind is SourceKind.GGUF:
            assert source.path is not None
            converted = converted_folder(source.path)
            if (converted / "config.json").is_file():
                return AutoConfig.from_pretrained(converted)
            return AutoConfig.from_pretrained(source.path.parent, gguf_file=source.path.name)
        if source.kind is SourceKind.FOLDER:
            assert source.path is not None
            return AutoConfig.from_pretrained(source.path, trust_remote_code=trust_remote_code)
        assert source.hub_id is not None
        access = hub.hub_access(source.hub_id, revision, alias_names())
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
        raise ModelLoadFailed(f"Cannot read the config of {source.label}: {reason_of(error)}") from error


def config_or_none(plan: LoadPlan) -> Any:
    """The config when it can be read, for facts a tokenizer alone does not know (context length)."""
    try:
        return load_config(plan.source, plan.revision, plan.trust_remote_code)
    except (ModelLoadFailed, HubUnreachable):
        return None
