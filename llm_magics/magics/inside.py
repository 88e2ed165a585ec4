"""%llm_attention / %%llm_attention and %llm_info: inside the model, its attention weights and its
architecture (the logit lens is `%llm_next --lens`). Thin over `llm_magics.inside`."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.magic import line_cell_magic, line_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Int

from ..code import load_code
from ..display.architecture import ArchitectureView
from ..display.pipe import CodeBlock
from ..errors import InvalidOption
from ..inside.architecture import architecture, architecture_code
from ._base import SessionMagics, parse, show


def load_lines(engine: Any) -> str:
    """The `--code` lines that load `engine`'s model, as `%llm_load --code` prints them."""

    return load_code(getattr(engine, "plan", None), fallback=engine.describe().source)


class InsideMagics(SessionMagics):
    attention_max_tokens = Int(
        128,
        help="Tokens %llm_attention draws at most (a heatmap is tokens × tokens); longer text is refused.",
    ).tag(config=True)

    @magic_arguments()
    @argument(
        "--model", "-m", metavar="NAME", help="The loaded model to look inside (default: the active one)."
    )
    @argument(
        "--layer",
        "-l",
        type=int,
        default=None,
        metavar="L",
        help="The layer drawn large (default: the last; -1 counts from the end).",
    )
    @argument(
        "--head",
        type=int,
        default=None,
        metavar="H",
        help="The head drawn large (default: the mean over the heads).",
    )
    @argument("--chat", action="store_true", help="The text as a user message through the chat template.")
    @argument("--live", action="store_true", help="Sliders for the layer and head (needs ipywidgets).")
    @argument(
        "--code",
        action="store_true",
        help="Also show the plain transformers code that gives the same weights.",
    )
    @argument(
        "--no-interpolate", action="store_true", help="Keep {name} as written instead of substituting it."
    )
    @argument("text", metavar="TEXT", nargs=argparse.REMAINDER, help="The text whose attention to draw.")
    @no_var_expand
    @line_cell_magic
    def llm_attention(self, line: str = "", cell: str | None = None) -> None:
        """Draw how each token of TEXT attends to the tokens before it, in every layer and head.

        A grid of small heatmaps (rows: layers, columns: heads) and one large heatmap of the
        chosen layer and head (the mean over heads without --head) with the tokens on both axes;
        hover a cell for its weight. The weights are `model(**inputs, output_attentions=True)`
        with eager attention (the model is switched for the call and back). In a terminal: each
        token's three most attended tokens.

        Examples::

            %llm_attention The cat sat on the mat because it was tired
            %llm_attention --layer 3 --head 5 The cat sat on the mat
            # sliders (needs ipywidgets)
            %llm_attention --live The cat sat on the mat
            # and the transformers lines
            %llm_attention --code Hello world

            %%llm_attention --layer -1
            A longer text, {variable} substituted from your namespace.

        Settings: `%config LlmMagics.attention_max_tokens = 256`. From Python:
        `llm_magics.attention(text, name=None)` (`.weights[layer, head, query, key]`).
        """
        from ..display.attention import AttentionExplorer, AttentionView
        from ..inside.attention import attention, attention_code

        args = parse(
            self.llm_attention,
            line,
            unclosed_hint="close the quote, or put the text in a %%llm_attention cell",
        )
        text = self.text_after_options(line, args, cell, "llm_attention")
        engine = self.registry.get(args.model)
        seen = attention(engine, text, max_tokens=self.attention_max_tokens, chat=args.chat)
        layer, head = seen.layer_index(args.layer), seen.head_index(args.head)
        if args.code:
            if args.chat:
                raise InvalidOption(
                    "--code shows %llm_attention TEXT without the chat template; drop --chat."
                )

            show(CodeBlock(attention_code(load_lines(engine), text, layer, head)))
        if args.live:
            show(AttentionExplorer(seen, layer=layer, head=head))
        else:
            show(AttentionView(seen, layer=layer, head=head))

    @magic_arguments()
    @argument(
        "--code", action="store_true", help="Also show the plain lines that print the same tree and totals."
    )
    @argument(
        "name", metavar="NAME", nargs="?", default=None, help="The loaded model (default: the active one)."
    )
    @no_var_expand
    @line_magic
    def llm_info(self, line: str = "") -> None:
        """Show a loaded model's architecture: what `print(model)` shows, as a tree.

        Each block has its class, its arguments, its parameters, dtypes and memory; identical
        repeated layers are one entry (`layers.0–29 × 30`); quantized layers are marked. Above:
        the config's layers, heads, key/value heads, hidden size, vocabulary and context.

        Examples::

            %llm_info
            %llm_info smollm --code

        From Python: `llm_magics.architecture(name=None)`.
        """

        args = parse(self.llm_info, line)
        engine = self.registry.get(args.name)
        arch = architecture(engine)
        if args.code:
            show(CodeBlock(architecture_code(load_lines(engine))))
        show(ArchitectureView(arch))


def show_lens(engine: Any, text: str, args: Any, count: int) -> None:
    """`%llm_next --lens`: the logit lens of `text` (options that only sample have no place here)."""
    from ..display.lens import LensView
    from ..inside.lens import lens_code, logit_lens, norm_path

    if not args.lens:
        raise InvalidOption("--code goes with --lens for %llm_next (the logit lens's transformers lines).")
    used = [
        flag
        for flag, on in (
            ("--steps", args.steps is not None),
            ("--live", args.live),
            ("--sample", args.sample),
        )
        if on
    ]
    if used:
        raise InvalidOption(f"--lens shows one next token, layer by layer; drop {', '.join(used)}.")
    lens = logit_lens(engine, text, show=count, chat=args.chat)
    if args.code:
        if args.chat:
            raise InvalidOption("--code shows %llm_next --lens TEXT without the chat template; drop --chat.")

        show(CodeBlock(lens_code(load_lines(engine), text, norm_path(engine.model))))
    show(LensView(lens))
