"""The in-process transformers engine: it loads, plans, estimates, caches, generates and decodes.

Loading, one step per module: `source` (what MODEL names) → `plan` (dtype, quantization, device
map; `hardware` decides the dtype) → `memory` (the estimate, from `config` alone) → `loading` (the
load, with `gguf`'s cache of converted files, `quantization` for bitsandbytes, `weights` for pickle
checks, `progress` for the status line, `failures` mapping transformers' errors). Then `engine`
(the engine and its chat session), `generation` and `decoding` (the CPU decoding modes).

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from .engine import TokenizerEngine, TransformersChatSession, TransformersEngine

__all__ = ["TokenizerEngine", "TransformersChatSession", "TransformersEngine"]
