"""Engines: what runs a model behind the magics. See `base` for the protocols.

    base.py          the protocols (what an engine can do) and the values they exchange
    transformers/    in-process transformers models: loading, decoding, generation
    remote/          an OpenAI-compatible server (vLLM, llama.cpp, transformers serve …)
    pipeline.py      Pipeline API tasks

A new engine is a module here with one class implementing `Engine` and the capabilities it has;
the magics find out what it can do with `isinstance` on the protocols.
"""

from __future__ import annotations
