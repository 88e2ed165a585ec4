"""A model's architecture (`%llm_info`): what `print(model)` shows, as a tree of blocks with their
parameters, dtypes and memory, identical repeated layers collapsed ("layers.0–29 × 30"), and the
config's shape.

Quantized layers are recognised by their class name (bitsandbytes' `Linear4bit`, `Linear8bitLt`),
so bitsandbytes is never imported here; nor is torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engines.transformers.plan import Quantization
from .common import held_model

#: bitsandbytes' layer classes, by name (bitsandbytes need not be installed to describe a model).
_QUANTIZED = {"Linear4bit": Quantization.FOUR_BIT, "Linear8bitLt": Quantization.EIGHT_BIT}


@dataclass(frozen=True)
class Block:
    """One module (or `repeat` identical consecutive ones, totalled): `parameters` counts each
    weight once (a tied weight in the block it is first met), `bytes` is parameters and buffers."""

    name: str
    kind: str
    detail: str
    parameters: int
    bytes: int
    dtypes: tuple[str, ...]
    quantization: Quantization
    children: tuple[Block, ...] = ()
    repeat: int = 1
    tied: bool = False


@dataclass(frozen=True)
class Shape:
    """The config's numbers that decide the model's size (None where the config has no such field)."""

    layers: int | None
    heads: int | None
    kv_heads: int | None
    hidden: int | None
    intermediate: int | None
    vocabulary: int | None
    context: int | None


@dataclass(frozen=True)
class Architecture:
    name: str
    model_class: str
    root: Block
    shape: Shape

    @property
    def parameters(self) -> int:
        return self.root.parameters

    @property
    def bytes(self) -> int:
        return self.root.bytes


def _count(module: Any, name: str, tensor: Any) -> int:
    # bitsandbytes packs two 4-bit weights per byte: the module knows the real shape.
    if type(module).__name__ == "Linear4bit" and name == "weight" and hasattr(module, "in_features"):
        return int(module.in_features) * int(module.out_features)
    return int(tensor.numel())


def _dtype(tensor: Any) -> str:
    return str(tensor.dtype).replace("torch.", "")


def block_tree(name: str, module: Any, seen: set[int]) -> Block:
    """`module` and everything under it as `Block`s, repeated layers collapsed. `seen` holds the
    ids of parameters already counted, so a tied weight (embeddings and output head) counts once."""
    own_params = own_bytes = 0
    dtypes: set[str] = set()
    shared = 0
    for key, param in module.named_parameters(recurse=False):
        dtypes.add(_dtype(param))
        if id(param) in seen:
            shared += 1
            continue
        seen.add(id(param))
        own_params += _count(module, key, param)
        own_bytes += int(param.numel()) * int(param.element_size())
    for _, buffer in module.named_buffers(recurse=False):
        own_bytes += int(buffer.numel()) * int(buffer.element_size())
    children = _collapse([block_tree(child, sub, seen) for child, sub in module.named_children()])
    for child in children:
        dtypes.update(child.dtypes)
    quantization = _QUANTIZED.get(type(module).__name__, Quantization.NONE)
    if quantization is Quantization.NONE:
        quantization = next(
            (c.quantization for c in children if c.quantization is not Quantization.NONE), quantization
        )
    return Block(
        name=name,
        kind=type(module).__name__,
        detail=str(module.extra_repr()),
        parameters=own_params + sum(child.parameters for child in children),
        bytes=own_bytes + sum(child.bytes for child in children),
        dtypes=tuple(sorted(dtypes)),
        quantization=quantization,
        children=tuple(children),
        tied=shared > 0 and own_params == 0,
    )


def _signature(block: Block) -> tuple[Any, ...]:
    return (
        block.kind,
        block.detail,
        block.parameters,
        block.dtypes,
        block.tied,
        tuple(_signature(child) for child in block.children),
    )


def _collapse(blocks: list[Block]) -> list[Block]:
    """Runs of identical consecutive siblings (named 0, 1, 2 …) as one block `0–29 × 30`."""
    out: list[Block] = []
    run: list[Block] = []
    for block in [*blocks, None]:
        if run and block is not None and block.name.isdigit() and _signature(block) == _signature(run[0]):
            run.append(block)
            continue
        if len(run) > 1:
            first = run[0]
            out.append(
                Block(
                    name=f"{first.name}–{run[-1].name}",
                    kind=first.kind,
                    detail=first.detail,
                    parameters=sum(b.parameters for b in run),
                    bytes=sum(b.bytes for b in run),
                    dtypes=first.dtypes,
                    quantization=first.quantization,
                    children=first.children,
                    repeat=len(run),
                )
            )
        elif run:
            out.append(run[0])
        run = [block] if block is not None else []
    return out


def _field(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def shape_of(config: Any) -> Shape:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = _field(text, "num_attention_heads", "n_head")
    return Shape(
        layers=_field(text, "num_hidden_layers", "n_layer"),
        heads=heads,
        kv_heads=_field(text, "num_key_value_heads") or heads,
        hidden=_field(text, "hidden_size", "n_embd"),
        intermediate=_field(text, "intermediate_size", "n_inner"),
        vocabulary=_field(text, "vocab_size"),
        context=_field(text, "max_position_embeddings", "n_positions"),
    )


def describe_model(model: Any, name: str = "") -> Architecture:
    """The tree and shape of any torch module with a transformers config."""
    root = block_tree("", model, set())
    return Architecture(name, type(model).__name__, root, shape_of(model.config))


def architecture(engine: Any) -> Architecture:
    """The architecture of `engine`'s model.

    Example::

        arch = architecture(engine)
        arch.parameters, arch.shape.layers, [b.name for b in arch.root.children]
    """
    model, _ = held_model(engine, "%llm_info")
    return describe_model(model, engine.name)


def architecture_code(load: str) -> str:
    """`--code`: the plain lines that print the same module tree and totals."""
    return "\n".join(
        [
            load,
            "",
            "print(model)  # the module tree",
            "parameters = sum(p.numel() for p in model.parameters())  # tied weights counted once",
            "memory = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])",
            "config = model.config.get_text_config()",
            "shape = dict(layers=config.num_hidden_layers, heads=config.num_attention_heads,",
            "             kv_heads=getattr(config, 'num_key_value_heads', config.num_attention_heads),",
            "             hidden=config.hidden_size, vocabulary=config.vocab_size)",
            "print(f'{parameters:,} parameters, {memory / 2**20:.1f} MiB', shape)",
        ]
    )


__all__ = [
    "Architecture",
    "Block",
    "Shape",
    "architecture",
    "architecture_code",
    "describe_model",
]
